"""FALSE_SCORE end to end on the rounds service and the real transition (PROTOCOL §5.3, §6.5): a
VERSION block whose scores are falsified is refused on import, the rounds service keeps FALSE_SCORE
evidence for it, its oracle proves the claim false in the body rule, and a TX block carrying the
evidence slashes the proposer (burn, reporter share, jail, reputation reset, reward records).

The background result is put in the rounds service's cache by hand (what its worker would have
computed: the real evaluation runs in tests/integration/test_false_score_slash.py, slow); the
transition, the rules and the store are real.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from chain.block import Block, DataBody, QualityReport, TxBody, UnitWeight, VersionBody
from chain.consensus.scoring import RecomputedScores, total_score
from chain.consensus.slashing import (
    check_false_score_txs,
    evidence_key,
    false_score_evidence,
    slash_amounts,
    verify_evidence,
)
from chain.errors import ErrorCode
from chain.evidence import EvidenceKind
from chain.hashing import H
from chain.header import Header
from chain.params import DEVNET
from chain.state.model import RewardReason
from chain.state.transition import BlockError
from chain.state.view import MemoryState
from chain.store.blockstore import BlockStore
from chain.tx import SlashEvidence
from chain.types import BlobHash, Hash32, Micro, Round
from linguachaind.services.datablocks import DataBlocks
from linguachaind.services.roundinputs import RoundInputs, RoundResult, body_for, inputs_for
from linguachaind.services.rounds import RoundsService
from linguachaind.services.worker import LazyWorker
from p2p.blobstore import FileBlobStore
from tests.support.chainbuilders import (
    VALIDATOR_STAKE,
    MemChain,
    dev_genesis,
    make_block,
    mine_data_unit,
    mine_learning_unit,
)

P = dataclasses.replace(DEVNET, version_lag_rounds=1, max_staleness=1)
NEW = tuple(Micro(1_900_000 + 1_000 * b) for b in range(P.n_score_batches))  # the worker's losses
OLD = tuple(Micro(2_000_000 + 1_000 * b) for b in range(P.n_score_batches))


@dataclasses.dataclass
class Round1:
    chain: MemChain
    parent: MemoryState  # the state the VERSION block of round 1 (height 6) applies to
    inputs: RoundInputs
    rounds: RoundsService
    honest: VersionBody
    store: BlockStore
    blobs: DataBlocks


@pytest.fixture
def round1(tmp_path: Path) -> Iterator[Round1]:
    """Units and a test set at heights 1-2 (round 0), the chain at height 5, the result of round 1
    (its VERSION block is at height 6) computed."""
    chain = MemChain(*dev_genesis(2, funded=("alice", "bob"), params=P))
    base = chain.state.model_version()
    unit = mine_learning_unit(P, chain.keys["alice"], base.version_id, 5)
    data = mine_data_unit(P, chain.keys["bob"], 16)
    chain.add_txs([chain.tx("alice", unit), chain.tx("bob", data)], proposer="validator1")  # 1
    report = QualityReport(1, 16, 0, 0, 0, 0, 16, Hash32(H(b"set")))
    chain.add(DataBody((data.id,), report, (16,)), proposer="validator1")  # 2
    while chain.height < 5:
        chain.add(proposer="validator1")
    inputs = inputs_for(P, chain.state, 1)
    assert inputs is not None
    assert inputs.worth_computing
    store = BlockStore.open(tmp_path / "chain", chain.genesis)
    try:
        blobs = DataBlocks(P, store, FileBlobStore(tmp_path / "blobs"))
        rounds = RoundsService(store, blobs, LazyWorker(P, lambda: pytest.fail("no worker may start")))
        result = RoundResult(inputs.key, (UnitWeight(unit.id, 5),), (), BlobHash(H(b"new")), 16, NEW, OLD)
        rounds._cache[inputs.key] = result  # what the background computation stores
        honest = body_for(P, inputs, result)
        assert honest.units  # it improves
        yield Round1(chain, chain.state.copy(), inputs, rounds, honest, store, blobs)
    finally:
        store.close()


def falsified(body: VersionBody, by: int) -> VersionBody:
    """Every batch loss of the new adapter claimed `by` micro lower (a better-looking version)."""
    scores = tuple(Micro(s - by) for s in body.per_batch_scores)
    return dataclasses.replace(body, per_batch_scores=scores, total_score=total_score(scores))


def proposed(r: Round1, body: VersionBody, who: str = "validator0") -> Block:
    tip = r.chain.tip
    return make_block(tip, body, r.chain.keys[who], bytes(32), tip.timestamp_ms + 1, pow_bits=0)


def test_a_falsified_version_is_refused_reported_proven_and_slashed(round1: Round1) -> None:
    r, chain = round1, round1.chain
    lie = P.score_slash_tolerance_micro + P.score_tolerance_micro + 1
    false_block = proposed(r, falsified(r.honest, lie))
    assert r.rounds.check_block(false_block, r.parent) == ErrorCode.BAD_BODY
    evidence = r.rounds.false_score_evidence(false_block.header)
    assert evidence is not None
    assert r.rounds.check_block(proposed(r, r.honest, "validator1"), r.parent) is None

    def oracle(header: Header, claim: object) -> RecomputedScores | ErrorCode | None:
        assert header.prev_hash == chain.blocks[5].hash
        return r.rounds.scores_of(r.parent, claim, 7)  # type: ignore[arg-type]

    report = chain.tx("bob", SlashEvidence(evidence))
    assert check_false_score_txs(P, TxBody((report,)), oracle) is None  # the body rule proves it
    chain.add(r.honest, proposer="validator1")  # 6: the honest version
    offender = chain.keys["validator0"].pubkey
    before = chain.balance("bob")
    _, effects = chain.add_txs([report], proposer="validator1")  # 7: the evidence
    record = chain.state.validator(offender)
    assert record is not None
    total, _ = slash_amounts(P, EvidenceKind.FALSE_SCORE, VALIDATOR_STAKE)
    assert record.stake_total == VALIDATOR_STAKE - total
    assert record.jailed_until == 7 + P.jail_blocks
    assert record.reputation == P.reputation_min
    key = evidence_key(EvidenceKind.FALSE_SCORE, offender, 6)
    slashes = {(r.reason, r.account, r.amount) for r in effects.rewards if bytes(r.ref) == bytes(key)}
    share = total * P.slash_reporter_share_permille // 1000
    assert slashes == {
        (RewardReason.SLASH_BURN, chain.account("staker0"), -total),
        (RewardReason.SLASH_REPORTER, chain.account("bob"), share),
    }
    assert chain.balance("bob") == before - P.min_fee + share
    again = chain.try_txs([chain.tx("bob", SlashEvidence(evidence))], proposer="validator1")
    assert isinstance(again, BlockError)
    assert again.inner == ErrorCode.DUPLICATE_EVIDENCE  # the same fault is slashed once


def test_a_small_disagreement_is_refused_but_never_reported(round1: Round1) -> None:
    """Above the attesters' tolerance the block is refused; below the slash tolerance plus the
    attesters' the node keeps no evidence (other honest nodes might not see a fault)."""
    r = round1
    for by in (2 * P.score_tolerance_micro, P.score_slash_tolerance_micro + P.score_tolerance_micro):
        block = proposed(r, falsified(r.honest, by))
        assert r.rounds.check_block(block, r.parent) == ErrorCode.BAD_BODY
        assert r.rounds.false_score_evidence(block.header) is None
        evidence = false_score_evidence(block)
        assert evidence is not None
        proven = verify_evidence(
            P, r.parent, evidence, score_oracle=lambda h, c: r.rounds.scores_of(r.parent, c, 7)
        )
        # a validator that receives such evidence anyway decides by the slash tolerance alone
        fault = by > P.score_slash_tolerance_micro
        assert isinstance(proven, tuple) == fault


def test_what_a_node_that_cannot_evaluate_answers(round1: Round1) -> None:
    r = round1
    claim = falsified(r.honest, 10**6).scores
    blind = RoundsService(r.store, r.blobs, None)
    assert blind.scores_of(r.parent, claim, 7) is None  # no model: follows the certificates
    assert blind.statistics().unchecked == 1
    worker = LazyWorker(P, lambda: pytest.fail("no worker may start"))
    synced_to = RoundsService(r.store, r.blobs, worker, final_floor=lambda: 7)  # a checkpoint at 7
    assert synced_to.scores_of(r.parent, claim, 7) is None  # PROTOCOL §6.5: a block known final
    assert synced_to.statistics().scores_skipped == 1
    assert synced_to.scores_of(r.parent, claim, 8) == ErrorCode.BLOB_MISSING  # above it: waits
    fresh = RoundsService(r.store, r.blobs, worker)
    assert fresh.scores_of(r.parent, claim, 7) == ErrorCode.BLOB_MISSING  # waits, never a ban
    assert fresh._next_inputs() == r.inputs  # and the round is computed first
    assert r.rounds.scores_of(None, claim, 7) == ErrorCode.ORPHAN
    early = dataclasses.replace(claim, round=Round(0))  # a round whose inputs score nothing
    assert r.rounds.scores_of(r.parent, early, 7) == ErrorCode.EVIDENCE_NOT_A_FAULT
    mine = r.rounds.scores_of(r.parent, claim, 7)
    assert isinstance(mine, RecomputedScores)
    assert (dict(mine.per_batch), mine.previous_total) == (dict(enumerate(NEW)), total_score(OLD))


async def test_a_version_refused_before_the_result_is_judged_when_it_is_computed(round1: Round1) -> None:
    """A falsified block that arrives before this node scored its round is BLOB_MISSING (it may
    never come back: its proposer does not re-gossip it); once the round is computed, the block is
    judged and its evidence kept for the reporter."""
    r = round1
    late = RoundsService(r.store, r.blobs, LazyWorker(P, lambda: pytest.fail("no worker may start")))
    result = r.rounds._cache[r.inputs.key]

    async def computed(inputs: RoundInputs) -> RoundResult:  # what the worker would compute
        assert inputs.key == r.inputs.key
        return result

    late.compute = computed  # type: ignore[method-assign]
    lie = P.score_slash_tolerance_micro + P.score_tolerance_micro + 1
    false_block = proposed(r, falsified(r.honest, lie))
    honest_block = proposed(r, r.honest, "validator1")
    assert late.check_block(false_block, r.parent) == ErrorCode.BLOB_MISSING
    assert late.check_block(honest_block, r.parent) == ErrorCode.BLOB_MISSING
    assert late.false_scores() == []
    assert await late._compute_logged(r.inputs)  # the background loop's step
    assert late.false_scores() == [false_score_evidence(false_block)]
    assert late.false_score_evidence(honest_block.header) is None
