"""Length-prefixed frames on a libp2p stream, with a deadline on every read and write (PROTOCOL §7.3).

Owns: `read_frame` / `write_frame` (u32 big-endian length, then an id-prefixed message) and
`request` (one request per stream: open, write, read one reply, close). Every failure is a value
(`ErrorCode.TIMEOUT`, `STREAM_CLOSED`, `TOO_LARGE`, `MALFORMED`), never an exception, so a handler
built on these cannot crash the host. Must not: interpret messages beyond their ids (p2p.messages decodes).
"""

from __future__ import annotations

import logging
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
