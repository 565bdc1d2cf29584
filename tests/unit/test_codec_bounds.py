"""Issue 12 finding 6: the codec's allocation is bounded by its input's length, not by declared sizes."""

from __future__ import annotations

import struct
import tracemalloc

import pytest

from chain.codec import unpack
from chain.errors import ErrorCode


@pytest.mark.parametrize("declared", [100_000, 5_000, 1_000])
def test_nested_array_headers_cannot_make_a_small_message_allocate(declared: int) -> None:
    data = (b"\xdd" + struct.pack(">I", declared)) * 1000  # 5 KB: 1,000 nested arrays, no items
    tracemalloc.start()
    try:
        result = unpack(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(result, ErrorCode)
    assert peak < 1_000_000  # was 40-80 MB


def test_bin_and_str_headers_longer_than_the_input_are_refused() -> None:
    for header in (b"\xc6" + struct.pack(">I", 3_000_000), b"\xdb" + struct.pack(">I", 60_000)):
        assert unpack(header + b"x" * 10) in (ErrorCode.TOO_LARGE, ErrorCode.MALFORMED)
    assert unpack(b"\x93\x01\x02\x03") == [1, 2, 3]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x92\x01\xdd" + (200_000).to_bytes(4, "big"), ErrorCode.TOO_LARGE),  # over MAX_ARRAY_LEN
        (b"\x92\x01\xdb" + (70_000).to_bytes(4, "big") + b"ab", ErrorCode.TOO_LARGE),  # over MAX_STR_LEN
        (b"\x93\x01\x81\x01", ErrorCode.WRONG_TYPE),  # a map, then truncated
        (b"\x93\x01\xd4\x01", ErrorCode.WRONG_TYPE),  # an ext, then truncated
        (b"\x93\x01\x02", ErrorCode.MALFORMED),  # merely truncated
        (b"\x92\xc1", ErrorCode.MALFORMED),  # the never-used byte
    ],
)
def test_truncated_input_keeps_the_code_of_the_limit_it_breaks(data: bytes, code: ErrorCode) -> None:
    assert unpack(data) is code
