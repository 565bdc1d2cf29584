"""The VDF gossip message `chain.vdfmsg.VdfProof` and `vdf.check_vdf_proof` (PROTOCOL §4.2, §7.2)."""

from __future__ import annotations

import dataclasses

import pytest

import vdf
from chain.codec import decode, encode, is_error
from chain.errors import ErrorCode
from chain.hashing import H
from chain.params import DEVNET
from chain.types import ChainId, Hash32
from chain.vdfmsg import VdfProof

CHALLENGE = Hash32(H(b"LC/vdf/1 message test"))


@pytest.fixture(scope="module")
def msg() -> VdfProof:
    y, pi = vdf.prove(CHALLENGE, DEVNET.vdf_discriminant_bits, DEVNET.vdf_iterations)
    return vdf.make_vdf_proof(DEVNET, CHALLENGE, y, pi)


def test_roundtrip_is_a_five_field_array(msg: VdfProof) -> None:
    data = encode(msg)
    assert data[0] == 0x95  # fixarray of 5 (PROTOCOL §1.1)
    assert decode(VdfProof, data) == msg
    assert msg.id == H(data)


def test_decode_rejects_garbage_with_a_code(msg: VdfProof) -> None:
    assert is_error(decode(VdfProof, b"\xc1"))
    assert is_error(decode(VdfProof, encode(msg) + b"\x00"))
    short_challenge = encode(msg).replace(CHALLENGE, CHALLENGE[:31], 1)
    assert is_error(decode(VdfProof, short_challenge))


def test_check_accepts_a_good_proof(msg: VdfProof) -> None:
    assert vdf.check_vdf_proof(DEVNET, msg) is None
    assert vdf.check_vdf_proof(DEVNET, msg, CHALLENGE) is None


def test_check_wrong_chain(msg: VdfProof) -> None:
    other = dataclasses.replace(msg, chain_id=ChainId("lc-testnet-1"))
    assert vdf.check_vdf_proof(DEVNET, other) is ErrorCode.WRONG_CHAIN


def test_check_wrong_iterations(msg: VdfProof) -> None:
    other = dataclasses.replace(msg, iterations=msg.iterations + 1)
    assert vdf.check_vdf_proof(DEVNET, other) is ErrorCode.BAD_VDF


def test_check_other_challenge_is_transient(msg: VdfProof) -> None:
    code = vdf.check_vdf_proof(DEVNET, msg, H(b"another parent"))
    assert code is ErrorCode.STALE
    assert code.is_transient


def test_check_proof_for_another_challenge_is_bad(msg: VdfProof) -> None:
    other = dataclasses.replace(msg, challenge=H(b"relabelled"))
    assert vdf.check_vdf_proof(DEVNET, other) is ErrorCode.BAD_VDF


def test_check_garbage_output_and_proof(msg: VdfProof) -> None:
    for bad in (
        dataclasses.replace(msg, output=b"\x00" * 100),
        dataclasses.replace(msg, proof=b"junk"),
        dataclasses.replace(msg, output=b""),
    ):
        assert vdf.check_vdf_proof(DEVNET, bad) is ErrorCode.BAD_VDF
