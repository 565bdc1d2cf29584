"""Gossip of txs, blocks, attestations and VDF proofs over gossipsub (PROTOCOL §7.2).

Owns: the `Pubsub` + `GossipSub` pair with explicit parameters (heartbeat 1 s, D 6/4/12, adaptive
gossip and library spam protection off, content-addressed message ids, max RPC size
`max_block_bytes` + headroom), one validator per topic that runs the node's real checks within a
deadline and never raises, the gate that drops banned or flooding peers before any work, duplicate
suppression (what a peer sent us or announced is not sent to it; early IDONTWANT of large messages),
paced direct sends to one peer (`send_direct`, the re-announcement of votes), and the drain of every
subscription (into a bounded inbound queue only when `inbound_queue` > 0: tests and soaks read it;
a node acts in its validators and keeps no copy). Must not: decide chain validity (the
node's `GossipValidator` does) or touch connections (p2p.service bans and disconnects).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import trio
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX
from libp2p.tools.anyio_service import background_trio_service

from chain.errors import ErrorCode
from chain.hashing import H
from chain.params import ChainParams
from p2p import compat, framing
from p2p.interfaces import GossipValidator
from p2p.messages.gossip import GossipKind, all_specs
from p2p.scoring import Offence, PeerScores, RateLimiter

log = logging.getLogger(__name__)

RPC_HEADROOM: Final = 64 * 1024
HAVE_PER_PEER: Final = 4096  # message ids remembered per peer as "it has this one"
DIRECT_WAIT_S: Final = 10.0  # how long `send_direct` waits for a new peer's gossip stream
DIRECT_BATCH: Final = 32  # messages per RPC of `send_direct` ...
DIRECT_BATCH_INTERVAL_S: Final = 0.25  # ... and the pause between RPCs: 128 msg/s, within the
# receiver's limits (300 msg/s per peer, 128 in validation at once) with room for live traffic
IDONTWANT_MIN_BYTES: Final = 16 * 1024  # messages this large are announced with an early IDONTWANT


@dataclass(frozen=True, slots=True)
class GossipConfig:
    heartbeat_s: int = 1
    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    validation_timeout_s: float = 2.0
    rate_per_peer: float = 300.0  # messages per second a peer may forward to us, all topics
    burst_per_peer: float = 600.0
    max_in_flight_per_peer: int = 128
    inbound_queue: int = 0  # validated messages kept for a reader (tests: p2p.testing sets 8,192)
    maintenance_s: float = 5.0
    publish_high_water: int = 256  # our publishes wait while a peer's outbound queue is this long
    publish_wait_s: float = 1.0
    frame_timeout_s: float = 10.0  # a gossip frame that has begun must be complete within this


@dataclass(frozen=True, slots=True)
class GossipMessage:
    """A validated message from the network, as the node receives it."""

    kind: GossipKind
    data: bytes
    origin: str  # peer id (base58) of the original publisher


@dataclass(frozen=True, slots=True)
class GossipStats:
    published: int
    publish_too_large: int
    received: int
    accepted: int
    rejected: int
    rejected_transient: int
    validator_timeouts: int
    validator_errors: int
    rate_limited: int
    inbound_dropped: int
    outbound_dropped: int  # RPCs the library dropped (full or oversized per-peer queue)
    publish_paced: int  # publishes that waited for room in the outbound queues
    duplicates_skipped: int  # queued messages not sent because the peer already had them
    idontwant_sent: int  # early IDONTWANT announcements of large messages, per peer
    sent_direct: int  # messages sent to one peer by `send_direct` (re-announcements)
    in_flight: int
    outbound_queued: int  # longest per-peer outbound queue now


_ID_MEMO: OrderedDict[int, tuple[Any, bytes]] = OrderedDict()
_ID_MEMO_SIZE: Final = 64


def message_id(msg: Any) -> bytes:
    """Content-addressed gossip message id (§7.2): `H(payload)`. The same payload published twice, or
    by two nodes, is one message. (libp2p's own content-addressed id is SHA-256 plus a multibase
    encoding in pure Python: about 8% of a relay's CPU with 100 KB messages.) The library asks for
    the id of one message object about five times; the last few are memoised by object identity."""
    hit = _ID_MEMO.get(id(msg))
    if hit is not None and hit[0] is msg:
        return hit[1]
    mid = H(msg.data)
    _ID_MEMO[id(msg)] = (msg, mid)
    if len(_ID_MEMO) > _ID_MEMO_SIZE:
        _ID_MEMO.popitem(last=False)
    return mid


def publish_key(msg: Any) -> bytes:
    """Cheap identity of one publish (origin and sequence number): what "the peer has it" tracks."""
    return bytes(msg.from_id) + bytes(msg.seqno)


class _Gate:
    """compat.Gate: bans, per-peer rate limits and in-flight caps, before any library work; and one
    copy of a message at a time through validation."""

    def __init__(self, gossip: Gossip) -> None:
        self.g = gossip
        self.in_flight: dict[Any, int] = {}
        # The library marks a message seen only after its validation, so two copies arriving
        # together would both be validated and delivered. A second copy waits for the first: if
        # the first was accepted the library then drops it as seen; if the first failed (a
        # validator timeout under load) the second gets its own chance instead of being lost.
        self.busy: dict[bytes, trio.Event] = {}
        self.turns: dict[int, bytes] = {}  # id(msg) -> message id, for copies holding the turn

    def admit(self, forwarder: Any, msg: Any) -> bool:
        g = self.g
        peer = str(forwarder)
        g._n["received"] += 1
        g._peer_has(forwarder, publish_key(msg))
        if g.scores.is_banned(peer):
            return False
        n = self.in_flight.get(forwarder, 0)
        if n >= g.config.max_in_flight_per_peer or not g.limiter.allow(peer):
            g._n["rate_limited"] += 1
            g.penalise(peer, Offence.FLOOD)
            return False
        self.in_flight[forwarder] = n + 1
        if len(msg.data) >= IDONTWANT_MIN_BYTES:
            g._announce_early(forwarder, msg)
        return True

    async def wait_turn(self, msg: Any) -> None:
        msg_id = message_id(msg)
        while (event := self.busy.get(msg_id)) is not None:
            await event.wait()
        self.busy[msg_id] = trio.Event()
        self.turns[id(msg)] = msg_id

    def release(self, forwarder: Any, msg: Any) -> None:
        msg_id = self.turns.pop(id(msg), None)
        if msg_id is not None:
            event = self.busy.pop(msg_id, None)
            if event is not None:
                event.set()
        n = self.in_flight.get(forwarder, 1) - 1
        if n <= 0:
            self.in_flight.pop(forwarder, None)
        else:
            self.in_flight[forwarder] = n


class Gossip:
    def __init__(
        self,
        host: Any,
        params: ChainParams,
        validator: GossipValidator,
        scores: PeerScores,
        on_ban: Callable[[str], None],
        config: GossipConfig = GossipConfig(),
    ) -> None:
        compat.install()
        self.host = host
        self.params = params
        self.validator = validator
        self.scores = scores
        self.on_ban = on_ban
        self.config = config
        self.specs = all_specs()
        self.topics = {kind: spec.topic(params.chain_id) for kind, spec in self.specs.items()}
        self.kind_of_topic = {topic: kind for kind, topic in self.topics.items()}
        self.max_rpc = int(params.max_block_bytes) + RPC_HEADROOM
        compat.set_max_rpc_size(self.max_rpc)
        self.limiter = RateLimiter(config.rate_per_peer, config.burst_per_peer)
        self.router = GossipSub(
            protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
            degree=config.degree,
            degree_low=config.degree_low,
            degree_high=config.degree_high,
            heartbeat_interval=config.heartbeat_s,
            adaptive_gossip_enabled=False,
            spam_protection_enabled=False,
        )
        self.pubsub = Pubsub(
            host,
            self.router,
            msg_id_constructor=message_id,
            validation_timeout=config.validation_timeout_s + 1.0,
            max_inbound_rpc_size=self.max_rpc,
        )
        compat.disable_validation_cache(self.pubsub)
        self._gate = _Gate(self)
        compat.set_gate(self.pubsub, self._gate)
        compat.set_misbehaviour_hook(self.pubsub, self._on_misbehaviour)
        framing.guard_gossip_reads(  # oversized frames cost points; a stalled frame is reset
            self.pubsub,
            self.max_rpc,
            lambda peer: self.penalise(str(peer), Offence.OVERSIZED),
            config.frame_timeout_s,
        )
        self._has: dict[Any, OrderedDict[bytes, None]] = {}  # publish keys each peer sent us
        self._dont: dict[Any, OrderedDict[bytes, None]] = {}  # message ids each peer said it has
        self._announced: OrderedDict[bytes, None] = OrderedDict()
        compat.set_control_hooks(self.router, self)
        compat.set_outbound_filter(self.pubsub, self._trim_outbound)
        checks: dict[GossipKind, Callable[[bytes, str], Awaitable[ErrorCode | None]]] = {
            GossipKind.TX: validator.validate_tx,
            GossipKind.BLOCK: validator.validate_block,
            GossipKind.ATTESTATION: validator.validate_attestation,
            GossipKind.VDF: validator.validate_vdf,
        }
        for kind, topic in self.topics.items():
            self.pubsub.set_topic_validator(topic, self._make_validator(kind, checks[kind]), True)
        self._send, self.inbound = trio.open_memory_channel[GossipMessage](config.inbound_queue)
        self._n: dict[str, int] = dict.fromkeys(
            (
                "published",
                "publish_too_large",
                "received",
                "accepted",
                "rejected",
                "rejected_transient",
                "validator_timeouts",
                "validator_errors",
                "rate_limited",
                "inbound_dropped",
                "outbound_dropped",
                "publish_paced",
                "duplicates_skipped",
                "idontwant_sent",
                "sent_direct",
            ),
            0,
        )
        self._ready = trio.Event()
        compat.set_drop_counter(self.router, self._count_dropped)

    def _count_dropped(self) -> None:
        self._n["outbound_dropped"] += 1

    # -- duplicate suppression (compat fix 4) -----------------------------------------------------

    def _peer_has(
        self, peer_id: Any, key: bytes, table: dict[Any, OrderedDict[bytes, None]] | None = None
    ) -> None:
        book = self._has if table is None else table
        have = book.get(peer_id)
        if have is None:
            have = book[peer_id] = OrderedDict()
        have[key] = None
        if len(have) > HAVE_PER_PEER:
            have.popitem(last=False)

    def _announce_early(self, forwarder: Any, msg: Any) -> None:
        """Gossipsub v1.2 IDONTWANT, but sent when a large message arrives, before validation, and
        ahead of the peer's queue: every mesh peer that has not sent it to us yet learns at once that
        we have it, so it drops its own queued copy for us (in a full mesh of n nodes each 100 KB
        message otherwise crosses about n * (n - 1) links). Content-addressed ids make an early
        announcement safe: an invalid payload has its own id, so no valid message can be suppressed.
        The library's own IDONTWANT waits for validation, is awaited before forwarding, and goes to
        v1.2 peers only; we negotiate v1.1, where the control field is ignored by peers that do not
        know it."""
        msg_id = message_id(msg)
        if msg_id in self._announced:
            return
        self._announced[msg_id] = None
        if len(self._announced) > HAVE_PER_PEER:
            self._announced.popitem(last=False)
        key = publish_key(msg)
        targets: set[Any] = set()
        for topic in msg.topicIDs:
            targets.update(self.router.mesh.get(topic, ()))
        targets.discard(forwarder)
        rpc = None
        origin = bytes(msg.from_id)
        for peer_id in targets:
            if key in self._has.get(peer_id, ()) or peer_id.to_bytes() == origin:
                continue  # it sent us this message, or published it: it has it
            if rpc is None:
                rpc = rpc_pb2.RPC(
                    control=rpc_pb2.ControlMessage(idontwant=[rpc_pb2.ControlIDontWant(messageIDs=[msg_id])])
                )
            self.router.send_rpc(peer_id, rpc, priority=True)
            self._n["idontwant_sent"] += 1

    def has(self, peer_id: Any, message_ids: list[bytes]) -> None:
        """compat.ControlHooks: an IDONTWANT; the outbound filter skips these for that peer."""
        for msg_id in message_ids[:HAVE_PER_PEER]:
            self._peer_has(peer_id, msg_id, self._dont)

    def wants(self, peer_id: Any, message_ids: list[bytes]) -> None:
        """compat.ControlHooks: an IWANT overrides an earlier IDONTWANT for those ids: a peer that
        announced a message early and then failed to validate it (a timeout under load) asks for it
        again this way, and our outbound filter must not drop the answer."""
        dont = self._dont.get(peer_id)
        if dont:
            for msg_id in message_ids[:HAVE_PER_PEER]:
                dont.pop(msg_id, None)

    def _trim_outbound(self, peer_id: Any, rpc: Any) -> Any:
        if not rpc.publish:
            return rpc
        have: Mapping[bytes, None] = self._has.get(peer_id, {})
        dont: Collection[bytes] = self._dont.get(peer_id, ())
        keep = [m for m in rpc.publish if publish_key(m) not in have and not (dont and message_id(m) in dont)]
        if len(keep) == len(rpc.publish):
            return rpc
        self._n["duplicates_skipped"] += len(rpc.publish) - len(keep)
        if not keep and not rpc.subscriptions and not rpc.HasField("control"):
            return None
        trimmed = type(rpc)()
        trimmed.CopyFrom(rpc)
        del trimmed.publish[:]
        trimmed.publish.extend(keep)
        return trimmed

    # -- scoring -----------------------------------------------------------------------------------

    def penalise(self, peer: str, offence: Offence) -> None:
        if self.scores.penalise(peer, offence):
            log.info("peer %s banned after %s", peer, offence.value)
            self.on_ban(peer)

    def _on_misbehaviour(self, peer_id: Any, reason: str) -> None:
        if peer_id is not None:
            self.penalise(str(peer_id), Offence.MALFORMED)

    # -- validators (§7.2) ---------------------------------------------------------------------

    def _make_validator(
        self, kind: GossipKind, check: Callable[[bytes, str], Awaitable[ErrorCode | None]]
    ) -> Callable[[Any, Any], Awaitable[bool]]:
        limit = self.specs[kind].max_bytes(self.params)
        my_id = self.host.get_id()

        async def validate(forwarder: Any, msg: Any) -> bool:
            if forwarder == my_id:
                return True  # our own publish: the node checked it before publishing
            peer = str(forwarder)
            try:
                data = bytes(msg.data)
                if len(data) > limit:
                    self._n["rejected"] += 1
                    self.penalise(peer, Offence.OVERSIZED)
                    return False
                code: ErrorCode | None = None
                with trio.move_on_after(self.config.validation_timeout_s) as scope:
                    code = await check(data, peer)
                if scope.cancelled_caught:
                    self._n["validator_timeouts"] += 1
                    return False  # our own slowness: never the peer's fault
            except trio.Cancelled:
                raise
            except Exception:
                self._n["validator_errors"] += 1
                log.exception("%s validator raised; message rejected", kind.value)
                return False
            if code is None:
                self._n["accepted"] += 1
                return True
            if code.is_transient:
                self._n["rejected_transient"] += 1
                return False
            self._n["rejected"] += 1
            log.debug("%s from %s rejected: %s", kind.value, peer, code.name)
            self.penalise(peer, Offence.INVALID)
            return False

        return validate

    # -- running --------------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Pubsub and the router as services; enter it inside `host.run()` and outside the nursery
        that `start` uses (the other order fails at exit, LIBP2P-NOTES)."""
        try:
            async with background_trio_service(self.pubsub), background_trio_service(self.router):
                await self.pubsub.wait_until_ready()
                yield
        finally:
            self.pubsub.seen_messages.stop()  # its sweeper thread outlives the service otherwise
            self._send.close()

    async def start(self, nursery: trio.Nursery) -> None:
        """Subscribe to every topic and start draining them (inside `running()`)."""
        for kind, topic in self.topics.items():
            sub = await self.pubsub.subscribe(topic)
            nursery.start_soon(self._drain, kind, sub)
        nursery.start_soon(self._maintenance)
        self._ready.set()

    async def _drain(self, kind: GossipKind, sub: Any) -> None:
        my_id = self.host.get_id().to_bytes()
        while True:
            try:
                msg = await sub.get()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return
            if msg.from_id == my_id or not self.config.inbound_queue:
                continue
            try:
                origin = str(type(self.host.get_id())(msg.from_id))
            except Exception:
                origin = "?"
            try:
                self._send.send_nowait(GossipMessage(kind, bytes(msg.data), origin))
            except trio.WouldBlock:
                self._n["inbound_dropped"] += 1

    async def _maintenance(self) -> None:
        while True:
            await trio.sleep(self.config.maintenance_s)
            # LIBP2P-NOTES: with adaptive gossip off these grow by one entry per message forever.
            self.router.recent_message_deliveries.clear()
            self.router.time_since_last_publish.clear()
            for book in (self._has, self._dont):
                for peer_id in [p for p in book if p not in self.pubsub.peers]:
                    del book[peer_id]

    async def publish(self, kind: GossipKind, raw: bytes) -> bool:
        """Publish `raw` on `kind`'s topic. False (and counted) when it is over the topic's limit;
        libp2p itself would deliver it locally and silently never to peers."""
        limit = self.specs[kind].max_bytes(self.params)
        if len(raw) > limit or len(raw) + 1024 > self.max_rpc:
            self._n["publish_too_large"] += 1
            return False
        await self._ready.wait()
        await self._wait_for_room()
        await self.pubsub.publish(self.topics[kind], raw)
        self._n["published"] += 1
        return True

    async def send_direct(
        self, peer_id: Any, kind: GossipKind, raws: Sequence[bytes], wait_s: float = DIRECT_WAIT_S
    ) -> int:
        """Send `raws` on `kind`'s topic to one peer only, as fresh messages from us: for what a peer
        that was apart may lack (the votes for our unfinalised blocks). `publish` cannot do this: the
        library drops, silently, our own publish of any payload it saw in the last 120 s or more. The
        peer validates them as any gossip, drops the ones it has (content-addressed ids) and forwards
        the new ones. Waits up to `wait_s` for the peer's gossip stream and its subscription to the
        topic, then sends `DIRECT_BATCH` messages every `DIRECT_BATCH_INTERVAL_S` (the receiver takes
        a burst beyond its limits for a flood: drops and penalties); returns how many messages were
        queued (0: the peer never got ready)."""
        topic = self.topics[kind]
        limit = self.specs[kind].max_bytes(self.params)

        def ready() -> bool:
            return peer_id in self.pubsub.peer_queues and peer_id in self.pubsub.peer_topics.get(topic, ())

        with trio.move_on_after(wait_s):
            while not ready():  # noqa: ASYNC110 - the library sets these with no event to wait on
                await trio.sleep(0.05)
        if not ready():
            return 0
        pubsub = self.pubsub
        msgs = []
        for raw in raws:
            if len(raw) > limit or len(raw) + 1024 > self.max_rpc:
                continue
            msg = rpc_pb2.Message(
                data=raw, topicIDs=[topic], from_id=pubsub.my_id.to_bytes(), seqno=pubsub._next_seqno()
            )
            if pubsub.strict_signing and pubsub.sign_key is not None:  # as Pubsub.publish signs
                signature = pubsub.sign_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
                msg.key = self.host.get_public_key().serialize()
                msg.signature = signature
            msgs.append(msg)
        sent = 0
        for start in range(0, len(msgs), DIRECT_BATCH):
            if start:
                await trio.sleep(DIRECT_BATCH_INTERVAL_S)
                if peer_id not in self.pubsub.peer_queues:
                    break  # it left
            batch = msgs[start : start + DIRECT_BATCH]
            self.router.send_rpc(peer_id, rpc_pb2.RPC(publish=batch))
            sent += len(batch)
        self._n["sent_direct"] += sent
        return sent

    def _longest_queue(self) -> int:
        return max((len(q) for q in list(self.pubsub.peer_queues.values())), default=0)

    async def _wait_for_room(self) -> None:
        """Pace our own publishes (LIBP2P-NOTES problem 3): the library's per-peer queues drop RPCs
        silently when full, and publish() never says so."""
        if self._longest_queue() <= self.config.publish_high_water:
            return
        self._n["publish_paced"] += 1
        with trio.move_on_after(self.config.publish_wait_s):
            while self._longest_queue() > self.config.publish_high_water:  # noqa: ASYNC110
                await trio.sleep(0.005)

    def mesh_size(self, kind: GossipKind) -> int:
        return len(self.router.mesh.get(self.topics[kind], ()))

    def statistics(self) -> GossipStats:
        return GossipStats(
            **self._n, in_flight=sum(self._gate.in_flight.values()), outbound_queued=self._longest_queue()
        )
