"""Version-gated robustness fixes for py-libp2p 0.8.1 (design/LIBP2P-NOTES.md, PROTOCOL §7).

Owns: the check that the installed libp2p is exactly the version these fixes were written for, and
the class-level patches that keep one malformed frame, one garbage key or ordinary large-message
traffic from taking the host down. Must not: know about chain objects, topics or scoring policy; it
only reports misbehaviour through a hook (`set_misbehaviour_hook`) that the gossip layer installs.

Fixes (numbers as in LIBP2P-NOTES.md):
1. `Pubsub.stream_handler`: any exception (protobuf `DecodeError`, ...) resets that stream, reports
   the peer as `malformed`, and returns. `Pubsub.push_msg`: any exception (garbage `key`) drops that
   message and reports the forwarder.
2. `Pubsub.write_msg`: one `trio.Lock` per stream, so `send_recent_messages` /
   `flush_pending_messages` can never interleave a 64 KiB yamux frame into the send loop's RPC.
3. Larger per-peer outbound queues and subscription channels than the hard-coded 32; what the
   router still drops is counted (`set_drop_counter`).
4. An outbound filter just before each queued RPC is written: a message the peer has meanwhile
   sent us (or announced with IDONTWANT, seen through `set_control_hooks`) is not sent to it.
   Under load the per-peer queues are long, and the library only checks at enqueue time, so most
   of a full mesh's duplicate 100 KB transfers happened after the peer already had the message.
5. `GossipSub.send_recent_messages` (the replay of the message cache to a peer that just joined a
   topic) is capped at `REPLAY_MAX_BYTES`, newest first: at 50 msg/s of 100 KB the library sent
   every joining peer about 15 MB, over one stream, while everything else waited. A node that joins
   late catches up through sync, not through gossip.
6. Yamux: each stream starts with a 4 MiB receive window (library: 256 KiB; its auto-tuning may
   still double it, up to 16 MiB) and credits it at half-window hysteresis as go-yamux
   does (library default: one WINDOW_UPDATE frame, so one Noise message and one syscall, after every
   read). 100 KB gossip through one relay: 115 -> 147 msg/s.
7. Signed peer records: every gossip RPC carries the sender's record, and the library verified it
   twice per RPC (pubsub and router) and rebuilt ours per RPC. The same record bytes from the same
   peer are not verified again for `RECORD_MEMO_S`; ours is rebuilt at most once a second.
8. Our own publish is not signature-checked again right after we signed it. With 6-8: 172 msg/s
   (figures in docs/networking.md).
Each fix is one `_fix_N()`; `install()` applies them once, at import of `p2p.host`, and only on
libp2p 0.8.1: anything else raises `Libp2pVersionError` so nobody runs with fixes that do not match
the library. Every patch of the library lives here; other modules set per-instance hooks only.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Final, Protocol

import trio

from chain.errors import LinguaChainError

__all__ = ["Libp2pVersionError", "LinguaChainError", "install"]

log = logging.getLogger(__name__)

SUPPORTED_LIBP2P: Final = "0.8.1"
OUTBOUND_QUEUE_SIZE: Final = 4096  # per peer RPCs (library: 32, silently dropped when full)
SUBSCRIPTION_CHANNEL_SIZE: Final = 4096  # per topic (library: 32); we drain it promptly anyway
REPLAY_MAX_BYTES: Final = 1024 * 1024  # of recent messages replayed to a peer that joins a topic
YAMUX_RECV_WINDOW: Final = 4 * 1024 * 1024  # per-stream receive window we grant (library: 256 KiB)
RECORD_MEMO_S: Final = 60.0  # a peer's unchanged signed record is re-verified after this long
RECORD_MEMO_SIZE: Final = 4096
LOCAL_RECORD_S: Final = 1.0  # our own record (its addresses) is rebuilt at most this often

# (peer_id, reason) -> None; installed per Pubsub instance as `_lc_misbehaviour`.
MisbehaviourHook = Callable[[Any, str], None]


class Gate(Protocol):
    """Runs before any work on a received gossip message (signature check, validators)."""

    def admit(self, forwarder: Any, msg: Any) -> bool:
        """False drops the message at once (rate limits, bans, too many in flight)."""
        ...

    async def wait_turn(self, msg: Any) -> None:
        """Called after `admit`: may wait (for another copy of the same message being processed)."""
        ...

    def release(self, forwarder: Any, msg: Any) -> None:
        """Called once for every admitted message when its processing ends."""
        ...


# (peer_id, rpc) -> the rpc to write, or None to skip it; runs just before a queued RPC is written.
OutboundFilter = Callable[[Any, Any], Any]


class Libp2pVersionError(LinguaChainError):
    """Raised when the installed libp2p is not the exact version our fixes were written for."""


_installed = False
_local_publishes: dict[int, Any] = {}  # id(msg) -> msg while our own publish is being pushed


def installed_version() -> str:
    return version("libp2p")


def check_version() -> None:
    found = installed_version()
    if found != SUPPORTED_LIBP2P:
        raise Libp2pVersionError(
            f"libp2p {found} is installed, but p2p/compat.py patches exactly {SUPPORTED_LIBP2P}: "
            "re-check every fix in design/LIBP2P-NOTES.md against the new version before changing the pin"
        )


def _report(pubsub: Any, peer_id: Any, reason: str) -> None:
    hook: MisbehaviourHook | None = getattr(pubsub, "_lc_misbehaviour", None)
    if hook is None:
        return
    try:
        hook(peer_id, reason)
    except Exception:
        log.exception("misbehaviour hook failed")


def set_misbehaviour_hook(pubsub: Any, hook: MisbehaviourHook | None) -> None:
    pubsub._lc_misbehaviour = hook


def set_gate(pubsub: Any, gate: Gate | None) -> None:
    pubsub._lc_gate = gate


def set_outbound_filter(pubsub: Any, trim: OutboundFilter | None) -> None:
    pubsub._lc_outbound_filter = trim


class ControlHooks(Protocol):
    """Gossipsub control messages a router received (fix 4), before the library acts on them."""

    def has(self, peer_id: Any, message_ids: list[bytes]) -> None:
        """IDONTWANT: `peer_id` has these messages."""
        ...

    def wants(self, peer_id: Any, message_ids: list[bytes]) -> None:
        """IWANT: `peer_id` asks for these messages (again)."""
        ...


def set_control_hooks(router: Any, hooks: ControlHooks | None) -> None:
    router._lc_control = hooks


def set_drop_counter(router: Any, on_drop: Callable[[], None] | None) -> None:
    """`on_drop()` for every outbound RPC the router still drops (oversized or queue full, fix 3)."""
    router._lc_on_drop = on_drop


class _NoValidationCache:
    """Replaces `Pubsub.validation_cache`: a cached reject would hide a transiently invalid message
    (an orphan block) for 5 minutes after its parent arrived; our validators are cheap to rerun."""

    def get(self, msg_id: bytes) -> None:
        return None

    def put(self, msg_id: bytes, result: object) -> None:
        return None

    def clear_expired(self) -> None:
        return None


def disable_validation_cache(pubsub: Any) -> None:
    pubsub.validation_cache = _NoValidationCache()


@dataclass(frozen=True, slots=True)
class _Lib:
    """The libp2p modules the fixes patch."""

    peerstore: Any
    gossipsub: Any
    pubsub: Any
    rpc_queue: Any
    pubsub_utils: Any
    rpc_pb2: Any
    yamux: Any

    @classmethod
    def load(cls) -> _Lib:
        from libp2p.peer import peerstore
        from libp2p.pubsub import gossipsub, pubsub, rpc_queue
        from libp2p.pubsub import utils as pubsub_utils
        from libp2p.pubsub.pb import rpc_pb2
        from libp2p.stream_muxer.yamux import yamux

        return cls(peerstore, gossipsub, pubsub, rpc_queue, pubsub_utils, rpc_pb2, yamux)


def install() -> None:
    """Apply every fix once (idempotent). Raises `Libp2pVersionError` on another libp2p."""
    global _installed
    if _installed:
        return
    check_version()
    lib = _Lib.load()
    for fix in (_fix_1, _fix_2, _fix_3, _fix_4, _fix_5, _fix_6, _fix_7, _fix_8):
        fix(lib)
    _installed = True
    log.debug("libp2p %s robustness fixes installed", SUPPORTED_LIBP2P)


def _fix_1(lib: _Lib) -> None:
    """A malformed frame or message must not kill the host; the gate runs before any library work."""
    Pubsub = lib.pubsub.Pubsub
    original_stream_handler: Callable[[Any, Any], Awaitable[None]] = Pubsub.stream_handler

    async def stream_handler(self: Any, stream: Any) -> None:
        try:
            await original_stream_handler(self, stream)
        except trio.Cancelled:
            raise
        except Exception as exc:
            peer_id = _peer_of(stream)
            log.info("gossip stream from %s failed (%s: %s); reset", peer_id, type(exc).__name__, exc)
            _report(self, peer_id, "malformed")
            try:
                with trio.move_on_after(1):
                    await stream.reset()
            except Exception:
                log.debug("reset after a malformed frame failed", exc_info=True)
            try:
                self._handle_dead_peer(peer_id)
            except Exception:
                log.debug("dead-peer cleanup failed", exc_info=True)

    original_push_msg: Callable[[Any, Any, Any], Awaitable[None]] = Pubsub.push_msg

    async def push_msg(self: Any, msg_forwarder: Any, msg: Any) -> None:
        gate: Gate | None = getattr(self, "_lc_gate", None)
        local = msg_forwarder == self.my_id
        gate = None if local else gate
        if local:
            _local_publishes[id(msg)] = msg  # fix 8 reads it in signature_validator
        try:
            if gate is not None and not gate.admit(msg_forwarder, msg):
                return
            try:
                if gate is not None:
                    await gate.wait_turn(msg)
                await original_push_msg(self, msg_forwarder, msg)
            finally:
                if gate is not None:
                    gate.release(msg_forwarder, msg)
        except trio.Cancelled:
            raise
        except Exception as exc:
            log.info("gossip message from %s dropped (%s: %s)", msg_forwarder, type(exc).__name__, exc)
            _report(self, msg_forwarder, "malformed")
        finally:
            if local:
                _local_publishes.pop(id(msg), None)

    setattr(Pubsub, "stream_handler", stream_handler)  # noqa: B010 - a patch, on purpose
    setattr(Pubsub, "push_msg", push_msg)  # noqa: B010


def _fix_2(lib: _Lib) -> None:
    """One writer at a time per stream; each RPC passes the outbound filter of fix 4 first."""
    Pubsub = lib.pubsub.Pubsub
    original_write_msg: Callable[[Any, Any, Any], Awaitable[bool]] = Pubsub.write_msg

    async def write_msg(self: Any, stream: Any, rpc_msg: Any) -> bool:
        lock: trio.Lock | None = getattr(stream, "_lc_write_lock", None)
        if lock is None:
            lock = trio.Lock()
            stream._lc_write_lock = lock
        trim: OutboundFilter | None = getattr(self, "_lc_outbound_filter", None)
        if trim is not None:
            try:
                rpc_msg = trim(_peer_of(stream), rpc_msg)
            except Exception:
                log.exception("outbound filter failed; RPC sent unfiltered")
            if rpc_msg is None:
                return True  # nothing left worth sending
        async with lock:
            return await original_write_msg(self, stream, rpc_msg)

    setattr(Pubsub, "write_msg", write_msg)  # noqa: B010


def _fix_3(lib: _Lib) -> None:
    """Queues that do not silently drop ordinary bursts, and a count of what is still dropped."""

    class RpcQueue(lib.rpc_queue.RpcQueue):  # type: ignore[misc, name-defined]
        lc_max_message_size: int = lib.rpc_queue.DefaultMaxMessageSize

        def __init__(self, max_size: int = OUTBOUND_QUEUE_SIZE, max_message_size: int | None = None) -> None:
            super().__init__(max_size, max_message_size or RpcQueue.lc_max_message_size)

    GossipSub = lib.gossipsub.GossipSub
    original_drop: Callable[..., Any] = GossipSub._handle_dropped_rpc

    def handle_dropped_rpc(self: Any, *args: Any, **kwargs: Any) -> Any:
        on_drop: Callable[[], None] | None = getattr(self, "_lc_on_drop", None)
        if on_drop is not None:
            on_drop()
        return original_drop(self, *args, **kwargs)

    setattr(GossipSub, "_handle_dropped_rpc", handle_dropped_rpc)  # noqa: B010
    setattr(lib.pubsub, "RpcQueue", RpcQueue)  # noqa: B010
    setattr(lib.pubsub, "SUBSCRIPTION_CHANNEL_SIZE", SUBSCRIPTION_CHANNEL_SIZE)  # noqa: B010


def _fix_4(lib: _Lib) -> None:
    """What a peer told us it has (IDONTWANT) or wants again (IWANT) reaches the outbound filter."""
    GossipSub = lib.gossipsub.GossipSub
    original_idontwant: Callable[[Any, Any, Any], Awaitable[None]] = GossipSub.handle_idontwant
    original_iwant: Callable[[Any, Any, Any], Awaitable[None]] = GossipSub.handle_iwant

    async def handle_idontwant(self: Any, idontwant: Any, sender: Any) -> None:
        hooks: ControlHooks | None = getattr(self, "_lc_control", None)
        if hooks is not None:
            hooks.has(sender, [bytes(m) for m in idontwant.messageIDs])
        await original_idontwant(self, idontwant, sender)

    async def handle_iwant(self: Any, iwant: Any, sender: Any) -> None:
        hooks: ControlHooks | None = getattr(self, "_lc_control", None)
        if hooks is not None:
            hooks.wants(sender, [bytes(m) for m in iwant.messageIDs])
        await original_iwant(self, iwant, sender)

    setattr(GossipSub, "handle_idontwant", handle_idontwant)  # noqa: B010
    setattr(GossipSub, "handle_iwant", handle_iwant)  # noqa: B010


def _fix_5(lib: _Lib) -> None:
    """A bounded replay of the message cache to a peer that joins a topic (newest first)."""
    rpc_pb2 = lib.rpc_pb2

    async def send_recent_messages(self: Any, peer_id: Any, topic: str) -> None:
        pubsub = self.pubsub
        if pubsub is None or peer_id not in pubsub.peers:
            return
        budget = REPLAY_MAX_BYTES
        chosen = []
        for mid in reversed(self.mcache.window(topic)):
            msg = self.mcache.get(mid)
            if msg is None:
                continue
            if len(msg.data) > budget:
                break
            budget -= len(msg.data)
            chosen.append(msg)
        stream = pubsub.peers.get(peer_id)
        for msg in reversed(chosen):
            if stream is None:
                return
            try:
                await pubsub.write_msg(stream, rpc_pb2.RPC(publish=[msg]))
            except Exception:
                log.debug("replay to %s failed", peer_id, exc_info=True)
                return

    setattr(lib.gossipsub.GossipSub, "send_recent_messages", send_recent_messages)  # noqa: B010


def _fix_6(lib: _Lib) -> None:
    """Yamux: window credit at half-window hysteresis, from a larger receive window."""
    yamux_mod = lib.yamux
    setattr(yamux_mod, "_yamux_release_on_read", lambda: False)  # noqa: B010
    original_stream_init: Callable[..., None] = yamux_mod.YamuxStream.__init__

    def stream_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_stream_init(self, *args, **kwargs)
        self.target_recv_window = max(self.target_recv_window, YAMUX_RECV_WINDOW)

    setattr(yamux_mod.YamuxStream, "__init__", stream_init)  # noqa: B010


def _fix_7(lib: _Lib) -> None:
    """Signed peer records verified once per peer and record bytes; ours rebuilt at most once a second."""
    original_consume: Callable[[Any, Any, Any], bool] = lib.pubsub_utils.maybe_consume_signed_record
    accepted: OrderedDict[tuple[Any, bytes], float] = OrderedDict()

    def maybe_consume_signed_record(rpc: Any, host: Any, peer_id: Any) -> bool:
        if not rpc.HasField("senderRecord"):
            return True
        key = (peer_id, bytes(rpc.senderRecord))
        now = time.monotonic()
        at = accepted.get(key)
        if at is not None and now - at < RECORD_MEMO_S:
            return True  # these exact bytes from this peer passed every check already
        ok = original_consume(rpc, host, peer_id)
        if ok:
            accepted[key] = now
            accepted.move_to_end(key)
            if len(accepted) > RECORD_MEMO_SIZE:
                accepted.popitem(last=False)
        return ok

    original_env: Callable[[Any], tuple[bytes, bool]] = lib.peerstore.env_to_send_in_RPC
    ours: weakref.WeakKeyDictionary[Any, tuple[float, bytes]] = weakref.WeakKeyDictionary()

    def env_to_send_in_RPC(host: Any) -> tuple[bytes, bool]:
        now = time.monotonic()
        hit = ours.get(host)
        if hit is not None and now - hit[0] < LOCAL_RECORD_S:
            return hit[1], False
        envelope, fresh = original_env(host)
        ours[host] = (now, envelope)
        return envelope, fresh

    for module in (lib.pubsub, lib.gossipsub):
        setattr(module, "maybe_consume_signed_record", maybe_consume_signed_record)  # noqa: B010
        setattr(module, "env_to_send_in_RPC", env_to_send_in_RPC)  # noqa: B010


def _fix_8(lib: _Lib) -> None:
    """Our own publish is not signature-checked again right after we signed it (fix 1 marks it)."""
    original_signature_validator: Callable[[Any], bool] = getattr(lib.pubsub, "signature_validator")  # noqa: B009

    def signature_validator(msg: Any) -> bool:
        if _local_publishes.get(id(msg)) is msg:
            return True
        return original_signature_validator(msg)

    setattr(lib.pubsub, "signature_validator", signature_validator)  # noqa: B010


def set_max_rpc_size(nbytes: int) -> None:
    """Outbound RPC size limit of every per-peer queue (PROTOCOL §7.2: max_block_bytes + headroom)."""
    from libp2p.pubsub import pubsub as pubsub_mod

    queue_cls: Any = getattr(pubsub_mod, "RpcQueue")  # noqa: B009 - our subclass, set by install()
    queue_cls.lc_max_message_size = max(queue_cls.lc_max_message_size, nbytes)


def _peer_of(stream: Any) -> Any:
    try:
        return stream.muxed_conn.peer_id
    except Exception:
        return None
