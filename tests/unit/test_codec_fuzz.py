"""Property tests: the decoder never raises, whatever the bytes (PROTOCOL §1.1).

Owns: random bytes and random mutations (bit flips, truncation, insertion, deletion, splices) of
valid encodings, for every codec type. The property: `decode` returns an `ErrorCode`, or an object
whose canonical encoding is exactly the input. Must not: assert which code (test_codec_reject.py does).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.codec import decode, encode
from chain.errors import ErrorCode
from tests.support import strategies as S

ALL_TYPES = S.CODEC_TYPES


def _assert_decodes_cleanly(cls: type[Any], data: bytes) -> None:
    result = decode(cls, data)  # must not raise
    if isinstance(result, ErrorCode):
        return
    assert type(result) is cls
    assert encode(result) == data, "a decoded object must re-encode to the exact input bytes"


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
@given(data=st.binary(max_size=512))
def test_random_bytes_never_raise(cls: type[Any], data: bytes) -> None:
    _assert_decodes_cleanly(cls, data)


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_mutated_encodings_never_raise(cls: type[Any], data: st.DataObject) -> None:
    valid = encode(data.draw(S.for_type(cls)))
    _assert_decodes_cleanly(cls, data.draw(S.edits(valid)))


@given(data=st.data())
def test_decoding_as_the_wrong_type_never_raises(data: st.DataObject) -> None:
    src, dst = data.draw(st.sampled_from(ALL_TYPES)), data.draw(st.sampled_from(ALL_TYPES))
    _assert_decodes_cleanly(dst, encode(data.draw(S.for_type(src))))


def test_deep_nesting_is_rejected_not_a_crash() -> None:
    for cls in (ALL_TYPES[0], ALL_TYPES[-1]):
        assert isinstance(decode(cls, b"\x91" * 100_000 + b"\x00"), ErrorCode)
        assert isinstance(decode(cls, b"\xdc\xff\xff" * 50_000), ErrorCode)
