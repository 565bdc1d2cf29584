"""A learning round end to end on two nodes (issue 14 items 3-5): a data unit becomes the test set of
a DATA block, two learning units trained by the real worker (lc-tiny) are registered, both nodes'
rounds services aggregate them and score both adapters in the background, the proposer's VERSION
block improves the model, the other node recomputes the aggregate bit for bit and the scores within
tolerance and imports it, a wrong aggregate and a falsified score are refused, and the nodes agree
on the adapter hash, the version history and the learning-pool rewards. A third node, whose
checkpoint says the block is final, checks the aggregate only (PROTOCOL §6.5 lets it skip
re-scoring a final block) and agrees too; the attester's check of its assigned batches passes the
honest body, fails the falsified one, and fails on the node that did not score.

Real stores, real mempool, real chiavdf, the real training worker; `version_lag_rounds` is 1 so the
scored VERSION block comes at height 6.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import pytest
import trio

from chain.block import UnitWeight, VersionBody
from chain.consensus.scoring import total_score
from chain.crypto import SecretKey
from chain.errors import ErrorCode
from chain.hashing import H
from chain.lora import LoraConfig
from chain.state import learning
from chain.state.model import RewardReason
from chain.state.view import StateView
from chain.tx import make_tx
from chain.types import Micro
from chain.units import DataFormat, LearningUnit
from linguachaind.services.chain_service import AddBlockResult
from linguachaind.services.datablocks import store_data_unit
from linguachaind.services.producer import Producer
from linguachaind.services.rounds import RoundsService
from linguachaind.services.worker import LazyWorker
from tests.support.chainbuilders import GENESIS_TIME_MS, dev_genesis
from tests.support.doubles import FakeClock
from tests.support.learning_nodes import LEARNING_PARAMS as P
from tests.support.learning_nodes import TEXTS, LearningNode, advance, learning_unit, write_test_set
from tests.support.services_support import learning_producer, propose_on_tip
from tests.support.tiny_lm import base_model_dir
from tests.support.waiting import wait_until
from training.supervisor import TrainingSupervisor, WorkerConfig

pytestmark = pytest.mark.slow


class Tampered:
    """A VERSION proposer that changes the honest body with `change`."""

    def __init__(self, honest: RoundsService, change: object) -> None:
        self.honest, self.change = honest, change

    def body(self, reader: StateView, height: int) -> VersionBody:
        return self.change(self.honest.body(reader, height))  # type: ignore[operator,no-any-return]


def tampered(
    tmp: Path, name: str, key: SecretKey, node: LearningNode, clock: FakeClock, change: object
) -> Producer:
    """A producer on `node` whose VERSION body is the honest one changed by `change`."""
    versions = Tampered(node.rounds, change)
    return learning_producer(
        tmp, name, key, node.chain, node.pool, clock, data_blocks=node.data, versions=versions
    )


async def test_a_version_block_improves_the_model_and_both_nodes_agree(tmp_path: Path) -> None:
    clock = FakeClock(GENESIS_TIME_MS + 100_000)
    _, keys = dev_genesis(1, funded=("alice", "bob"), params=P)
    config = WorkerConfig(
        base_model_dir(tmp_path), bytes(H(b"genesis")), LoraConfig.from_params(P), device="cpu", threads=1
    )
    worker = LazyWorker(P, functools.partial(TrainingSupervisor, config))
    a, b = LearningNode(tmp_path, "a", clock, worker), LearningNode(tmp_path, "b", clock, worker)
    c = LearningNode(
        tmp_path, "c", clock, worker, checkpoint=6
    )  # knows height 6 final: aggregates, no scores
    key, alice, bob = keys["validator0"], keys["alice"], keys["bob"]
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            with trio.fail_after(600):
                await run_round(tmp_path, nursery, worker, [a, b, c], key, alice, bob, clock)
            nursery.cancel_scope.cancel()
    finally:
        for node in (a, b, c):
            node.close()


async def run_round(
    tmp: Path,
    nursery: trio.Nursery,
    worker: LazyWorker,
    nodes: list[LearningNode],
    key: SecretKey,
    alice: SecretKey,
    bob: SecretKey,
    clock: FakeClock,
) -> None:
    a, b, c = nodes
    supervisor, _ = await worker.get()
    text, data_path = write_test_set(tmp)
    data_unit = await store_data_unit(P, a.blobs, alice, text, DataFormat.JSONL_TEXT, clock.now_ms())
    for node in (b, c):
        await node.blobs.put_bytes(text)
    units = [
        await learning_unit(supervisor, nodes, who, data_path, seed) for who, seed in ((alice, 1), (bob, 2))
    ]
    txs = [
        make_tx(alice, P.chain_id, 0, P.min_fee, data_unit),
        make_tx(alice, P.chain_id, 1, P.min_fee, units[0]),
    ]
    txs.append(make_tx(bob, P.chain_id, 0, P.min_fee, units[1]))
    for tx in txs:
        assert a.pool.add(tx, clock.now_ms()) == tx.id
    honest = learning_producer(tmp, "a", key, a.chain, a.pool, clock, data_blocks=a.data, versions=a.rounds)
    advance(honest, key, a, [b, c, a], clock)  # 1 TX: the three units
    data_block = advance(honest, key, a, [b, c, a], clock)  # 2 DATA: the test set
    assert data_block.body.report.n_selected == len(TEXTS)  # type: ignore[union-attr]
    assert not advance(honest, key, a, [b, c, a], clock).body.units  # type: ignore[union-attr]  # 3: no inputs yet
    nursery.start_soon(a.rounds.run, a.chain)
    nursery.start_soon(b.rounds.run, b.chain)
    advance(honest, key, a, [b, c, a], clock)  # 4 TX
    advance(honest, key, a, [b, c, a], clock)  # 5 DATA (empty)
    await wait_until(
        lambda: min(a.rounds.statistics().computed, b.rounds.statistics().computed) >= 1, 500, 0.2
    )
    check_version(tmp, nodes, key, clock, honest, units)


def check_version(
    tmp: Path,
    nodes: list[LearningNode],
    key: SecretKey,
    clock: FakeClock,
    honest: Producer,
    units: list[LearningUnit],
) -> None:
    a, b, c = nodes
    clock.advance(1_000)

    def wrong_weights(body: VersionBody) -> VersionBody:
        return dataclasses.replace(body, units=tuple(UnitWeight(u.unit_id, u.weight + 1) for u in body.units))

    def false_scores(body: VersionBody) -> VersionBody:
        scores = tuple(Micro(s - 50_000) for s in body.per_batch_scores)
        return dataclasses.replace(body, per_batch_scores=scores, total_score=total_score(scores))

    wrong = propose_on_tip(tampered(tmp, "w", key, a, clock, wrong_weights), a.chain, key)
    false = propose_on_tip(tampered(tmp, "f", key, a, clock, false_scores), a.chain, key)
    block = propose_on_tip(honest, a.chain, key)
    body = block.body
    assert isinstance(body, VersionBody)
    assert body.total_score < body.previous_score  # trained on the test set: it improves
    assert sorted(bytes(u.unit_id) for u in body.units) == sorted(bytes(u.id) for u in units)
    assert b.chain.import_block(wrong) is ErrorCode.BAD_BODY
    assert b.chain.import_block(false) is ErrorCode.BAD_BODY
    parent = b.chain.state(block.header.prev_hash)
    assert parent is not None
    me = [key.pubkey]  # the one validator checks every batch
    assert b.rounds.may_attest(block, parent, key.pubkey, me)
    assert not b.rounds.may_attest(false, parent, key.pubkey, me)
    assert not c.rounds.may_attest(block, parent, key.pubkey, me)  # c did not score it: no vote
    assert b.chain.import_block(block) is AddBlockResult.NEW_TIP
    assert c.chain.import_block(wrong) is ErrorCode.BAD_BODY  # a final block's aggregate is still checked
    assert c.chain.import_block(block) is AddBlockResult.NEW_TIP
    assert c.rounds.statistics().scores_skipped == 2  # the wrong one and the honest one
    assert c.rounds.statistics().computed == 0
    assert a.chain.import_block(block) is AddBlockResult.NEW_TIP
    ma, mb = a.store.reader().model_version(), b.store.reader().model_version()
    assert ma == mb == c.store.reader().model_version()
    assert (ma.version, ma.adapter_blob_hash, ma.score) == (1, body.new_adapter_blob_hash, body.total_score)
    assert a.blobs.has(ma.adapter_blob_hash)
    assert b.blobs.has(ma.adapter_blob_hash)
    history = [(e.version, e.height, e.noop, e.n_units) for e in learning.version_history(b.store.reader())]
    assert history == [(0, 3, True, 0), (1, 6, False, 2)]
    rewards = b.store.rewards_at(6)
    paid = {bytes(r.ref): r.amount for r in rewards if r.reason == RewardReason.LEARNING_CONTRIBUTOR}
    assert set(paid) == {bytes(u.id) for u in units}
    assert sum(paid.values()) <= P.reward_learning_pool
