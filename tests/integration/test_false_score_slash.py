"""A falsified score is slashed through FALSE_SCORE evidence, end to end (issue 14 acceptance,
PROTOCOL §5.3, §6.5).

Two validators: validator0 is the liar, validator1 honest. Three nodes with real stores, mempools,
rounds services and the real training worker (lc-tiny): A and B compute round 1's aggregate and
scores in the background, C has no base model (it accepts scored bodies unchecked and follows the
certificates, FALSE_SCORE evidence included). validator0 proposes the VERSION block at height 6
with every batch loss claimed 0.3 nats lower than its evaluation (the test hook
`tests.support.adversary.LyingVersions` changes the honest body before signing; production code
has no such switch). A and B refuse it; B's rounds service keeps the FALSE_SCORE evidence and B's
evidence reporter (validator1's account) submits it; validator1's honest VERSION block follows and
B's TX block at height 7 includes the evidence; A (its own scores prove it) and C (no model: it
follows) import it, and on all three nodes validator0 loses `slash_false_score_permille` of its
stake, is jailed, has the minimum reputation, and the burn and the reporter's share are recorded
with the evidence key (`explainrewards 7` names the fault). Evidence against the honest VERSION
block is admitted by the mempool (its model-free part is valid) but never included: the producer's
own scores do not prove it.

Slow (the worker loads lc-tiny and trains two units): 60-120 s on the shared 2-core box.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import trio

from chain.block import TxBody
from chain.consensus.slashing import evidence_key, false_score_evidence, slash_amounts
from chain.crypto import SecretKey, account_id
from chain.errors import ErrorCode
from chain.evidence import EvidenceKind
from chain.hashing import H
from chain.lora import LoraConfig
from chain.state.model import RewardReason
from chain.tx import SlashEvidence, make_tx
from chain.units import DataFormat
from linguachaind.config import build_config
from linguachaind.parts import Parts
from linguachaind.rpc.methods import RpcContext, build_methods
from linguachaind.services.datablocks import store_data_unit
from linguachaind.services.worker import LazyWorker
from tests.support.adversary import LyingVersions
from tests.support.chainbuilders import GENESIS_TIME_MS, VALIDATOR_STAKE
from tests.support.doubles import FakeClock
from tests.support.learning_nodes import LEARNING_PARAMS, LearningNode, advance, learning_unit, write_test_set
from tests.support.services_support import learning_producer, propose_on_tip
from tests.support.tiny_lm import base_model_dir
from tests.support.waiting import wait_until
from training.supervisor import TrainingSupervisor, WorkerConfig

pytestmark = pytest.mark.slow

LIE_MICRO = 300_000  # more than score_slash_tolerance + score_tolerance (220,000): reported
P = LEARNING_PARAMS
SLOT_MS = 2_500  # a block every 2.5 s of the fake clock: rank 1 may propose too


def validators_node(
    tmp: Path, name: str, clock: FakeClock, worker: LazyWorker | None, reporter: str | None = None
) -> LearningNode:
    """Two validators: validator0 proposes the false score, validator1 reports it (on B: the
    reporter B's chain service shows its imports to)."""
    funded = ("alice", "bob", "validator1")
    return LearningNode(tmp, name, clock, worker, validators=2, funded=funded, reporter=reporter)


async def test_a_falsified_score_is_refused_and_its_proposer_slashed_on_every_node(tmp_path: Path) -> None:
    clock = FakeClock(GENESIS_TIME_MS + 100_000)
    config = WorkerConfig(
        base_model_dir(tmp_path), bytes(H(b"genesis")), LoraConfig.from_params(P), device="cpu", threads=1
    )
    worker = LazyWorker(P, functools.partial(TrainingSupervisor, config))
    a = validators_node(tmp_path, "a", clock, worker)
    b = validators_node(tmp_path, "b", clock, worker, reporter="validator1")
    c = validators_node(tmp_path, "c", clock, None)  # no base model here: it follows the certificates
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            with trio.fail_after(600):
                await run(tmp_path, nursery, worker, [a, b, c], clock)
            nursery.cancel_scope.cancel()
    finally:
        for node in (a, b, c):
            node.close()


async def run(
    tmp: Path, nursery: trio.Nursery, worker: LazyWorker, nodes: list[LearningNode], clock: FakeClock
) -> None:
    a, b, _ = nodes
    keys = a.keys
    liar, honest_key = keys["validator0"], keys["validator1"]
    reporter = b.reporter
    assert reporter is not None
    honest = learning_producer(
        tmp, "b", honest_key, b.chain, b.pool, clock, data_blocks=b.data, versions=b.rounds
    )
    lies = LyingVersions(a.rounds, LIE_MICRO)
    lying = learning_producer(tmp, "a", liar, a.chain, a.pool, clock, data_blocks=a.data, versions=lies)
    await fill_round_0(tmp, worker, nodes, clock)
    while b.chain.height < 5:  # 1 TX (units), 2 DATA (test set), 3 VERSION (no inputs yet), 4, 5
        advance(honest, honest_key, b, nodes, clock, SLOT_MS)
    nursery.start_soon(a.rounds.run, a.chain)
    nursery.start_soon(b.rounds.run, b.chain)
    await wait_until(
        lambda: min(a.rounds.statistics().computed, b.rounds.statistics().computed) >= 1, 500, 0.2
    )

    clock.advance(SLOT_MS)
    false_block = propose_on_tip(lying, a.chain, liar)  # height 6, signed by validator0
    assert a.chain.import_block(false_block) is ErrorCode.BAD_BODY  # honest code refuses it
    assert b.chain.import_block(false_block) is ErrorCode.BAD_BODY
    assert len(reporter.submitted) == 1  # B's reporter saw the false claim
    honest_version = advance(honest, honest_key, b, nodes, clock, SLOT_MS)  # 6, validator1's
    assert honest_version.body.units  # type: ignore[union-attr]  # it improves
    bogus = false_score_evidence(honest_version)  # evidence against an honest block
    assert bogus is not None
    bogus_tx = make_tx(keys["alice"], P.chain_id, 2, P.min_fee, SlashEvidence(bogus))
    assert b.pool.add(bogus_tx, clock.now_ms()) == bogus_tx.id  # model-free part valid: admitted
    evidence_block = advance(honest, honest_key, b, nodes, clock, SLOT_MS)  # 7 TX, imported by A and C too
    body = evidence_block.body
    assert isinstance(body, TxBody)
    assert [tx.id for tx in body.txs] == [reporter.submitted[0].id]  # the bogus one is left out
    check_slashed(nodes, liar, honest_key, 6, 7)
    explained = await explain(tmp, b, 7)
    slashes = [r for r in explained["rewards"] if "evidence" in r]
    assert {r["reason"] for r in slashes} == {"slash_burn", "slash_reporter"}
    fault = {"kind": "FALSE_SCORE", "validator": liar.pubkey.hex(), "height": 6}
    assert all(r["evidence"] == fault for r in slashes)  # `rewards explain 7` says why


async def explain(tmp: Path, node: LearningNode, height: int) -> Any:
    """`explainrewards HEIGHT` as the daemon's RPC answers it from `node`'s store."""
    (tmp / "linguachain.toml").write_text('network = "devnet"\n')
    ctx = RpcContext(
        config=build_config({"datadir": str(tmp)}, {}),
        genesis=node.genesis,
        genesis_hash=bytes(node.store.genesis_hash),
        request_stop=lambda: None,
        parts=Parts(store=node.store),
        warming_up=False,
    )
    method = {m.name: m for m in build_methods(ctx)}["explainrewards"]
    return await method.fn(height)


async def fill_round_0(tmp: Path, worker: LazyWorker, nodes: list[LearningNode], clock: FakeClock) -> None:
    """A data unit and two learning units trained by the real worker, in B's mempool."""
    a, b, c = nodes
    keys = b.keys
    supervisor, _ = await worker.get()
    text, data_path = write_test_set(tmp, 10)
    data_unit = await store_data_unit(P, b.blobs, keys["alice"], text, DataFormat.JSONL_TEXT, clock.now_ms())
    for node in (a, c):
        await node.blobs.put_bytes(text)
    units = [
        await learning_unit(supervisor, nodes, keys[who], data_path, seed)
        for who, seed in (("alice", 1), ("bob", 2))
    ]
    for tx in (
        make_tx(keys["alice"], P.chain_id, 0, P.min_fee, data_unit),
        make_tx(keys["alice"], P.chain_id, 1, P.min_fee, units[0]),
        make_tx(keys["bob"], P.chain_id, 0, P.min_fee, units[1]),
    ):
        assert b.pool.add(tx, clock.now_ms()) == tx.id


def check_slashed(
    nodes: list[LearningNode], liar: SecretKey, reporter: SecretKey, fault: int, at: int
) -> None:
    total, _ = slash_amounts(P, EvidenceKind.FALSE_SCORE, VALIDATOR_STAKE)
    share = total * P.slash_reporter_share_permille // 1000
    key = evidence_key(EvidenceKind.FALSE_SCORE, liar.pubkey, fault)
    for node in nodes:
        record = node.store.reader().validator(liar.pubkey)
        assert record is not None
        assert record.stake_total == VALIDATOR_STAKE - total
        assert record.jailed_until == at + P.jail_blocks
        assert record.reputation == P.reputation_min
        assert node.store.reader().evidence_seen(key)
        found = {(r.reason, r.amount) for r in node.store.rewards_at(at) if bytes(r.ref) == bytes(key)}
        assert found == {(RewardReason.SLASH_BURN, -total), (RewardReason.SLASH_REPORTER, share)}
        paid = [r for r in node.store.rewards_at(at) if r.reason == RewardReason.SLASH_REPORTER]
        assert [r.account for r in paid] == [account_id(reporter.pubkey)]
