"""Attestations and certificates (PROTOCOL §4.4): weight, threshold, each rejection code."""

from __future__ import annotations

import dataclasses

from chain.consensus.certificate import certificate_reaches_threshold, certificate_weight, meets_threshold
from chain.consensus.duties import build_certificate
from chain.errors import ErrorCode
from chain.hashing import H
from chain.header import Attestation
from chain.types import BlockHash, ChainId, Height
from tests.sim.world import KEYS, PARAMS, STAKE

ELIGIBLE = [(k.pubkey, STAKE * 1000) for k in KEYS[:4]]
BLOCK = BlockHash(H(b"block-7"))


def vote(i: int, block: bytes = BLOCK, height: int = 7) -> Attestation:
    return Attestation(
        PARAMS.chain_id, Height(height), BlockHash(block), Height(0), BlockHash(bytes(32)), KEYS[i].pubkey
    ).signed(KEYS[i])


def weight(atts: list[Attestation]) -> int | ErrorCode:
    return certificate_weight(PARAMS.chain_id, 7, BLOCK, ELIGIBLE, atts)


def test_weight_of_valid_votes() -> None:
    assert weight([vote(0), vote(2)]) == 2 * STAKE * 1000
    assert weight([]) == 0


def test_below_threshold_is_valid_but_not_final() -> None:
    total = 4 * STAKE * 1000
    two = weight([vote(0), vote(1)])
    assert two == total // 2
    assert not meets_threshold(PARAMS, two, total)
    assert not certificate_reaches_threshold(PARAMS, 7, BLOCK, ELIGIBLE, [vote(0), vote(1)])
    assert certificate_reaches_threshold(PARAMS, 7, BLOCK, ELIGIBLE, [vote(0), vote(1), vote(3)])


def test_threshold_is_exact_integer_math() -> None:
    # at least 2/3, exactly: 3 * weight >= 2 * total (v1's 667 permille refused exactly 2/3)
    assert meets_threshold(PARAMS, 2000, 3000)
    assert not meets_threshold(PARAMS, 1999, 3000)
    assert meets_threshold(PARAMS, 4, 6)  # 4 of 6 equal stakes: v1 said 666 < 667
    assert not meets_threshold(PARAMS, 3, 6)
    big = 10**30  # no float anywhere: one unit below 2/3 of a huge total is still refused
    assert meets_threshold(PARAMS, 2 * big, 3 * big)
    assert not meets_threshold(PARAMS, 2 * big - 1, 3 * big)
    assert not meets_threshold(PARAMS, 0, 0)


def test_duplicate_signer() -> None:
    assert weight([vote(0), vote(1), vote(0)]) == ErrorCode.DUPLICATE_SIGNER


def test_signer_not_eligible() -> None:
    assert weight([vote(0), vote(5)]) == ErrorCode.SIGNER_NOT_ELIGIBLE


def test_bad_signature() -> None:
    forged = dataclasses.replace(vote(1), signature=vote(2).signature)
    assert weight([vote(0), forged]) == ErrorCode.BAD_SIGNATURE


def test_vote_for_other_block_or_height() -> None:
    assert weight([vote(0, block=H(b"other"))]) == ErrorCode.BAD_CERTIFICATE
    assert weight([vote(0, height=8)]) == ErrorCode.BAD_CERTIFICATE


def test_wrong_chain() -> None:
    other = Attestation(
        ChainId("lc-other"), Height(7), BLOCK, Height(0), BlockHash(bytes(32)), KEYS[0].pubkey
    ).signed(KEYS[0])
    assert weight([other]) == ErrorCode.WRONG_CHAIN


def test_build_certificate_filters_and_sorts() -> None:
    from tests.sim.world import genesis_like, validator_state

    state = validator_state(PARAMS, [(k.pubkey, STAKE) for k in KEYS[:4]])
    parent = dataclasses.replace(genesis_like(PARAMS, state), height=Height(7))
    good = [
        Attestation(
            PARAMS.chain_id, Height(7), parent.hash, Height(0), BlockHash(bytes(32)), k.pubkey
        ).signed(k)
        for k in KEYS[:3]
    ]
    junk = [
        vote(0),
        good[0],
        Attestation(
            PARAMS.chain_id, Height(7), parent.hash, Height(0), BlockHash(bytes(32)), KEYS[6].pubkey
        ).signed(KEYS[6]),
    ]
    cert = build_certificate(PARAMS, parent, ELIGIBLE, [*reversed(good), *junk])
    assert cert == tuple(sorted(good, key=lambda a: a.validator))
    assert certificate_weight(PARAMS.chain_id, 7, parent.hash, ELIGIBLE, cert) == 3 * STAKE * 1000
