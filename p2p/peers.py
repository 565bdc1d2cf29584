"""Peer management: status handshake, bootstrap reconnects, peer exchange, target peer count (§7.1).

Owns: what we know of each connected peer (its `Status`: heights, genesis, addresses), the status
exchange on every new connection (a different genesis disconnects and bans the peer for an hour), one
reconnect loop per bootstrap peer (capped exponential backoff; it clears libp2p's 60 s dial negative
cache first, LIBP2P-NOTES), dialing addresses learned by peer exchange until `target_peers` are
connected (loopback and private addresses only from peers that are themselves local), closing
connections of banned peers (every ban path disconnects; the host refuses our own dials to them), and
connect/disconnect events for the node.
Must not: score gossip or serve requests (p2p.gossip and p2p.reqresp do).
"""

from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
from libp2p.abc import INotifee

from chain.errors import ErrorCode
from chain.header import PROTOCOL_VERSION
from p2p import framing
from p2p.host import full_addrs, ip_of, is_public, parse_peer_addr, peer_ips, refuse_dials_to
from p2p.interfaces import ChainSource
from p2p.messages.status import MAX_PEX_ADDRS, Capability, Status
from p2p.protocols import status_protocol
from p2p.scoring import Offence, PeerScores

if TYPE_CHECKING:  # trio-stubs in this venv hide trio.TaskStatus from mypy
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

GENESIS_BAN_S = 3600.0
DIAL_RETRY_S = 30.0


@dataclass(frozen=True, slots=True)
class PeerEvent:
    connected: bool
    peer_id: str


@dataclass(slots=True)
class PeerState:
    peer_id: Any
    connected_at: float
    status: Status | None = None
    status_at: float = 0.0
    addrs: list[str] = field(default_factory=list)


class _Notifee(INotifee):
    """Hands connection events to our task without ever blocking the swarm."""

    def __init__(self, send: trio.MemorySendChannel[tuple[bool, Any]]) -> None:
        self.send = send

    def _put(self, connected: bool, conn: Any) -> None:
        try:
            self.send.send_nowait((connected, conn.muxed_conn.peer_id))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            log.warning("peer event queue full or closed; event dropped")
        except Exception:
            log.debug("peer event without a peer id", exc_info=True)

    async def connected(self, network: Any, conn: Any) -> None:
        self._put(True, conn)
        await trio.lowlevel.checkpoint()

    async def disconnected(self, network: Any, conn: Any) -> None:
        self._put(False, conn)
        await trio.lowlevel.checkpoint()

    async def opened_stream(self, network: Any, stream: Any) -> None:
        await trio.lowlevel.checkpoint()

    async def closed_stream(self, network: Any, stream: Any) -> None:
        await trio.lowlevel.checkpoint()

    async def listen(self, network: Any, multiaddr: Any) -> None:
        await trio.lowlevel.checkpoint()

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        await trio.lowlevel.checkpoint()


class PeerManager:
    def __init__(
        self,
        host: Any,
        chain_id: str,
        chain: ChainSource,
        scores: PeerScores,
        *,
        bootstrap: tuple[str, ...] = (),
        target_peers: int = 8,
        status_interval_s: float = 5.0,
        reconnect_max_s: float = 4.0,
        on_height: Callable[[], None] = lambda: None,
        capabilities: int = int(Capability.SYNC | Capability.BLOBS),
        dial_peerstore: bool = False,
    ) -> None:
        self.host, self.chain, self.scores = host, chain, scores
        self.chain_id = chain_id
        self.protocol = status_protocol(chain_id)
        self.bootstrap = bootstrap
        self.target_peers = target_peers
        self.status_interval_s = status_interval_s
        self.reconnect_max_s = reconnect_max_s
        self.on_height = on_height
        self.capabilities = capabilities
        self.dial_peerstore = dial_peerstore  # mDNS only fills the peerstore; we dial from it
        self.peers: dict[Any, PeerState] = {}
        self.candidates: OrderedDict[str, float] = OrderedDict()  # peer-exchange addresses
        self._events_send, self._events_recv = trio.open_memory_channel[tuple[bool, Any]](4096)
        self._listeners: list[trio.MemorySendChannel[PeerEvent]] = []
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.genesis_mismatches = 0
        refuse_dials_to(host, scores.is_banned)

    # -- public -------------------------------------------------------------------------------

    def open_events(self, size: int = 1024) -> trio.MemoryReceiveChannel[PeerEvent]:
        send, recv = trio.open_memory_channel[PeerEvent](size)
        self._listeners.append(send)
        return recv

    def heights(self) -> dict[Any, int]:
        return {p: s.status.best_height for p, s in self.peers.items() if s.status is not None}

    def tips(self) -> dict[Any, tuple[int, bytes]]:
        """Each peer's best (height, hash) from its last status (the syncer's fork detection)."""
        return {p: (s.status.best_height, s.status.best_hash) for p, s in self.peers.items() if s.status}

    def finals(self) -> dict[Any, tuple[int, bytes]]:
        """Each peer's final (height, hash) from its last status (the producer holds back while its
        chain does not hold the final block its peers agree on: linguachaind.services.producer)."""
        return {p: (s.status.final_height, s.status.final_hash) for p, s in self.peers.items() if s.status}

    def make_status(self) -> Status:
        best_h, best = self.chain.tip()
        final_h, final = self.chain.final()
        own = tuple(a for a in full_addrs(self.host)[:MAX_PEX_ADDRS] if len(a) <= 256)
        known: list[str] = []
        for state in self.peers.values():
            if state.status is not None:
                known.extend(state.status.listen_addrs[:1])
            if len(known) >= MAX_PEX_ADDRS:
                break
        return Status(
            PROTOCOL_VERSION,
            self.chain_id,  # type: ignore[arg-type]
            self.chain.genesis_hash,
            best_h,  # type: ignore[arg-type]
            best,
            final_h,  # type: ignore[arg-type]
            final,
            self.capabilities,
            own,
            tuple(known[:MAX_PEX_ADDRS]),
        )

    async def on_status(self, peer_id: Any, status: Status) -> ErrorCode | None:
        """A peer's status (from its request or our poll). Genesis mismatch: disconnect and ban."""
        if status.genesis_hash != self.chain.genesis_hash or status.chain_id != self.chain_id:
            self.genesis_mismatches += 1
            log.info("peer %s has another genesis; disconnecting", peer_id)
            self.scores.ban(str(peer_id), GENESIS_BAN_S)
            self._disconnect_soon(peer_id)
            return ErrorCode.GENESIS_MISMATCH
        if status.protocol_version != PROTOCOL_VERSION:
            self._disconnect_soon(peer_id)
            return ErrorCode.PROTOCOL_VERSION
        state = self.peers.get(peer_id)
        if state is None:
            return None
        old = state.status.best_height if state.status else -1
        state.status, state.status_at = status, time.monotonic()
        trusted_local = self._local_source(peer_id)
        for addr in (*status.listen_addrs, *status.known_peers):
            if str(self.host.get_id()) in addr or addr in self.candidates:
                continue
            ip = ip_of(addr)
            if ip is None or (not is_public(ip) and not trusted_local):
                continue  # a public peer does not get us to dial our own loopback or private network
            self.candidates[addr] = 0.0
            while len(self.candidates) > 256:
                self.candidates.popitem(last=False)
        if status.best_height > old:
            self.on_height()
        return None

    def _local_source(self, peer_id: Any) -> bool:
        """True when the peer reaches us from a loopback or private address (a devnet, a LAN): only
        such a peer's loopback/private addresses are worth dialing."""
        ips = peer_ips(self.host, peer_id)
        return bool(ips) and not any(is_public(ip) for ip in ips)

    async def add_peer(self, addr: str, timeout_s: float = 10.0) -> ErrorCode | None:
        """Dial `addr` (a `/p2p/<id>` multiaddr). ValueError for a malformed address."""
        info = parse_peer_addr(addr)
        if self.scores.is_banned(str(info.peer_id)):
            return ErrorCode.BAD_MESSAGE
        return await self._dial(info, timeout_s)

    async def _dial(self, info: Any, timeout_s: float) -> ErrorCode | None:
        network = self.host.get_network()
        try:
            network.unblock_peer(info.peer_id)  # LIBP2P-NOTES: else a 60 s negative cache
        except Exception:
            log.debug("unblock_peer failed", exc_info=True)
        result: ErrorCode | None = ErrorCode.TIMEOUT
        with trio.move_on_after(timeout_s):
            try:
                await self.host.connect(info)
                result = None
            except trio.Cancelled:
                raise
            except Exception as exc:
                log.debug("dial %s failed: %s", info.peer_id, exc)
        return result

    def disconnect(self, peer_id: Any) -> None:
        self._disconnect_soon(peer_id)

    def _disconnect_soon(self, peer_id: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._disconnect, peer_id)

    async def _disconnect(self, peer_id: Any) -> None:
        with trio.move_on_after(5):
            try:
                await self.host.disconnect(peer_id)
            except Exception:
                log.debug("disconnect %s failed", peer_id, exc_info=True)

    # -- running --------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.host.get_network().register_notifee(_Notifee(self._events_send))
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._events)
            nursery.start_soon(self._poll_status)
            nursery.start_soon(self._discover)
            for addr in self.bootstrap:
                nursery.start_soon(self._keep_connected, addr)
            task_status.started()

    async def _events(self) -> None:
        async for connected, peer_id in self._events_recv:
            conns = self.host.get_network().get_connections(peer_id)
            if connected:
                if self.scores.is_banned(str(peer_id)):
                    self._disconnect_soon(peer_id)
                    continue
                if peer_id in self.peers:
                    continue
                self.peers[peer_id] = PeerState(peer_id, time.monotonic())
                self._emit(PeerEvent(True, str(peer_id)))
                assert self._nursery is not None
                self._nursery.start_soon(self._exchange_status, peer_id)
            elif not conns and peer_id in self.peers:
                del self.peers[peer_id]
                self._emit(PeerEvent(False, str(peer_id)))
            self._changed.set()
            self._changed = trio.Event()

    def _emit(self, event: PeerEvent) -> None:
        for send in list(self._listeners):
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                log.warning("peer event listener is slow; event dropped")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._listeners.remove(send)

    async def _exchange_status(self, peer_id: Any) -> None:
        reply = await framing.request(self.host, peer_id, self.protocol, self.make_status(), Status)
        if isinstance(reply, Status):
            await self.on_status(peer_id, reply)
        elif reply is ErrorCode.GENESIS_MISMATCH:
            self.genesis_mismatches += 1
            self.scores.ban(str(peer_id), GENESIS_BAN_S)
            self._disconnect_soon(peer_id)
        elif reply in (ErrorCode.MALFORMED, ErrorCode.BAD_MESSAGE, ErrorCode.TOO_LARGE) and (
            self.scores.penalise(str(peer_id), Offence.MALFORMED)
        ):
            log.info("peer %s banned after %s", peer_id, Offence.MALFORMED.value)
            self._disconnect_soon(peer_id)  # a ban disconnects, whichever path made it

    def _prune(self) -> None:
        """Forget peers whose last connection closed without a `disconnected` event we could act on
        (the event arrived while a closing connection was still listed)."""
        network = self.host.get_network()
        for peer_id in list(self.peers):
            conns = network.get_connections(peer_id)
            if not any(not getattr(getattr(c, "muxed_conn", None), "is_closed", False) for c in conns):
                del self.peers[peer_id]
                self._emit(PeerEvent(False, str(peer_id)))
                self._changed.set()
                self._changed = trio.Event()

    async def _poll_status(self) -> None:
        while True:
            await trio.sleep(self.status_interval_s)
            self._prune()
            async with trio.open_nursery() as nursery:
                for peer_id in list(self.peers):
                    nursery.start_soon(self._exchange_status, peer_id)

    async def _keep_connected(self, addr: str) -> None:
        """PROTOCOL §7.1 bootstrap peers stay connected: redial with capped exponential backoff."""
        try:
            info = parse_peer_addr(addr)
        except ValueError as exc:
            log.warning("bad bootstrap address: %s", exc)
            return
        delay = 0.25
        while True:
            if info.peer_id in self.peers:
                while info.peer_id in self.peers:
                    await self._changed.wait()  # wakes when it drops
                delay = 0.25
            if not self.scores.is_banned(str(info.peer_id)):
                if await self._dial(info, timeout_s=5.0) is None:
                    delay = 0.25
                    with trio.move_on_after(2.0):
                        while info.peer_id not in self.peers:
                            await self._changed.wait()
                    continue
                delay = min(delay * 2, self.reconnect_max_s)
            await trio.sleep(delay * (0.75 + random.random() / 2))

    def _peerstore_candidates(self) -> None:
        store = self.host.get_peerstore()
        me = self.host.get_id()
        for pid in list(store.peers_with_addrs())[:64]:
            if pid == me or pid in self.peers:
                continue
            for addr in store.addrs(pid)[:2]:
                text = str(addr)
                self.candidates.setdefault(text if "/p2p/" in text else f"{text}/p2p/{pid}", 0.0)

    async def _discover(self) -> None:
        """Dial learned addresses (peer exchange, mDNS) while below `target_peers`; an address that
        failed waits `DIAL_RETRY_S` before it is tried again."""
        while True:
            await trio.sleep(1.0)
            if len(self.peers) >= self.target_peers:
                continue
            if self.dial_peerstore:
                self._peerstore_candidates()
            now = time.monotonic()
            due = [a for a, not_before in self.candidates.items() if not_before <= now]
            for addr in due[: self.target_peers - len(self.peers)]:
                try:
                    info = parse_peer_addr(addr)
                except ValueError:
                    self.candidates.pop(addr, None)
                    continue
                if info.peer_id in self.peers or self.scores.is_banned(str(info.peer_id)):
                    continue
                if await self._dial(info, timeout_s=5.0) is not None and addr in self.candidates:
                    self.candidates[addr] = time.monotonic() + DIAL_RETRY_S
