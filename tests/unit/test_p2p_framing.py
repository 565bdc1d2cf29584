"""Length-prefixed frames with deadlines (PROTOCOL §7.3): every failure is a value, never a hang."""

from __future__ import annotations

import trio
import trio.testing

from chain.errors import ErrorCode
from chain.types import Height
from p2p import framing
from p2p.messages import encode_message
from p2p.messages import sync as syncmsg


class Adapter:
    """The read/write shape of a libp2p stream over a real trio stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def read(self, n: int) -> bytes:
        return bytes(await self.stream.receive_some(n))

    async def write(self, data: bytes) -> None:
        await self.stream.send_all(data)


def pair() -> tuple[Adapter, Adapter]:
    a, b = trio.testing.memory_stream_pair()
    return Adapter(a), Adapter(b)


async def test_round_trip() -> None:
    a, b = pair()
    msg = syncmsg.GetBlocks(Height(7), 3)
    assert await framing.write_message(a, msg) is None
    assert await framing.read_message(b, syncmsg.GetBlocks, timeout_s=1) == msg


async def test_silence_is_a_timeout() -> None:
    _, b = pair()
    assert await framing.read_frame(b, 100, timeout_s=0.05) is ErrorCode.TIMEOUT


async def test_length_is_checked_before_the_body() -> None:
    a, b = pair()
    await a.write((10**9).to_bytes(4, "big"))  # no body follows: it must not be awaited
    assert await framing.read_frame(b, 1000, timeout_s=1) is ErrorCode.TOO_LARGE


async def test_truncated_frame_is_stream_closed() -> None:
    a, b = pair()
    await a.write((100).to_bytes(4, "big") + b"\x00" * 10)
    await a.stream.aclose()
    assert await framing.read_frame(b, 1000, timeout_s=1) is ErrorCode.STREAM_CLOSED


async def test_wrong_message_type_is_bad_message() -> None:
    a, b = pair()
    await framing.write_frame(a, encode_message(syncmsg.GetHeaders(Height(1), 2)))
    assert await framing.read_message(b, syncmsg.GetBlocks, timeout_s=1) is ErrorCode.BAD_MESSAGE


async def test_a_reader_that_never_reads_times_the_writer_out() -> None:
    a, _ = trio.testing.lockstep_stream_pair()
    assert await framing.write_frame(Adapter(a), b"x" * 1000, timeout_s=0.05) is ErrorCode.TIMEOUT
