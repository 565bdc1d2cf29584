"""Each way of breaking canonical form is rejected with its own `ErrorCode` (PROTOCOL §1.1).

Owns: hand-built malformed and non-canonical encodings, one test per code: map instead of array,
non-minimal integers and lengths, bin/str confusion, trailing bytes, wrong arity, floats,
out-of-range integers, unknown enum values, wrong-length hashes, oversized input.
Must not: rely on random generation (test_codec_fuzz.py does that).
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import msgpack
import pytest

from chain.block import Block, TxBody
from chain.codec import DEFAULT_MAX_BYTES, MAX_STR_LEN, decode, decode_or_raise, encode, pack, to_plain
from chain.crypto import SecretKey
from chain.errors import ErrorCode, InvalidObjectError
from chain.evidence import Evidence
from chain.header import Attestation, BlockKind, Header
from chain.params import DEVNET, ChainParams
from chain.tx import Transfer, Tx, make_tx
from chain.types import AccountId, Amount, BlockHash, ChainId, Height

KEY = SecretKey.from_label("alice")
ATT = Attestation(
    ChainId("lc-devnet"),
    Height(5),
    BlockHash(b"\x11" * 32),
    Height(0),
    BlockHash(bytes(32)),
    KEY.pubkey,
).signed(KEY)
TX = make_tx(KEY, ChainId("lc-devnet"), 3, 1_000, Transfer(AccountId(b"\x22" * 20), Amount(7), b"memo"))
HEADER = Header(
    version=1,
    chain_id=ChainId("lc-devnet"),
    height=Height(1),
    kind=BlockKind.TX,
    prev_hash=BlockHash(b"\x33" * 32),
    timestamp_ms=1_700_000_000_000,  # type: ignore[arg-type]
    proposer=KEY.pubkey,
    rank=0,
    vdf_output=b"",
    vdf_proof=b"",
    body_root=b"\x44" * 32,  # type: ignore[arg-type]
    state_root=b"\x55" * 32,  # type: ignore[arg-type]
    parent_certificate=(ATT,),
)


def _field_index(cls: type[Any], name: str) -> int:
    return [f.name for f in dataclasses.fields(cls)].index(name)


def _with(obj: Any, index: int, value: Any) -> bytes:
    """The encoding of `obj` with top-level field `index` replaced by the plain `value`."""
    plain = to_plain(obj)
    plain[index] = value
    return pack(plain)


def test_the_fixtures_are_valid() -> None:
    for obj in (ATT, TX, HEADER, DEVNET):
        assert decode(type(obj), encode(obj)) == obj


# -- structure -----------------------------------------------------------------------------------


def test_map_instead_of_array_is_wrong_type() -> None:
    fields = ["chain_id", "height", "block_hash", "source_height", "source_hash", "validator", "signature"]
    as_map = msgpack.packb(dict(zip(fields, to_plain(ATT), strict=True)), use_bin_type=True)
    assert decode(Attestation, as_map) is ErrorCode.WRONG_TYPE
    assert decode(Attestation, b"\x80") is ErrorCode.WRONG_TYPE  # empty map
    nested = to_plain(HEADER)
    nested[12] = [dict(enumerate(to_plain(ATT)))]
    assert (
        decode(Header, msgpack.packb(nested, use_bin_type=True, strict_types=False)) is ErrorCode.WRONG_TYPE
    )


def test_scalar_instead_of_array_is_wrong_type() -> None:
    assert decode(Attestation, pack(5)) is ErrorCode.WRONG_TYPE
    assert decode(Attestation, pack(b"x")) is ErrorCode.WRONG_TYPE
    assert decode(Attestation, pack(None)) is ErrorCode.WRONG_TYPE
    assert decode(Attestation, pack(True)) is ErrorCode.WRONG_TYPE


def test_trailing_bytes() -> None:
    assert decode(Attestation, encode(ATT) + b"\x00") is ErrorCode.TRAILING_BYTES
    assert decode(Tx, encode(TX) + encode(TX)) is ErrorCode.TRAILING_BYTES


def test_truncated_input_is_malformed() -> None:
    data = encode(TX)
    for cut in (0, 1, len(data) // 2, len(data) - 1):
        assert decode(Tx, data[:cut]) is ErrorCode.MALFORMED
    assert decode(Tx, b"\xc1") is ErrorCode.MALFORMED  # the one byte msgpack never uses


def test_wrong_arity() -> None:
    plain = to_plain(ATT)
    assert decode(Attestation, pack(plain[:-1])) is ErrorCode.WRONG_ARITY
    assert decode(Attestation, pack([*plain, b""])) is ErrorCode.WRONG_ARITY
    assert decode(Attestation, pack([])) is ErrorCode.WRONG_ARITY
    header = to_plain(HEADER)
    header[12] = [to_plain(ATT)[:6]]  # a nested attestation missing its signature
    assert decode(Header, pack(header)) is ErrorCode.WRONG_ARITY


# -- integers --------------------------------------------------------------------------------------


def test_non_minimal_integer_is_non_canonical() -> None:
    canonical = encode(ATT)
    head = b"\x97" + pack(ATT.chain_id)
    assert canonical.startswith(head + b"\x05")
    rest = canonical[len(head) + 1 :]
    for wide in (
        b"\xcc\x05",
        b"\xcd\x00\x05",
        b"\xce\x00\x00\x00\x05",
        b"\xcf" + (5).to_bytes(8, "big"),
        b"\xd0\x05",
        b"\xd1\x00\x05",
    ):
        assert decode(Attestation, head + wide + rest) is ErrorCode.NON_CANONICAL


def test_non_minimal_lengths_are_non_canonical() -> None:
    canonical = encode(ATT)
    assert canonical[0] == 0x97
    assert decode(Attestation, b"\xdc\x00\x07" + canonical[1:]) is ErrorCode.NON_CANONICAL  # array16
    cid = ATT.chain_id.encode()
    str8 = b"\xd9" + bytes([len(cid)]) + cid
    assert decode(Attestation, b"\x97" + str8 + canonical[1 + 1 + len(cid) :]) is ErrorCode.NON_CANONICAL
    memo_plain = to_plain(TX)
    good = encode(TX)
    bin8 = b"\xc4\x04memo"
    bin16 = b"\xc5\x00\x04memo"
    assert memo_plain[6][2] == b"memo"
    assert good.count(bin8) == 1
    assert decode(Tx, good.replace(bin8, bin16)) is ErrorCode.NON_CANONICAL


def test_out_of_range_integers() -> None:
    assert decode(Attestation, _with(ATT, 1, -1)) is ErrorCode.INT_OUT_OF_RANGE  # Height >= 0
    assert decode(Attestation, _with(ATT, 1, 2**63)) is ErrorCode.INT_OUT_OF_RANGE  # Height <= 2^63-1
    assert decode(Tx, _with(TX, 0, 256)) is ErrorCode.INT_OUT_OF_RANGE  # version: U8
    assert decode(Header, _with(HEADER, 7, 2**32)) is ErrorCode.INT_OUT_OF_RANGE  # rank: U32
    plain = to_plain(TX)
    plain[6][1] = 2**63  # Amount above 2^63-1 (PROTOCOL §1.3)
    assert decode(Tx, pack(plain)) is ErrorCode.INT_OUT_OF_RANGE


def test_unknown_enum_value() -> None:
    for bad in (0, 7, 255, 2**40):
        assert decode(Tx, _with(TX, 2, bad)) is ErrorCode.UNKNOWN_ENUM, bad  # TxKind is 1..6
    assert decode(Header, _with(HEADER, 3, 4)) is ErrorCode.UNKNOWN_ENUM  # BlockKind is 0..3
    ev = pack([9, []])
    assert decode(Evidence, ev) is ErrorCode.UNKNOWN_ENUM
    assert decode(Tx, _with(TX, 2, -1)) is ErrorCode.UNKNOWN_ENUM


def test_enum_and_payload_must_agree() -> None:
    # kind says STAKE ([validator, amount]) but the payload is a TRANSFER ([to, amount, memo])
    assert decode(Tx, _with(TX, 2, 2)) is ErrorCode.WRONG_ARITY


def test_floats_are_forbidden() -> None:
    as_double = _with(ATT, 1, 5.0)
    head = b"\x97" + pack(ATT.chain_id)
    as_single = head + b"\xca" + struct.pack(">f", 5.0) + encode(ATT)[len(head) + 1 :]
    assert decode(Attestation, as_double) is ErrorCode.FLOAT_FORBIDDEN
    assert decode(Attestation, as_single) is ErrorCode.FLOAT_FORBIDDEN
    assert decode(ChainParams, _with(DEVNET, 2, 1000.0)) is ErrorCode.FLOAT_FORBIDDEN


def test_booleans_and_nil_are_not_integers() -> None:
    assert decode(Attestation, _with(ATT, 1, True)) is ErrorCode.WRONG_TYPE
    assert decode(Attestation, _with(ATT, 1, None)) is ErrorCode.WRONG_TYPE


# -- bytes and text ----------------------------------------------------------------------------------


def test_str_where_bin_is_expected_and_the_reverse() -> None:
    assert decode(Attestation, _with(ATT, 2, "a" * 32)) is ErrorCode.WRONG_TYPE  # block_hash as str
    assert decode(Attestation, _with(ATT, 0, b"lc-devnet")) is ErrorCode.WRONG_TYPE  # chain_id as bin
    # old msgpack "raw" (use_bin_type=False) writes bytes as str: never accepted as bytes
    att = Attestation(
        ChainId("lc-devnet"),
        Height(5),
        BlockHash(b"a" * 32),
        Height(0),
        BlockHash(bytes(32)),
        KEY.pubkey,
    )
    legacy = msgpack.packb(to_plain(att), use_bin_type=False)
    assert decode(Attestation, legacy) in (ErrorCode.WRONG_TYPE, ErrorCode.BAD_TEXT)
    assert decode(Attestation, _with(ATT, 0, "LC DEVNET")) is ErrorCode.BAD_TEXT  # chain id pattern


def test_invalid_utf8_text_is_bad_text() -> None:
    canonical = encode(ATT)
    cid = ATT.chain_id.encode()
    broken = canonical.replace(cid, b"\xff" + cid[1:], 1)
    assert decode(Attestation, broken) is ErrorCode.BAD_TEXT


def test_wrong_length_hash_key_or_signature() -> None:
    for index, length in ((2, 31), (2, 33), (2, 0), (4, 31), (5, 31), (6, 63), (6, 65)):
        assert decode(Attestation, _with(ATT, index, b"\x01" * length)) is ErrorCode.BAD_LENGTH


# -- sizes -------------------------------------------------------------------------------------------


def test_oversized_input() -> None:
    data = encode(TX)
    assert decode(Tx, data, max_bytes=len(data) - 1) is ErrorCode.TOO_LARGE
    assert decode(Tx, data, max_bytes=len(data)) == TX
    assert decode(Tx, data + b"\x00" * DEFAULT_MAX_BYTES) is ErrorCode.TOO_LARGE


def test_oversized_fields() -> None:
    plain = to_plain(TX)
    plain[6][2] = b"m" * 257  # memo is at most 256 bytes
    assert decode(Tx, pack(plain)) is ErrorCode.TOO_LARGE
    header = to_plain(HEADER)
    header[8] = b"\x00" * 257  # vdf_output is at most 256 bytes
    assert decode(Header, pack(header)) is ErrorCode.TOO_LARGE
    assert decode(Attestation, _with(ATT, 0, "a" * (MAX_STR_LEN + 1))) is ErrorCode.TOO_LARGE
    params = to_plain(DEVNET)
    params[_field_index(ChainParams, "lora_targets")] = ["q"] * 17  # at most 16 names
    assert decode(ChainParams, pack(params)) is ErrorCode.TOO_LARGE


def test_array_longer_than_its_limit_is_too_large() -> None:
    # a TX block whose body claims 200 000 txs (array32 header, no items): rejected by the limit
    # before any item is parsed (MAX_ARRAY_LEN is 100 000)
    huge_body = b"\x91" + b"\xdd" + (200_000).to_bytes(4, "big")
    assert decode(Block, b"\x92" + encode(HEADER) + huge_body) is ErrorCode.TOO_LARGE
    assert decode(Block, b"\x92" + encode(HEADER) + b"\x91\x90") == Block(HEADER, TxBody(()))
    certificate = to_plain(HEADER)
    certificate[12] = [to_plain(ATT)] * 1025  # MAX_CERTIFICATE is 1024
    assert decode(Header, pack(certificate)) is ErrorCode.TOO_LARGE


def test_decode_or_raise_raises_the_code() -> None:
    with pytest.raises(InvalidObjectError) as info:
        decode_or_raise(Attestation, encode(ATT) + b"\x00")
    assert info.value.code is ErrorCode.TRAILING_BYTES
    assert decode_or_raise(Attestation, encode(ATT)) == ATT
