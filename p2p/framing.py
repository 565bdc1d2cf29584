"""Length-prefixed frames on a libp2p stream, with a deadline on every read and write (PROTOCOL §7.3).

Owns: `read_frame` / `write_frame` (u32 big-endian length, then an id-prefixed message) and
`request` (one request per stream: open, write, read one reply, close). Every failure is a value
(`ErrorCode.TIMEOUT`, `STREAM_CLOSED`, `TOO_LARGE`, `MALFORMED`), never an exception, so a handler
built on these cannot crash the host. Also the guard on libp2p's gossip read loop: a deadline for a
frame that has begun, and a report of declared lengths over the limit (`guard_gossip_reads`).
Must not: interpret messages beyond their ids (p2p.messages decodes).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Final

import trio

from chain.errors import ErrorCode
from p2p.messages import decode_message, encode_message, max_frame

log = logging.getLogger(__name__)

LEN_BYTES: Final = 4
READ_TIMEOUT_S: Final = 10.0
WRITE_TIMEOUT_S: Final = 10.0


async def _read_exactly(stream: Any, n: int) -> bytes | ErrorCode:
    parts: list[bytes] = []
    got = 0
    while got < n:
        try:
            chunk = await stream.read(n - got)
        except trio.Cancelled:
            raise
        except Exception:
            return ErrorCode.STREAM_CLOSED  # reset, or the connection went away
        if not chunk:
            return ErrorCode.STREAM_CLOSED
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


async def read_frame(stream: Any, max_bytes: int, timeout_s: float = READ_TIMEOUT_S) -> bytes | ErrorCode:
    """One frame of at most `max_bytes`; the length is checked before any of the body is read."""
    result: bytes | ErrorCode = ErrorCode.TIMEOUT
    with trio.move_on_after(timeout_s):
        result = await _read_body(stream, max_bytes)
    return result


async def _read_body(stream: Any, max_bytes: int) -> bytes | ErrorCode:
    head = await _read_exactly(stream, LEN_BYTES)
    if isinstance(head, ErrorCode):
        return head
    length = int.from_bytes(head, "big")
    if length > max_bytes:
        return ErrorCode.TOO_LARGE
    return await _read_exactly(stream, length)


async def write_frame(stream: Any, payload: bytes, timeout_s: float = WRITE_TIMEOUT_S) -> ErrorCode | None:
    """Write one frame; `TIMEOUT` when the remote stops reading, `STREAM_CLOSED` when it went away."""
    result: ErrorCode | None = ErrorCode.TIMEOUT
    with trio.move_on_after(timeout_s):
        try:
            await stream.write(len(payload).to_bytes(LEN_BYTES, "big") + payload)
            result = None
        except trio.Cancelled:
            raise
        except Exception:
            result = ErrorCode.STREAM_CLOSED
    return result


async def read_message(
    stream: Any, *expected: type[Any], timeout_s: float = READ_TIMEOUT_S
) -> Any | ErrorCode:
    frame = await read_frame(stream, max_frame(*expected), timeout_s)
    if isinstance(frame, ErrorCode):
        return frame
    return decode_message(frame, *expected)


async def write_message(stream: Any, msg: Any, timeout_s: float = WRITE_TIMEOUT_S) -> ErrorCode | None:
    return await write_frame(stream, encode_message(msg), timeout_s)


async def close_quietly(stream: Any, *, reset: bool = False) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        try:
            if reset:
                await stream.reset()
            else:
                await stream.close()
        except Exception:
            log.debug("closing a stream failed", exc_info=True)


async def request(
    host: Any,
    peer_id: Any,
    protocol: str,
    msg: Any,
    *expected: type[Any],
    timeout_s: float = READ_TIMEOUT_S,
) -> Any | ErrorCode:
    """Open a stream to `peer_id`, send `msg`, read one reply of the `expected` types. Never raises
    (except cancellation). A stream that cannot be opened (peer gone, protocol not served) or that
    breaks is `STREAM_CLOSED`; `TIMEOUT` only when the peer is there but does not answer in time;
    an `ErrorReply` becomes its code."""
    from p2p.messages.status import ErrorReply

    stream = None
    try:
        with trio.move_on_after(timeout_s):
            try:
                stream = await host.new_stream(peer_id, [protocol])
            except trio.Cancelled:
                raise
            except Exception as exc:
                log.debug("new_stream %s to %s failed: %s", protocol, peer_id, exc)
                return ErrorCode.STREAM_CLOSED
        if stream is None:
            return ErrorCode.TIMEOUT
        err = await write_message(stream, msg, timeout_s)
        if err is not None:
            return err
        reply = await read_message(stream, *expected, ErrorReply, timeout_s=timeout_s)
        if isinstance(reply, ErrorReply):
            try:
                return ErrorCode(reply.code)
            except ValueError:
                return ErrorCode.BAD_MESSAGE
        return reply
    finally:
        if stream is not None:
            await close_quietly(stream)


# -- gossip streams (varint-prefixed protobuf RPCs, read by libp2p's pubsub) -----------------------

GOSSIP_FRAME_TIMEOUT_S: Final = 10.0


class GossipFrameStalled(Exception):
    """Raised when a gossip frame that has begun does not arrive in full before its deadline."""


class _GuardedGossipStream:
    """A pubsub stream as libp2p's read loop sees it, with two checks the library lacks.

    libp2p reads a gossip RPC as a uvarint length (one byte per `read(1)`) then `read(n)` until the
    body is complete. Waiting for the first byte of a frame is idle time and has no deadline; once a
    frame has begun, the rest must arrive within `timeout_s` (a peer declaring 100 bytes and sending
    10 used to hold the stream forever). A declared length over `max_bytes` is reported to
    `on_oversized` before the library refuses it (it used to reset the stream with no penalty).
    """

    def __init__(self, stream: Any, max_bytes: int, timeout_s: float, on_oversized: Callable[[], None]):
        self._stream = stream
        self._max, self._timeout, self._on_oversized = max_bytes, timeout_s, on_oversized
        self._length = 0  # the varint being read
        self._shift = 0
        self._body = 0  # body bytes still to come
        self._deadline = math.inf

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def read(self, n: int | None = None) -> bytes:
        idle = self._body == 0 and self._shift == 0
        if idle:
            data: bytes = await self._stream.read(n)
            self._deadline = trio.current_time() + self._timeout
        else:
            with trio.move_on_at(self._deadline):
                data = await self._stream.read(n)
                self._account(data)
                return data
            raise GossipFrameStalled(f"gossip frame not complete within {self._timeout:g} s")
        self._account(data)
        return data

    def _account(self, data: bytes) -> None:
        if self._body:
            self._body = max(0, self._body - len(data))
            return
        for byte in data:  # varint bytes (libp2p reads them one at a time)
            self._length |= (byte & 0x7F) << self._shift
            if byte & 0x80:
                self._shift += 7
                continue
            if self._length > self._max:
                self._on_oversized()
            self._body, self._length, self._shift = self._length, 0, 0


def guard_gossip_reads(
    pubsub: Any,
    max_bytes: int,
    on_oversized: Callable[[Any], None],
    timeout_s: float = GOSSIP_FRAME_TIMEOUT_S,
) -> None:
    """Make `pubsub` read every inbound gossip stream through `_GuardedGossipStream`.

    `on_oversized(peer_id)` is called for a declared length over `max_bytes`; a stalled frame raises
    `GossipFrameStalled`, which p2p.compat's stream handler turns into a reset and a report."""
    original = pubsub.continuously_read_stream

    async def continuously_read_stream(stream: Any) -> None:
        peer = stream.muxed_conn.peer_id
        await original(_GuardedGossipStream(stream, max_bytes, timeout_s, lambda: on_oversized(peer)))

    pubsub.continuously_read_stream = continuously_read_stream
