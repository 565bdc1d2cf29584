"""`P2PService`: the node's whole network layer as one service (PROTOCOL §7, STYLE §5).

Owns: wiring the host, gossip, request-response server, peer manager, syncer and blob fetcher; the
public API the node and its RPC use (publish, peers, add/disconnect peer, events, blob fetch, sync
progress, statistics); banning (a ban disconnects at once) and a shutdown that closes every
connection. Must not: import the daemon; the node's checks and stores come in through
`p2p.interfaces`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from chain.errors import ErrorCode
from chain.params import ChainParams
from chain.types import BlobHash
from p2p.blobs import BlobFetcher, FetchResult
from p2p.gossip import Gossip, GossipConfig, GossipMessage, GossipStats
from p2p.host import (
    HostConfig,
    addrs_of_peer,
    build_host,
    close_host,
    full_addrs,
    listen_multiaddrs,
    load_or_create_key,
    peer_id_from_str,
    peer_id_of,
)
from p2p.interfaces import BlobStore, BlockSink, ChainSource, GossipValidator
from p2p.messages.gossip import GossipKind
from p2p.peers import PeerEvent, PeerManager
from p2p.reqresp import ReqRespServer
from p2p.scoring import Offence, PeerScores, ScoreConfig
from p2p.syncer import Syncer, SyncStats

if TYPE_CHECKING:  # trio-stubs in this venv hide trio.TaskStatus from mypy
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class P2PConfig:
    keys_dir: Path
    host: HostConfig = field(default_factory=HostConfig)
    bootstrap: tuple[str, ...] = ()
    target_peers: int = 8
    status_interval_s: float = 5.0
    reconnect_max_s: float = 4.0
    gossip: GossipConfig = field(default_factory=GossipConfig)
    scores: ScoreConfig = field(default_factory=ScoreConfig)
    sync_batch: int = 64
    request_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class PeerSummary:
    peer_id: str
    addrs: tuple[str, ...]
    height: int | None
    score: float


@dataclass(frozen=True, slots=True)
class P2PStats:
    peer_id: str
    listen_addrs: tuple[str, ...]
    peers: int
    banned: int
    gossip: GossipStats
    sync: SyncStats
    served: dict[str, int]
    offences: dict[str, int]
    genesis_mismatches: int


class P2PService:
    def __init__(
        self,
        config: P2PConfig,
        params: ChainParams,
        validator: GossipValidator,
        chain: ChainSource,
        sink: BlockSink,
        blobs: BlobStore | None = None,
        sync_gate: trio.Event | None = None,
    ) -> None:
        """`sync_gate`: the syncer waits for it (see `Syncer`); None: it syncs from the start."""
        self.config, self.params = config, params
        self.validator, self.chain, self.sink, self.blobs = validator, chain, sink, blobs
        self.key_pair = load_or_create_key(config.keys_dir)
        self.peer_id = peer_id_of(self.key_pair)
        self.scores = PeerScores(config.scores)
        self.host = build_host(config.host, self.key_pair)
        chain_id = params.chain_id
        self.peers_mgr = PeerManager(
            self.host,
            chain_id,
            chain,
            self.scores,
            bootstrap=config.bootstrap,
            target_peers=config.target_peers,
            status_interval_s=config.status_interval_s,
            reconnect_max_s=config.reconnect_max_s,
            on_height=self._on_height,
            dial_peerstore=config.host.enable_mdns,
        )
        self.gossip = Gossip(self.host, params, validator, self.scores, self._on_ban, config.gossip)
        self.server = ReqRespServer(
            self.host,
            chain_id,
            chain,
            blobs,
            self.peers_mgr.make_status,
            self.peers_mgr.on_status,
            self.penalise,
        )
        self.syncer = Syncer(
            self.host,
            chain_id,
            chain,
            sink,
            self.peers_mgr.heights,
            self.penalise,
            batch=config.sync_batch,
            timeout_s=config.request_timeout_s,
            peer_tips=self.peers_mgr.tips,
            gate=sync_gate,
        )
        self.fetcher = BlobFetcher(self.host, chain_id, blobs, self.penalise) if blobs is not None else None
        self._started = trio.Event()
        self._stopped = trio.Event()

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, join the topics, keep peers, sync; returns (or is cancelled) with every connection
        closed (LIBP2P-NOTES: host.close() shielded, before leaving host.run())."""
        self.server.install()
        try:
            async with self.host.run(listen_multiaddrs(self.config.host)):
                try:
                    async with self.gossip.running(), trio.open_nursery() as nursery:
                        await self.gossip.start(nursery)
                        await nursery.start(self.peers_mgr.run)
                        await nursery.start(self.syncer.run)
                        self._started.set()
                        log.info("p2p: %s listening on %s", self.peer_id, ", ".join(self.listen_addrs()))
                        task_status.started()
                        await trio.sleep_forever()
                finally:
                    await close_host(self.host)
        finally:
            self._stopped.set()
            log.info("p2p: stopped")

    # -- scoring -------------------------------------------------------------------------------

    def penalise(self, peer: str, offence: Offence) -> None:
        if self.scores.penalise(peer, offence):
            log.info("peer %s banned after %s", peer, offence.value)
            self._on_ban(peer)

    def _on_ban(self, peer: str) -> None:
        try:
            self.peers_mgr.disconnect(peer_id_from_str(peer))
        except Exception:
            log.debug("cannot disconnect %s", peer, exc_info=True)

    def _on_height(self) -> None:
        self.syncer.poke()

    # -- publishing ------------------------------------------------------------------------------

    async def publish_tx(self, raw: bytes) -> bool:
        return await self.gossip.publish(GossipKind.TX, raw)

    async def publish_block(self, raw: bytes) -> bool:
        return await self.gossip.publish(GossipKind.BLOCK, raw)

    async def publish_attestation(self, raw: bytes) -> bool:
        return await self.gossip.publish(GossipKind.ATTESTATION, raw)

    async def publish_vdf(self, raw: bytes) -> bool:
        return await self.gossip.publish(GossipKind.VDF, raw)

    @property
    def inbound(self) -> trio.MemoryReceiveChannel[GossipMessage]:
        """Validated gossip from the network (bounded; overflow is counted, never blocks libp2p)."""
        return self.gossip.inbound

    # -- peers --------------------------------------------------------------------------------

    def listen_addrs(self) -> list[str]:
        return full_addrs(self.host)

    def peers(self) -> list[PeerSummary]:
        out = []
        for peer_id, state in list(self.peers_mgr.peers.items()):
            out.append(
                PeerSummary(
                    str(peer_id),
                    tuple(addrs_of_peer(self.host, peer_id)),
                    state.status.best_height if state.status else None,
                    self.scores.score(str(peer_id)),
                )
            )
        return out

    async def add_peer(self, multiaddr: str) -> ErrorCode | None:
        """Dial a `/ip4/.../tcp/.../p2p/<id>` address; raises ValueError for a malformed one."""
        return await self.peers_mgr.add_peer(multiaddr)

    def disconnect_peer(self, peer_id: str) -> None:
        self.peers_mgr.disconnect(peer_id_from_str(peer_id))

    def open_events(self) -> trio.MemoryReceiveChannel[PeerEvent]:
        return self.peers_mgr.open_events()

    async def reannounce(self, peer_id: str, kind: GossipKind, raws: Sequence[bytes]) -> int:
        """Gossip `raws` to one (new) peer only, even payloads the network has seen already: see
        `Gossip.send_direct`. Returns how many were queued."""
        return await self.gossip.send_direct(peer_id_from_str(peer_id), kind, raws)

    # -- sync and blobs ------------------------------------------------------------------------

    def sync_status(self) -> SyncStats:
        return self.syncer.statistics()

    async def fetch_blob(self, blob_hash: BlobHash, peers: Sequence[str] | None = None) -> FetchResult:
        if self.fetcher is None:
            return FetchResult(ErrorCode.BLOB_MISSING, 0, 0, 0, {})
        ids = [peer_id_from_str(p) for p in peers] if peers else list(self.peers_mgr.peers)
        return await self.fetcher.fetch(blob_hash, ids)

    def statistics(self) -> P2PStats:
        return P2PStats(
            self.peer_id,
            tuple(self.listen_addrs()),
            len(self.peers_mgr.peers),
            len(self.scores.banned()),
            self.gossip.statistics(),
            self.syncer.statistics(),
            dict(self.server.served),
            {o.value: n for o, n in self.scores.offences.items()},
            self.peers_mgr.genesis_mismatches,
        )
