"""FALSE_SCORE evidence through the chain service (PROTOCOL §4.7 body rules, §5.3): the producer
includes it only when its oracle proves it, and block import runs the comparison as a body rule with
the node's oracle: proven -> the block connects and the proposer is slashed; not false -> the block is
invalid (permanent); cannot tell yet -> it waits (transient, no ban, no split); no oracle at all ->
BAD_EVIDENCE; a node that does not evaluate follows.

Real stores, mempool, chain services, producer and VDF; the oracle stands for the rounds service's
scores (tests/unit/test_rounds_false_score.py and the slow tests/integration/test_false_score_slash.py
run the real one).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from chain.block import Block, TxBody, VersionBody, VersionScores, body_root
from chain.consensus.scoring import RecomputedScores
from chain.consensus.slashing import evidence_key, false_score_evidence
from chain.crypto import SecretKey
from chain.errors import ErrorCode
from chain.evidence import Evidence, EvidenceKind
from chain.params import DEVNET
from chain.state.view import StateView
from chain.store.blockstore import BlockStore
from chain.tx import SlashEvidence, make_tx
from chain.types import ZERO_SIGNATURE, Micro
from linguachaind.services.chain_service import AddBlockResult, ChainService
from linguachaind.services.evidence import EvidenceReporter
from linguachaind.services.submit import TxSubmitter
from mempool import DEFAULT_CONFIG, Mempool
from tests.support.chainbuilders import GENESIS_TIME_MS, dev_genesis
from tests.support.doubles import FakeClock
from tests.support.services_support import Validator

P = DEVNET
N = P.n_score_batches
CLAIMED = 1_000_000
HONEST = CLAIMED + P.score_slash_tolerance_micro + P.score_tolerance_micro + 1  # what nodes compute
Answer = RecomputedScores | ErrorCode | None


class Oracle:
    """What a node's rounds service answers for a claim (switchable between imports)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.asked: list[int] = []  # heights of the carrying blocks

    def __call__(self, parent: StateView | None, claim: VersionScores, height: int) -> Answer:
        assert parent is not None  # the chain service found the claimed block's parent
        self.asked.append(height)
        return self.answer


def scores(value: int) -> RecomputedScores:
    return RecomputedScores(dict.fromkeys(range(N), value), value, dict.fromkeys(range(N), value))


@dataclasses.dataclass
class World:
    clock: FakeClock
    ours: ChainService
    theirs: ChainService
    bare: ChainService
    their_oracle: Oracle
    leader: Validator
    false_block: Block
    evidence: Evidence
    pool: Mempool
    keys: dict[str, SecretKey]

    def report(self) -> bytes:
        """bob's SLASH_EVIDENCE tx of the evidence, admitted by our mempool."""
        tx = make_tx(self.keys["bob"], P.chain_id, 0, P.min_fee, SlashEvidence(self.evidence))
        assert self.pool.add(tx, self.clock.now_ms()) == tx.id
        return tx.id


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    genesis, keys = dev_genesis(2, funded=("alice", "bob"))
    clock = FakeClock(GENESIS_TIME_MS + 100_000)
    stores = [BlockStore.open(tmp_path / n, genesis) for n in ("ours", "theirs", "bare")]
    pool = Mempool.open(tmp_path / "pool", P, DEFAULT_CONFIG, stores[0].reader(), clock.now_ms())
    theirs_oracle = Oracle(None)
    ours = ChainService(stores[0], clock, mempool=pool, scores_of=Oracle(scores(HONEST)))
    theirs = ChainService(stores[1], clock, scores_of=theirs_oracle)
    bare = ChainService(stores[2], clock)
    leader = Validator(tmp_path, "v1", keys["validator1"], ours, clock, mempool=pool)
    liar = Validator(tmp_path, "v0", keys["validator0"], ours, clock)
    try:
        for _ in range(3):  # 1 TX, 2 DATA, 3 VERSION (an unscored no-op), on every node
            block = next_block(leader, ours, clock)
            for chain in (ours, theirs, bare):
                assert chain.import_block(block) is AddBlockResult.NEW_TIP
        false_block = scored_twin(liar, ours, clock)
        evidence = false_score_evidence(false_block)
        assert evidence is not None
        yield World(clock, ours, theirs, bare, theirs_oracle, leader, false_block, evidence, pool, keys)
    finally:
        leader.protection.close()
        liar.protection.close()
        pool.close()
        for store in stores:
            store.close()


def next_block(leader: Validator, chain: ChainService, clock: FakeClock) -> Block:
    clock.advance(3_000)  # rank 1 may propose too
    return leader.propose(chain, chain.tip_header())


def scored_twin(liar: Validator, chain: ChainService, clock: FakeClock) -> Block:
    """validator0's signed VERSION block at height 3 claiming `CLAIMED` on every batch (never
    imported: honest nodes refuse it; the signed header is the proof)."""
    parent = chain.header(chain.tip_header().prev_hash)
    assert parent is not None
    clock.advance(3_000)
    noop = liar.propose(chain, parent)
    assert isinstance(noop.body, VersionBody)
    claims = tuple(Micro(CLAIMED) for _ in range(N))
    body = dataclasses.replace(
        noop.body,
        per_batch_scores=claims,
        previous_batch_scores=claims,
        total_score=CLAIMED,
        previous_score=CLAIMED,
    )
    header = dataclasses.replace(noop.header, body_root=body_root(body), signature=ZERO_SIGNATURE)
    return Block(header.mined(P.pow_bits_header).signed(liar.key), body)


def test_a_block_with_proven_evidence_connects_everywhere_and_slashes(world: World) -> None:
    w = world
    report = w.report()
    block = next_block(w.leader, w.ours, w.clock)  # 4 TX
    assert [tx.id for tx in block.body.txs] == [report]  # type: ignore[union-attr]
    assert w.ours.import_block(block) is AddBlockResult.NEW_TIP  # its own oracle proves it

    w.their_oracle.answer = ErrorCode.BLOB_MISSING  # not scored there yet
    assert w.theirs.import_block(block) is ErrorCode.BLOB_MISSING
    assert ErrorCode.BLOB_MISSING.is_transient  # no ban: it comes back once scored
    w.their_oracle.answer = scores(CLAIMED)  # their scores agree with the claim: no fault
    assert w.theirs.import_block(block) is ErrorCode.EVIDENCE_NOT_A_FAULT
    assert ErrorCode.EVIDENCE_NOT_A_FAULT.is_permanent
    w.their_oracle.answer = scores(HONEST)
    assert w.theirs.import_block(block) is AddBlockResult.NEW_TIP
    assert w.their_oracle.asked == [4, 4, 4]  # asked for the carrying block's height
    assert w.bare.import_block(block) is ErrorCode.BAD_EVIDENCE  # no oracle: cannot check it

    offender = w.false_block.header.proposer
    for chain in (w.ours, w.theirs):
        reader = chain.reader()
        record = reader.validator(offender)
        assert record is not None
        assert record.jailed_until == 4 + P.jail_blocks
        assert record.reputation == P.reputation_min
        assert reader.evidence_seen(evidence_key(EvidenceKind.FALSE_SCORE, offender, 3))


def test_a_node_that_does_not_evaluate_follows_but_never_includes(world: World) -> None:
    w = world
    w.report()
    block = next_block(w.leader, w.ours, w.clock)
    assert isinstance(block.body, TxBody)
    report = block.body.txs[0]
    w.their_oracle.answer = None  # no base model, or the block is known final there
    assert w.theirs.import_block(block) is AddBlockResult.NEW_TIP
    assert w.theirs.false_score_problem(report, 4) == ErrorCode.BLOB_MISSING  # it includes none
    assert w.ours.false_score_problem(report, 4) is None
    margin = HONEST - CLAIMED - P.score_slash_tolerance_micro  # proven by one micro less than this
    assert w.ours.false_score_problem(report, 4, margin=margin) == ErrorCode.EVIDENCE_NOT_A_FAULT


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_the_reporter_reports_kept_evidence_once_while_the_window_lasts(world: World) -> None:
    """The reporter takes what the rounds service keeps (`RoundsService.false_scores`) when it sees
    a VERSION header and on every chain change (a block judged after its import waited)."""
    w = world
    kept: list[Evidence] = []
    txs = TxSubmitter(w.pool, w.clock)
    reporter = EvidenceReporter(w.ours.store, w.keys["alice"], w.pool, txs, false_scores=lambda: kept)
    reporter.saw_header(w.false_block.header, ErrorCode.BAD_BODY)
    assert reporter.submitted == []  # nothing kept yet
    kept.append(w.evidence)
    reporter.saw_header(w.false_block.header, ErrorCode.BAD_BODY)
    reporter.saw_header(w.false_block.header, ErrorCode.BAD_BODY)
    assert len(reporter.submitted) == 1  # once
    payload = reporter.submitted[0].payload
    assert isinstance(payload, SlashEvidence)
    assert payload.evidence == w.evidence
    while w.theirs.height < 3 + P.unbonding_blocks:  # the fault at 3 is out of the window
        block = next_block(w.leader, w.ours, w.clock)
        assert w.ours.import_block(block) is AddBlockResult.NEW_TIP
        assert w.theirs.import_block(block) is AddBlockResult.NEW_TIP
    late = EvidenceReporter(w.theirs.store, w.keys["bob"], w.pool, txs, false_scores=lambda: kept)
    lines = Lines()
    reporter_log = logging.getLogger("linguachaind.services.evidence")
    reporter_log.addHandler(lines)
    try:
        late.saw_header(w.false_block.header, ErrorCode.BAD_BODY)
    finally:
        reporter_log.removeHandler(lines)
    assert late.submitted == []
    assert lines.lines == []  # too old: not even tried (no log line on every chain change)
