"""FALSE_SCORE evidence (PROTOCOL §5.3, §6.5): its encoding, what it proves and what it does not, the
body rule that compares the claim with this node's scores, and the slash the state transition
applies.

The model evaluation is the one thing replaced here: `RecomputedScores` values stand for what the
rounds service's worker computed (tests/integration/test_false_score_slash.py runs the real worker).
Everything else is real: signed headers, Merkle branches, the codec, the state transition on a state
with staked validators.
"""

from __future__ import annotations

import dataclasses

import pytest

from chain.block import (
    VERSION_LEAVES,
    Block,
    TxBody,
    UnitWeight,
    VersionBody,
    VersionScores,
    body_leaves,
    body_root,
)
from chain.codec import decode, encode
from chain.consensus.body import check_leaf_stateless
from chain.consensus.scoring import RecomputedScores, total_score
from chain.consensus.slashing import (
    ScoreOracle,
    accused,
    check_false_score_txs,
    claim_is_false,
    evidence_key,
    false_score_evidence,
    false_score_problem,
    slash_amounts,
    verify_evidence,
)
from chain.crypto import SecretKey, account_id
from chain.errors import ErrorCode
from chain.evidence import Evidence, EvidenceKind, FalseScore
from chain.hashing import H, merkle_branch, merkle_root
from chain.header import BlockKind, Header
from chain.params import PRESETS, AggregationRule
from chain.state.model import RewardReason
from chain.state.txrules import apply_tx
from chain.state.view import MemoryState, StateOverlay
from chain.tx import SlashEvidence, Tx, make_tx
from chain.types import BlobHash, BlockHash, Height, Micro, Round, TimestampMs, UnitId
from tests.sim.world import KEYS, PARAMS, STAKE, genesis_like, validator_state

P = PARAMS
OFFENDER = KEYS[0]
REPORTER = KEYS[7]
T = P.score_slash_tolerance_micro
N = P.n_score_batches
HONEST_NEW = 2_000_000  # what every honest node's evaluation gives, per batch (micro-nats)
HONEST_PREVIOUS = 2_100_000
# Largest cross-machine difference of one batch score measured (docs/learning.md, score_variation:
# a bfloat16 node against a float32 one); between float32 machines it was 1 micro.
MEASURED_VARIATION_MICRO = 1_019


def honest(delta_batch: int = 0, delta_previous: int = 0) -> RecomputedScores:
    """This node's scores of the round, with batch 3 of the new adapter moved by `delta_batch`."""
    new = {b: HONEST_NEW + (delta_batch if b == 3 else 0) for b in range(N)}
    previous = {b: HONEST_PREVIOUS + delta_previous for b in range(N)}
    return RecomputedScores(new, total_score(list(previous.values())), previous)


def claimed_body(new: list[int], previous: list[int], n_units: int = 2) -> VersionBody:
    units = tuple(UnitWeight(UnitId(i.to_bytes(32, "big")), 10) for i in range(1, n_units + 1))
    return VersionBody(
        round=Round(0),
        base_version_id=H(b"version-0"),
        units=units,
        aggregation_rule=AggregationRule.FEDAVG,
        new_adapter_blob_hash=BlobHash(H(b"adapter-1")),
        per_batch_scores=tuple(Micro(s) for s in new),
        total_score=total_score(new),
        previous_score=total_score(previous),
        previous_batch_scores=tuple(Micro(s) for s in previous),
    )


def signed_version(body: VersionBody, key: SecretKey = OFFENDER, height: int = 3) -> Block:
    base = genesis_like(P, validator_state(P, []))
    header = dataclasses.replace(
        base,
        height=Height(height),
        kind=BlockKind.VERSION,
        prev_hash=BlockHash(H(b"parent")),
        proposer=key.pubkey,
        body_root=body_root(body),
    ).signed(key)
    return Block(header, body)


def lying(by: int) -> Block:
    """A VERSION block whose claimed loss of batch 3 is `by` micro below what honest nodes compute
    (a proposer that makes its version look better)."""
    new = [HONEST_NEW - (by if b == 3 else 0) for b in range(N)]
    return signed_version(claimed_body(new, [HONEST_PREVIOUS] * N))


def evidence_of(block: Block) -> Evidence:
    ev = false_score_evidence(block)
    assert ev is not None
    return ev


def oracle_of(mine: RecomputedScores | ErrorCode | None) -> ScoreOracle:
    return lambda header, claim: mine


@pytest.fixture
def state() -> MemoryState:
    stakes = [(k.pubkey, STAKE) for k in KEYS[:4]]
    return validator_state(P, stakes, height=5, funded={REPORTER.pubkey: 10**8})


# -- encoding --------------------------------------------------------------------------------------


def test_evidence_is_the_score_leaf_and_its_branch_and_round_trips() -> None:
    block = lying(500_000)
    ev = evidence_of(block)
    assert isinstance(ev.proof, FalseScore)
    assert (
        (ev.proof.leaf_index, ev.proof.leaf_count) == (0, VERSION_LEAVES) == (0, len(body_leaves(block.body)))
    )
    assert decode(VersionScores, ev.proof.leaf) == block.body.scores  # type: ignore[union-attr]
    assert decode(Evidence, encode(ev)) == ev
    tx = make_tx(REPORTER, P.chain_id, 0, P.min_fee, SlashEvidence(ev))
    assert decode(Tx, encode(tx)) == tx


def test_evidence_against_the_largest_body_fits_a_tx() -> None:
    """A VERSION body with 4,096 units does not fit in a tx of `max_tx_bytes`; its evidence does."""
    new = [HONEST_NEW] * P.n_score_batches
    block = signed_version(claimed_body(new, [HONEST_PREVIOUS] * N, n_units=4096))
    assert len(encode(block.body)) > P.max_tx_bytes
    tx = make_tx(REPORTER, P.chain_id, 0, P.min_fee, SlashEvidence(evidence_of(block)))
    assert len(encode(tx)) < P.max_tx_bytes // 8


# -- what it proves ----------------------------------------------------------------------------------


def test_a_claim_off_by_more_than_the_slash_tolerance_is_a_fault(state: MemoryState) -> None:
    ev = evidence_of(lying(T + 1))
    fault = (OFFENDER.pubkey, evidence_key(EvidenceKind.FALSE_SCORE, OFFENDER.pubkey, 3))
    assert verify_evidence(P, state, ev, score_oracle=oracle_of(honest())) == fault


def test_a_claim_off_by_the_tolerance_or_less_is_not_a_fault(state: MemoryState) -> None:
    for by in (T, T // 2, P.score_tolerance_micro, 1, 0):
        ev = evidence_of(lying(by))
        got = verify_evidence(P, state, ev, score_oracle=oracle_of(honest()))
        assert got == ErrorCode.EVIDENCE_NOT_A_FAULT, by


def test_the_previous_adapter_claim_counts_too() -> None:
    claim = lying(0).body.scores  # type: ignore[union-attr]
    assert not claim_is_false(P, claim, honest(delta_previous=T))
    assert claim_is_false(P, claim, honest(delta_previous=T + 1))  # per batch and the total
    only_total = RecomputedScores(honest().per_batch, HONEST_PREVIOUS - T - 1, None)
    assert claim_is_false(P, claim, only_total)


def test_reporters_and_includers_add_the_attester_tolerance() -> None:
    """Validation compares with the slash tolerance; a node that reports or includes evidence wants
    `score_tolerance_micro` more, so honest nodes whose evaluations differ by less all agree."""
    claim = lying(T + P.score_tolerance_micro // 2).body.scores  # type: ignore[union-attr]
    assert claim_is_false(P, claim, honest())
    assert not claim_is_false(P, claim, honest(), margin=P.score_tolerance_micro)
    for wobble in (-MEASURED_VARIATION_MICRO, MEASURED_VARIATION_MICRO):
        far = lying(T + P.score_tolerance_micro + 1).body.scores  # type: ignore[union-attr]
        assert claim_is_false(P, far, honest(), margin=P.score_tolerance_micro)
        assert claim_is_false(P, far, honest(delta_batch=wobble))  # every honest verifier agrees


def test_a_wrong_branch_or_leaf_proves_nothing(state: MemoryState) -> None:
    block = lying(T * 3)
    proof = evidence_of(block).proof
    assert isinstance(proof, FalseScore)
    good = oracle_of(honest())
    other = lying(T * 4).body.scores  # type: ignore[union-attr]
    bad = [
        dataclasses.replace(proof, branch=(H(b"not the body leaf"),)),
        dataclasses.replace(proof, branch=()),
        dataclasses.replace(proof, leaf=encode(other)),  # a claim the proposer did not sign
        dataclasses.replace(proof, leaf_index=1, leaf=body_leaves(block.body)[1]),
        dataclasses.replace(proof, leaf_count=3),
    ]
    for p in bad:
        got = verify_evidence(P, state, Evidence(EvidenceKind.FALSE_SCORE, p), score_oracle=good)
        assert got == ErrorCode.EVIDENCE_NOT_A_FAULT, p
    forged = dataclasses.replace(
        proof,
        header=dataclasses.replace(proof.header, timestamp_ms=TimestampMs(proof.header.timestamp_ms + 1)),
    )
    ev = Evidence(EvidenceKind.FALSE_SCORE, forged)
    assert verify_evidence(P, state, ev, score_oracle=good) == ErrorCode.BAD_SIGNATURE


def test_unscored_or_non_version_claims_prove_nothing(state: MemoryState) -> None:
    noop = dataclasses.replace(
        claimed_body([HONEST_NEW] * N, [HONEST_NEW] * N, n_units=0),
        per_batch_scores=(),
        previous_batch_scores=(),
    )
    ev = evidence_of(signed_version(noop))
    assert verify_evidence(P, state, ev, score_oracle=oracle_of(honest())) == ErrorCode.EVIDENCE_NOT_A_FAULT
    block = lying(T * 3)
    tx_header = dataclasses.replace(block.header, height=Height(4), kind=BlockKind.TX).signed(OFFENDER)
    proof = evidence_of(block).proof
    assert isinstance(proof, FalseScore)
    proof = dataclasses.replace(proof, header=tx_header)
    got = verify_evidence(
        P, state, Evidence(EvidenceKind.FALSE_SCORE, proof), score_oracle=oracle_of(honest())
    )
    assert got == ErrorCode.EVIDENCE_NOT_A_FAULT


def test_a_signed_leaf_that_is_no_claim_is_bad_evidence(state: MemoryState) -> None:
    leaves = [b"\xc1 not msgpack", b"body"]
    base = signed_version(claimed_body([HONEST_NEW] * N, [HONEST_PREVIOUS] * N))
    header = dataclasses.replace(base.header, body_root=merkle_root(leaves)).signed(OFFENDER)
    proof = FalseScore(header, 0, 2, leaves[0], tuple(merkle_branch(leaves, 0)))
    got = verify_evidence(
        P, state, Evidence(EvidenceKind.FALSE_SCORE, proof), score_oracle=oracle_of(honest())
    )
    assert got == ErrorCode.BAD_EVIDENCE


def test_what_the_oracle_answers_decides(state: MemoryState) -> None:
    ev = evidence_of(lying(T * 3))
    assert false_score_problem(P, ev, None) == ErrorCode.BAD_EVIDENCE  # nobody to ask
    assert false_score_problem(P, ev, oracle_of(honest())) is None
    assert false_score_problem(P, ev, oracle_of(ErrorCode.BLOB_MISSING)) == ErrorCode.BLOB_MISSING
    assert (
        false_score_problem(P, ev, oracle_of(ErrorCode.EVIDENCE_NOT_A_FAULT))
        == ErrorCode.EVIDENCE_NOT_A_FAULT
    )
    # a node that evaluates nothing (no model, syncing) follows the certificates when validating,
    # but never includes such evidence in a block of its own
    assert false_score_problem(P, ev, oracle_of(None)) is None
    assert false_score_problem(P, ev, oracle_of(None), follow_unchecked=False) == ErrorCode.BLOB_MISSING
    # the state transition checks the model-free part only (the body rule did the scores)
    assert verify_evidence(P, state, evidence_of(lying(0))) == (
        OFFENDER.pubkey,
        evidence_key(EvidenceKind.FALSE_SCORE, OFFENDER.pubkey, 3),
    )


# -- the body rule ----------------------------------------------------------------------------------


def evidence_tx(ev: Evidence, nonce: int = 0) -> Tx:
    return make_tx(REPORTER, P.chain_id, nonce, P.min_fee, SlashEvidence(ev))


def test_body_rule_refuses_a_block_with_unprovable_evidence_and_waits_when_it_cannot_tell() -> None:
    proven, unproven = evidence_of(lying(T * 3)), evidence_of(lying(T // 2))
    body = TxBody((evidence_tx(proven),))
    assert check_false_score_txs(P, body, oracle_of(honest())) is None
    assert check_false_score_txs(P, TxBody((evidence_tx(unproven),)), oracle_of(honest())) == (
        ErrorCode.EVIDENCE_NOT_A_FAULT  # permanent: the block is invalid, its sender penalised
    )
    waiting = check_false_score_txs(P, body, oracle_of(ErrorCode.BLOB_MISSING))
    assert waiting == ErrorCode.BLOB_MISSING
    assert waiting.is_transient  # never splits honest nodes: the block waits
    both = TxBody((evidence_tx(proven), evidence_tx(unproven, 1)))

    def by_claim(header: Header, claim: VersionScores) -> RecomputedScores | ErrorCode:
        return ErrorCode.BLOB_MISSING if claim == proven.proof.leaf else honest()  # type: ignore[union-attr]

    assert check_false_score_txs(P, both, by_claim) == ErrorCode.EVIDENCE_NOT_A_FAULT
    assert check_false_score_txs(P, body, None) == ErrorCode.BAD_EVIDENCE
    assert check_false_score_txs(P, TxBody(()), None) is None


# -- the slash ----------------------------------------------------------------------------------------


def test_the_transition_slashes_once(state: MemoryState) -> None:
    ev = evidence_of(lying(T * 3))
    ov = StateOverlay(state)
    assert apply_tx(P, ov, evidence_tx(ev), Height(6)) is None
    vrec = ov.validator(OFFENDER.pubkey)
    assert vrec is not None
    total, _ = slash_amounts(P, EvidenceKind.FALSE_SCORE, STAKE)
    assert total == STAKE * P.slash_false_score_permille // 1000 > 0
    assert vrec.stake_total == STAKE - total
    assert vrec.jailed_until == 6 + P.jail_blocks
    assert vrec.reputation == P.reputation_min
    key = evidence_key(EvidenceKind.FALSE_SCORE, OFFENDER.pubkey, 3)
    reasons = {(r.reason, bytes(r.ref)) for r in ov.rewards}
    assert reasons == {(RewardReason.SLASH_BURN, bytes(key)), (RewardReason.SLASH_REPORTER, bytes(key))}
    share = next(r.amount for r in ov.rewards if r.reason == RewardReason.SLASH_REPORTER)
    assert share == total * P.slash_reporter_share_permille // 1000
    assert ov.account(account_id(REPORTER.pubkey)).balance == 10**8 - P.min_fee + share
    # the same fault again, even as another copy (a lie about another batch): accepted once
    again = evidence_of(lying(T * 5))
    assert apply_tx(P, ov, evidence_tx(again, 1), Height(6)) == ErrorCode.DUPLICATE_EVIDENCE
    assert verify_evidence(P, ov, ev) == ErrorCode.DUPLICATE_EVIDENCE


def test_evidence_outside_the_window_is_refused(state: MemoryState) -> None:
    ev = evidence_of(lying(T * 3))
    late = MemoryState(P, Height(3 + P.unbonding_blocks))
    late.apply(StateOverlay(state).writes, Height(3 + P.unbonding_blocks))
    assert verify_evidence(P, late, ev) == ErrorCode.EVIDENCE_TOO_OLD


# -- the leaf layout and the parameters ------------------------------------------------------------


def test_invalid_block_evidence_reads_both_version_leaves() -> None:
    block = lying(0)
    leaves = body_leaves(block.body)
    assert [check_leaf_stateless(P, block.header, i, len(leaves), leaf) for i, leaf in enumerate(leaves)] == [
        None,
        None,
    ]
    assert check_leaf_stateless(P, block.header, 0, 1, leaves[0]) == ErrorCode.BAD_BODY
    broken = dataclasses.replace(block.body.scores, total_score=1)  # type: ignore[union-attr]
    assert check_leaf_stateless(P, block.header, 0, 2, encode(broken)) == ErrorCode.BAD_BODY
    assert check_leaf_stateless(P, block.header, 0, 2, b"\xc1") == ErrorCode.BAD_BODY


@pytest.mark.parametrize("network", sorted(PRESETS))
def test_slash_tolerance_is_far_above_the_attesters_and_both_far_above_float_variation(network: str) -> None:
    params = PRESETS[network]
    assert params.score_slash_tolerance_micro >= 10 * params.score_tolerance_micro
    assert params.score_tolerance_micro >= 10 * MEASURED_VARIATION_MICRO
    # a lie an honest reporter reports is seen as a lie by every honest node
    assert params.score_tolerance_micro > 2 * MEASURED_VARIATION_MICRO


def test_a_slash_record_points_at_the_fault_it_was_for(state: MemoryState) -> None:
    """`explainrewards` names a slash's fault from its reward record's ref: `accused` reads the
    validator and height from the evidence, and their key is the one the transition records."""
    ev = evidence_of(lying(T * 3))
    assert accused(ev) == (OFFENDER.pubkey, 3)
    ov = StateOverlay(state)
    assert apply_tx(P, ov, evidence_tx(ev), Height(6)) is None
    assert {bytes(r.ref) for r in ov.rewards} == {bytes(evidence_key(ev.kind, *accused(ev)))}


def test_evidence_an_honest_node_brings_is_accepted_by_every_honest_node() -> None:
    """Two honest evaluations of one round differ by at most the measured variation V per batch.
    Whenever one node would report or include evidence (margin `score_tolerance_micro`), the other,
    which validates with no margin, finds the claim false too: honest nodes never split over it.
    And a claim within `score_tolerance_micro` of the truth (an honest proposer's) is never a fault.
    Checked over the whole band around both thresholds, both signs, the variation either way."""
    v, s = MEASURED_VARIATION_MICRO, P.score_tolerance_micro
    previous = [HONEST_PREVIOUS] * N
    mine = RecomputedScores(dict.fromkeys(range(N), HONEST_NEW), HONEST_PREVIOUS, dict(enumerate(previous)))
    offsets = {*range(0, T + s + 2 * v, 97), T, T + 1, T + s, T + s + 1}
    for offset in sorted(offsets):
        for sign in (1, -1):
            claim = claimed_body([HONEST_NEW + (sign * offset if b == 3 else 0) for b in range(N)], previous)
            for w in (-v, 0, v):
                theirs = RecomputedScores(
                    {b: HONEST_NEW + (w if b == 3 else -w) for b in range(N)},
                    HONEST_PREVIOUS + w,
                    {b: HONEST_PREVIOUS - w for b in range(N)},
                )
                if claim_is_false(P, claim.scores, mine, margin=s):
                    assert claim_is_false(P, claim.scores, theirs), (offset, sign, w)
                if offset <= s:
                    assert not claim_is_false(P, claim.scores, theirs), (offset, sign, w)
