"""The inputs of a coming VERSION block read from a state (linguachaind.services.roundinputs,
PROTOCOL §6.5 timing): which learning units and test sets count, the stale base, the key; and the
bodies a result makes. Real transition on an in-memory state."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from chain.block import DataBody, QualityReport, UnitWeight, VersionBody
from chain.consensus.scoring import total_score
from chain.errors import ErrorCode
from chain.hashing import H
from chain.header import BlockKind
from chain.params import DEVNET
from chain.store.blockstore import BlockStore
from chain.types import BlobHash, Hash32, Micro, Round
from linguachaind.services.datablocks import DataBlocks
from linguachaind.services.roundinputs import RoundResult, body_for, inputs_for
from linguachaind.services.rounds import RoundsService
from linguachaind.services.worker import LazyWorker
from p2p.blobstore import FileBlobStore
from tests.support.chainbuilders import (
    MemChain,
    dev_genesis,
    make_block,
    mine_data_unit,
    mine_learning_unit,
    version_body,
)

P = dataclasses.replace(DEVNET, version_lag_rounds=2, max_staleness=1)


@pytest.fixture
def chain() -> MemChain:
    return MemChain(*dev_genesis(funded=("alice", "bob"), params=P))


def test_units_and_test_sets_count_up_to_the_inputs_round(chain: MemChain) -> None:
    base = chain.state.model_version()
    early = mine_learning_unit(P, chain.keys["alice"], base.version_id, 5)
    data = mine_data_unit(P, chain.keys["bob"], 4)
    chain.add_txs([chain.tx("alice", early), chain.tx("bob", data)])  # height 1 (round 0)
    test_set = Hash32(H(b"test set"))
    chain.add(DataBody((data.id,), QualityReport(1, 4, 0, 0, 0, 0, 4, test_set), (4,)))  # height 2
    late = mine_learning_unit(P, chain.keys["bob"], base.version_id, 7)
    chain.add_txs([chain.tx("bob", late)])  # height 4 (round 1)
    assert inputs_for(P, chain.state, 1) is None  # round 1 - lag 2 < 0: no inputs
    two = inputs_for(P, chain.state, 2)  # inputs round 0: heights up to 1 and 2
    assert two is not None
    assert [c.unit_id for c in two.candidates] == [early.id]
    assert (two.candidates[0].staleness, two.candidates[0].n_examples) == (0, 5)
    assert (two.test_sets, two.inputs_height, two.base_is_current) == ((test_set,), 2, True)
    assert two.worth_computing
    three = inputs_for(P, chain.state, 3)  # inputs round 1: the late unit too
    assert three is not None
    assert sorted(bytes(c.unit_id) for c in three.candidates) == sorted([bytes(early.id), bytes(late.id)])
    assert three.key != two.key
    assert inputs_for(P, chain.state, 2).key == two.key  # type: ignore[union-attr]  # deterministic


def test_a_version_after_the_inputs_round_makes_the_base_stale(chain: MemChain) -> None:
    base = chain.state.model_version()
    unit = mine_learning_unit(P, chain.keys["alice"], base.version_id, 5)
    chain.add_txs([chain.tx("alice", unit)])
    chain.add()  # DATA, height 2
    other = mine_learning_unit(P, chain.keys["bob"], base.version_id, 5)
    chain.add_txs([chain.tx("bob", other)])  # height 4
    chain.add()  # DATA, height 5
    chain.add(version_body(6, base.version_id, [(other.id, 1)], BlobHash(H(b"a")), 1, 2))  # version 1
    stale = inputs_for(P, chain.state, 3)  # inputs round 1 (height 5): version 1 came after
    assert stale is not None
    assert not stale.base_is_current
    assert not stale.worth_computing
    chain.skip_to(BlockKind.VERSION)
    later = inputs_for(P, chain.state, 5)  # inputs round 3 (height 11): base current, staleness 1
    assert later is not None
    assert later.base_is_current
    assert [(c.unit_id, c.staleness) for c in later.candidates] == [(unit.id, 1)]


def test_bodies_from_a_result(chain: MemChain) -> None:
    base = chain.state.model_version()
    unit = mine_learning_unit(P, chain.keys["alice"], base.version_id, 5)
    chain.add_txs([chain.tx("alice", unit)])
    chain.add(DataBody((), QualityReport(0, 0, 0, 0, 0, 0, 0, Hash32(bytes(32)))))
    chain.skip_to(BlockKind.VERSION)
    inputs = inputs_for(P, chain.state, 2)
    assert inputs is not None
    assert body_for(P, inputs, None).units == ()  # no result: the unscored no-op
    assert body_for(P, inputs, None).per_batch_scores == ()
    new, old = tuple(range(1_000, 1_008)), tuple(range(2_000, 2_008))
    included = (UnitWeight(unit.id, 5),)
    better = RoundResult(inputs.key, included, (), BlobHash(H(b"new")), 64, new, old)
    body = body_for(P, inputs, better)
    assert (body.units, body.new_adapter_blob_hash) == (included, BlobHash(H(b"new")))
    assert (body.total_score, body.previous_score) == (total_score(new), total_score(old))
    worse = dataclasses.replace(better, new_scores=old, previous_scores=new)
    noop = body_for(P, inputs, worse)
    assert (noop.units, noop.new_adapter_blob_hash) == ((), base.adapter_blob_hash)  # a scored no-op
    assert noop.per_batch_scores == old


def test_import_of_a_scored_version_waits_for_this_nodes_result(chain: MemChain, tmp_path: Path) -> None:
    """A scored VERSION body is BLOB_MISSING (transient) until this node computed its round, and
    the computation is queued; an unscored no-op always passes; a node without a base model accepts
    scored bodies unchecked; a scored body for a round with nothing to score is BAD_BODY."""
    base = chain.state.model_version()
    unit = mine_learning_unit(P, chain.keys["alice"], base.version_id, 5)
    data = mine_data_unit(P, chain.keys["bob"], 16)
    chain.add_txs([chain.tx("alice", unit), chain.tx("bob", data)])  # height 1
    chain.add(DataBody((data.id,), QualityReport(1, 16, 0, 0, 0, 0, 16, Hash32(H(b"set"))), (16,)))  # 2
    store = BlockStore.open(tmp_path / "chain", chain.genesis)
    try:
        blobs = DataBlocks(P, store, FileBlobStore(tmp_path / "blobs"))
        rounds = RoundsService(store, blobs, LazyWorker(P, lambda: pytest.fail("no worker may start")))
        blind = RoundsService(store, blobs, None)
        scores = tuple(Micro(1_000_000) for _ in range(P.n_score_batches))
        scored = VersionBody(
            Round(1),
            base.version_id,
            (),
            P.aggregation_rule,
            base.adapter_blob_hash,
            scores,
            1_000_000,
            1_000_000,
            previous_batch_scores=scores,
        )
        key = chain.keys["validator0"]
        early = make_block(chain.tip, scored, key, bytes(32), chain.tip.timestamp_ms + 1, pow_bits=0)
        assert rounds.check_block(early, chain.state) == ErrorCode.BAD_BODY  # round 1: no inputs
        while chain.height < 5:
            chain.add()
        body = dataclasses.replace(scored, round=Round(2))
        block = make_block(chain.tip, body, key, bytes(32), chain.tip.timestamp_ms + 1, pow_bits=0)
        inputs = inputs_for(P, chain.state, 2)
        assert inputs is not None
        assert inputs.worth_computing
        assert rounds.check_block(block, chain.state) == ErrorCode.BLOB_MISSING
        assert rounds._next_inputs() == inputs  # queued before the rounds the tip shows
        assert blind.check_block(block, chain.state) is None
        assert blind.statistics().unchecked == 1
        noop = dataclasses.replace(block, body=body_for(P, inputs, None))
        assert rounds.check_block(noop, chain.state) is None
        assert rounds.statistics().computed == 0
    finally:
        store.close()
