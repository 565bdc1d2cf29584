"""Slashing evidence (PROTOCOL §5.3): every kind, the normalised key, and the state effect.

The state effect is applied by the state engineer's SLASH_EVIDENCE rule (chain.state.txrules); these
tests run it for real to check that a proven fault burns stake, pays the reporter, jails and resets
reputation, and that the same fault is accepted once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from chain.block import Block, DataBody, TxBody, body_leaves, body_root
from chain.codec import encode
from chain.consensus.body import EMPTY_REPORT
from chain.consensus.slashing import evidence_key, invalid_block_evidence, slash_amounts, verify_evidence
from chain.crypto import SecretKey, account_id
from chain.errors import ErrorCode
from chain.evidence import (
    DoubleAttest,
    DoubleProposal,
    Evidence,
    EvidenceKind,
    InvalidBlock,
    SurroundVote,
)
from chain.hashing import H, merkle_branch
from chain.header import Attestation, BlockKind, Header, kind_for_height
from chain.state.txrules import apply_tx
from chain.state.view import MemoryState, StateOverlay
from chain.tx import SlashEvidence, Transfer, make_tx
from chain.types import Amount, BlockHash, ChainId, Height, TimestampMs, UnitId
from tests.sim.world import FAKE_VDF, KEYS, PARAMS, STAKE, child_header, genesis_like, validator_state

P = PARAMS
OFFENDER = KEYS[0]
REPORTER = KEYS[7]


@pytest.fixture
def state() -> MemoryState:
    stakes = [(k.pubkey, STAKE) for k in KEYS[:4]]
    return validator_state(P, stakes, height=5, funded={REPORTER.pubkey: 10**8})


def header_at(height: int, salt: bytes, key: SecretKey = OFFENDER, kind: BlockKind | None = None) -> Header:
    base = genesis_like(P, validator_state(P, []))
    return dataclasses.replace(
        base,
        height=Height(height),
        kind=kind if kind is not None else kind_for_height(height),
        prev_hash=BlockHash(H(salt)),
        proposer=key.pubkey,
    ).signed(key)


def att(height: int, block: bytes, key: SecretKey = OFFENDER, source: int = 0) -> Attestation:
    source_hash = BlockHash(bytes(32)) if source == 0 else BlockHash(H(b"source-%d" % source))
    return Attestation(
        P.chain_id, Height(height), BlockHash(block), Height(source), source_hash, key.pubkey
    ).signed(key)


def test_double_attest_of_two_different_validators_is_refused(state: MemoryState) -> None:
    """Mutant-found (issue 10): without the same-validator check any ordinary fork (two honest
    validators voting for two blocks at one height) would let anyone slash an honest validator."""
    a, b = att(4, b"x" * 32, KEYS[0]), att(4, b"y" * 32, KEYS[1])
    for pair in (DoubleAttest(a, b), DoubleAttest(b, a)):
        got = verify_evidence(P, state, Evidence(EvidenceKind.DOUBLE_ATTEST, pair))
        assert got == ErrorCode.EVIDENCE_NOT_A_FAULT


def test_double_attest_with_another_source_is_a_fault(state: MemoryState) -> None:
    """Two votes at one height differing only in their signed source are two votes (§4.4)."""
    a, b = att(4, b"x" * 32, source=1), att(4, b"x" * 32, source=2)
    got = verify_evidence(P, state, Evidence(EvidenceKind.DOUBLE_ATTEST, DoubleAttest(a, b)))
    assert got == (OFFENDER.pubkey, evidence_key(EvidenceKind.DOUBLE_ATTEST, OFFENDER.pubkey, 4))
    same = verify_evidence(P, state, Evidence(EvidenceKind.DOUBLE_ATTEST, DoubleAttest(a, a)))
    assert same == ErrorCode.EVIDENCE_NOT_A_FAULT


def test_surround_vote_proves_fault(state: MemoryState) -> None:
    """Finding 3: a vote 1 -> 5 strictly surrounds 2 -> 4; the evidence names the outer target."""
    outer, inner = att(5, b"o" * 32, source=1), att(4, b"i" * 32, source=2)
    got = verify_evidence(P, state, Evidence(EvidenceKind.SURROUND_VOTE, SurroundVote(outer, inner)))
    assert got == (OFFENDER.pubkey, evidence_key(EvidenceKind.SURROUND_VOTE, OFFENDER.pubkey, 5))


@pytest.mark.parametrize(
    ("outer", "inner", "code"),
    [
        ((5, 2), (4, 1), ErrorCode.EVIDENCE_NOT_A_FAULT),  # swapped: the first must be the outer span
        ((5, 2), (4, 2), ErrorCode.EVIDENCE_NOT_A_FAULT),  # same source: not strictly inside
        ((4, 1), (4, 2), ErrorCode.EVIDENCE_NOT_A_FAULT),  # same target: a double vote, not this
        ((5, 1), (3, 2), None),
    ],
)
def test_surround_vote_needs_strict_nesting(
    state: MemoryState, outer: tuple[int, int], inner: tuple[int, int], code: ErrorCode | None
) -> None:
    a, b = att(outer[0], b"o" * 32, source=outer[1]), att(inner[0], b"i" * 32, source=inner[1])
    got = verify_evidence(P, state, Evidence(EvidenceKind.SURROUND_VOTE, SurroundVote(a, b)))
    assert (got if isinstance(got, ErrorCode) else None) == code


def test_surround_vote_of_two_validators_or_forged_is_refused(state: MemoryState) -> None:
    a, b = att(5, b"o" * 32, KEYS[0], source=1), att(4, b"i" * 32, KEYS[1], source=2)
    got = verify_evidence(P, state, Evidence(EvidenceKind.SURROUND_VOTE, SurroundVote(a, b)))
    assert got == ErrorCode.EVIDENCE_NOT_A_FAULT
    forged = dataclasses.replace(att(4, b"i" * 32, source=2), signature=a.signature)
    got = verify_evidence(P, state, Evidence(EvidenceKind.SURROUND_VOTE, SurroundVote(a, forged)))
    assert got == ErrorCode.BAD_SIGNATURE


def test_double_proposal_proves_fault_and_key_is_normalised(state: MemoryState) -> None:
    a, b = header_at(4, b"a"), header_at(4, b"b")
    got = verify_evidence(P, state, Evidence(EvidenceKind.DOUBLE_PROPOSAL, DoubleProposal(a, b)))
    swapped = verify_evidence(P, state, Evidence(EvidenceKind.DOUBLE_PROPOSAL, DoubleProposal(b, a)))
    other_pair = verify_evidence(
        P, state, Evidence(EvidenceKind.DOUBLE_PROPOSAL, DoubleProposal(a, header_at(4, b"c")))
    )
    key = evidence_key(EvidenceKind.DOUBLE_PROPOSAL, OFFENDER.pubkey, 4)
    assert got == swapped == other_pair == (OFFENDER.pubkey, key)


@pytest.mark.parametrize(
    ("a", "b", "code"),
    [
        (lambda: header_at(4, b"a"), lambda: header_at(4, b"a"), ErrorCode.EVIDENCE_NOT_A_FAULT),  # same
        (lambda: header_at(4, b"a"), lambda: header_at(3, b"b"), ErrorCode.EVIDENCE_NOT_A_FAULT),
        (lambda: header_at(4, b"a"), lambda: header_at(4, b"b", KEYS[1]), ErrorCode.EVIDENCE_NOT_A_FAULT),
        (
            lambda: header_at(4, b"a"),
            lambda: dataclasses.replace(header_at(4, b"b"), timestamp_ms=TimestampMs(1)),
            ErrorCode.BAD_SIGNATURE,
        ),
        (
            lambda: header_at(4, b"a"),
            lambda: dataclasses.replace(header_at(4, b"b"), chain_id=ChainId("x")),
            ErrorCode.WRONG_CHAIN,
        ),
    ],
)
def test_double_proposal_rejections(
    state: MemoryState, a: Callable[[], Header], b: Callable[[], Header], code: ErrorCode
) -> None:
    ev = Evidence(EvidenceKind.DOUBLE_PROPOSAL, DoubleProposal(a(), b()))
    assert verify_evidence(P, state, ev) == code


def test_double_attest(state: MemoryState) -> None:
    a, b = att(5, H(b"x")), att(5, H(b"y"))
    got = verify_evidence(P, state, Evidence(EvidenceKind.DOUBLE_ATTEST, DoubleAttest(b, a)))
    assert got == (OFFENDER.pubkey, evidence_key(EvidenceKind.DOUBLE_ATTEST, OFFENDER.pubkey, 5))
    same = Evidence(EvidenceKind.DOUBLE_ATTEST, DoubleAttest(a, a))
    assert verify_evidence(P, state, same) == ErrorCode.EVIDENCE_NOT_A_FAULT
    other_height = Evidence(EvidenceKind.DOUBLE_ATTEST, DoubleAttest(a, att(4, H(b"y"))))
    assert verify_evidence(P, state, other_height) == ErrorCode.EVIDENCE_NOT_A_FAULT
    forged = dataclasses.replace(b, signature=a.signature)
    bad_sig = Evidence(EvidenceKind.DOUBLE_ATTEST, DoubleAttest(a, forged))
    assert verify_evidence(P, state, bad_sig) == ErrorCode.BAD_SIGNATURE


def test_unknown_validator_and_too_old(state: MemoryState) -> None:
    stranger = KEYS[6]
    ev = Evidence(
        EvidenceKind.DOUBLE_ATTEST, DoubleAttest(att(5, H(b"x"), stranger), att(5, H(b"y"), stranger))
    )
    assert verify_evidence(P, state, ev) == ErrorCode.UNKNOWN_VALIDATOR
    later = validator_state(P, [(k.pubkey, STAKE) for k in KEYS[:4]], height=5 + P.unbonding_blocks)
    ev = Evidence(EvidenceKind.DOUBLE_ATTEST, DoubleAttest(att(5, H(b"x")), att(5, H(b"y"))))
    assert verify_evidence(P, later, ev) == ErrorCode.EVIDENCE_TOO_OLD


def _bad_tx_block(state: MemoryState) -> tuple[Header, TxBody]:
    """A correctly committed TX block whose only tx is for another chain (stateless fault)."""
    tx = make_tx(KEYS[2], ChainId("lc-other"), 0, 1000, Transfer(account_id(KEYS[3].pubkey), Amount(1)))
    body = TxBody((tx,))
    genesis = genesis_like(P, state)
    header = child_header(P, genesis, state, FAKE_VDF, body=body)
    return header, body


def _leaf_proof(header: Header, body: TxBody, index: int = 0) -> Evidence:
    leaves = body_leaves(body)
    proof = InvalidBlock(header, index, len(leaves), leaves[index], tuple(merkle_branch(leaves, index)))
    return Evidence(EvidenceKind.INVALID_BLOCK, proof)


def test_invalid_block_stateless_fault(state: MemoryState) -> None:
    header, body = _bad_tx_block(validator_state(P, [(k.pubkey, STAKE) for k in KEYS[:4]]))
    block = Block(header, body)
    ev = invalid_block_evidence(P, block)
    assert ev == _leaf_proof(header, body)
    assert verify_evidence(P, state, ev) == (
        header.proposer,
        evidence_key(EvidenceKind.INVALID_BLOCK, header.proposer, 1),
    )
    proof = ev.proof
    assert isinstance(proof, InvalidBlock)
    # a leaf the proposer did not commit to, or a wrong branch or count, proves nothing
    for forged in (
        dataclasses.replace(proof, leaf=encode(TxBody())),
        dataclasses.replace(proof, leaf_count=2),
        dataclasses.replace(proof, branch=(H(b"x"),)),
        dataclasses.replace(proof, leaf_index=1),
    ):
        got = verify_evidence(P, state, Evidence(EvidenceKind.INVALID_BLOCK, forged))
        assert got == ErrorCode.EVIDENCE_NOT_A_FAULT


def test_invalid_block_evidence_stays_small_for_a_large_body(state: MemoryState) -> None:
    """Finding 6 (issue 10): evidence that held a whole body could not exceed `max_tx_bytes` while
    blocks may be 2 MiB. A leaf and its branch prove the bad tx among 2,000 (about 1 KB of proof)."""
    genesis_state = validator_state(P, [(k.pubkey, STAKE) for k in KEYS[:4]])
    bad_header, bad_body = _bad_tx_block(genesis_state)
    memo = b"m" * 200
    good = [
        make_tx(KEYS[2], P.chain_id, n, 1000, Transfer(account_id(KEYS[3].pubkey), Amount(1), memo))
        for n in range(2000)
    ]
    body = TxBody((*good[:1500], bad_body.txs[0], *good[1500:]))
    assert len(encode(body)) > P.max_tx_bytes
    header = child_header(P, genesis_like(P, genesis_state), genesis_state, FAKE_VDF, body=body)
    ev = invalid_block_evidence(P, Block(header, body))
    assert ev is not None
    proof = ev.proof
    assert isinstance(proof, InvalidBlock)
    assert (proof.leaf_index, proof.leaf_count, len(proof.branch)) == (1500, 2001, 11)
    tx = make_tx(REPORTER, P.chain_id, 0, P.min_fee, SlashEvidence(ev))
    assert len(encode(tx)) < 2048 + len(encode(header))
    assert verify_evidence(P, state, ev) == (
        header.proposer,
        evidence_key(EvidenceKind.INVALID_BLOCK, header.proposer, 1),
    )
    assert bad_header.body_root != header.body_root


def test_invalid_block_valid_body_is_not_a_fault(state: MemoryState) -> None:
    genesis_state = validator_state(P, [(k.pubkey, STAKE) for k in KEYS[:4]])
    good = make_tx(KEYS[2], P.chain_id, 0, 1000, Transfer(account_id(KEYS[3].pubkey), Amount(1)))
    body = TxBody((good,))
    header = child_header(P, genesis_like(P, genesis_state), genesis_state, FAKE_VDF, body=body)
    assert invalid_block_evidence(P, Block(header, body)) is None
    assert verify_evidence(P, state, _leaf_proof(header, body)) == ErrorCode.EVIDENCE_NOT_A_FAULT


def test_invalid_block_non_empty_data_body_is_provable(state: MemoryState) -> None:
    """A DATA report that does not count the block's units breaks `check_data_body_stateless`: the
    report leaf and the leaf count prove it."""
    header = header_at(2, b"d")
    body = DataBody((UnitId(H(b"unit")),), EMPTY_REPORT)
    header = dataclasses.replace(header, body_root=body_root(body)).signed(OFFENDER)
    ev = invalid_block_evidence(P, Block(header, body))
    assert ev is not None
    assert isinstance(ev.proof, InvalidBlock)
    assert ev.proof.leaf_index == 0
    assert verify_evidence(P, state, ev) == (OFFENDER.pubkey, evidence_key(ev.kind, OFFENDER.pubkey, 2))


def test_invalid_block_wrong_kind_for_height(state: MemoryState) -> None:
    header = header_at(2, b"k", kind=BlockKind.TX)  # height 2 must be DATA
    ev = _leaf_proof(header, TxBody((_bad_tx_block(state)[1].txs[0],)))
    assert verify_evidence(P, state, ev) == (
        OFFENDER.pubkey,
        evidence_key(EvidenceKind.INVALID_BLOCK, OFFENDER.pubkey, 2),
    )


def test_invalid_block_revalidate_hook(state: MemoryState) -> None:
    genesis_state = validator_state(P, [(k.pubkey, STAKE) for k in KEYS[:4]])
    good = make_tx(KEYS[2], P.chain_id, 0, 1000, Transfer(account_id(KEYS[3].pubkey), Amount(1)))
    body = TxBody((good,))
    header = child_header(P, genesis_like(P, genesis_state), genesis_state, FAKE_VDF, body=body)
    ev = _leaf_proof(header, body)
    assert verify_evidence(P, state, ev, revalidate=lambda p, h, i, n, leaf: ErrorCode.BAD_BODY) == (
        header.proposer,
        evidence_key(EvidenceKind.INVALID_BLOCK, header.proposer, 1),
    )
    assert verify_evidence(P, state, ev, revalidate=lambda p, h, i, n, leaf: ErrorCode.BLOB_MISSING) == (
        ErrorCode.EVIDENCE_NOT_A_FAULT  # transient codes never prove a fault
    )


# FALSE_SCORE (a signed score leaf checked against this node's evaluation): tests/unit/test_false_score.py


def test_slash_amounts_split() -> None:
    total, share = slash_amounts(P, EvidenceKind.DOUBLE_PROPOSAL, 1_000_000)
    assert total == 1_000_000 * P.slash_double_proposal_permille // 1000
    assert share == total * P.slash_reporter_share_permille // 1000


@pytest.mark.parametrize(
    "kind", [EvidenceKind.DOUBLE_PROPOSAL, EvidenceKind.DOUBLE_ATTEST, EvidenceKind.INVALID_BLOCK]
)
def test_state_effect_burn_pay_jail_reset_once(state: MemoryState, kind: EvidenceKind) -> None:
    if kind is EvidenceKind.DOUBLE_PROPOSAL:
        ev = Evidence(kind, DoubleProposal(header_at(4, b"a"), header_at(4, b"b")))
    elif kind is EvidenceKind.DOUBLE_ATTEST:
        ev = Evidence(kind, DoubleAttest(att(5, H(b"x")), att(5, H(b"y"))))
    else:
        ev = _leaf_proof(header_at(2, b"k", kind=BlockKind.TX), TxBody((_bad_tx_block(state)[1].txs[0],)))
    height = Height(6)
    ov = StateOverlay(state)
    tx = make_tx(REPORTER, P.chain_id, 0, P.min_fee, SlashEvidence(ev))
    assert apply_tx(P, ov, tx, height) is None
    total, share = slash_amounts(P, kind, STAKE)
    rec = ov.validator(OFFENDER.pubkey)
    assert rec is not None
    assert rec.stake_total == STAKE - total
    assert rec.jailed_until == height + P.jail_blocks
    assert rec.reputation == P.reputation_min
    assert ov.account(account_id(REPORTER.pubkey)).balance == 10**8 - P.min_fee + share
    # accepted once: the same fault again (a and b swapped, or another copy) is refused
    state.apply(ov.writes, height)
    again = verify_evidence(P, state, ev)
    assert again == ErrorCode.DUPLICATE_EVIDENCE
