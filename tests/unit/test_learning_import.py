"""Import of DATA and VERSION bodies on a node, over a real LevelDB block store, a real blob store,
the real selection, aggregation and state transition (PROTOCOL §5.1, §5.2, §6.4, §6.5):

- a DATA body whose per-unit accepted counts differ from the re-run selection is refused, the honest
  one is accepted and the data pool is paid by accepted examples;
- a VERSION body whose excluded list differs from the recomputed aggregate's is refused, also for a
  block this node knows final (the aggregate is always recomputed); the honest one moves the
  authors' reputation (+ included, - excluded);
- a block known final (at or below the checkpoint) is not re-scored, a syncing node re-scores a
  block that is not final;
- the plain importer checks every batch of both adapters; an attester votes only if the batches its
  VDF output assigns it agree, and the attester service withholds its vote otherwise;
- `explainrewards` by unit id says why: accepted examples, weight, or the exclusion reason.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

from chain.block import Block, DataBody, Exclusion, TxBody, VersionBody
from chain.consensus.aggregation import UnitUpdate, aggregate, next_adapter
from chain.consensus.data_selection import data_body, select_test_set
from chain.consensus.scoring import assign_score_batches, data_pool_shares, total_score
from chain.crypto import SecretKey
from chain.errors import ErrorCode
from chain.hashing import H
from chain.lora import LoraLayout, lora_layout, update_blob
from chain.params import DEVNET, AggregationRule
from chain.state.model import RewardReason
from chain.state.view import StateView
from chain.store.blockstore import BlockStore
from chain.tx import Transfer
from chain.types import COIN, Amount, BlobHash, Micro, PubKey, TimestampMs
from chain.units import DataFormat, DataUnit, Encryption, LearningUnit
from linguachaind.config import build_config
from linguachaind.parts import Parts
from linguachaind.rpc.methods import RpcContext, build_methods
from linguachaind.services.attester import Attester
from linguachaind.services.chain_service import AddBlockResult, ChainService
from linguachaind.services.datablocks import DataBlocks
from linguachaind.services.roundinputs import RoundResult, body_for, inputs_for
from linguachaind.services.rounds import RoundsService
from linguachaind.services.worker import LazyWorker
from p2p.blobstore import FileBlobStore
from tests.support.chainbuilders import GENESIS_TIME_MS, MemChain, dev_genesis, make_block
from tests.support.doubles import FakeClock, NullNetwork
from tests.support.services_support import Validator

P = dataclasses.replace(
    DEVNET, version_lag_rounds=1, aggregation_rule=AggregationRule.NORM_FILTERED_FEDAVG
)  # round 1's VERSION (height 6) aggregates the units of height 1, scored on height 2's test set
LAYOUT: LoraLayout = lora_layout([("m.q_proj", 8, 8), ("m.v_proj", 8, 8)], P)
AUTHORS = ("alice", "bob", "carol", "validator1")  # validator1's update is the outlier

WORDS = [
    a + b
    for a in ("bra", "cle", "dro", "fen", "gal", "hun", "kip", "lor")
    for b in ("mab", "nod", "pux", "rit", "sov")
]


def texts(seed: int, n: int) -> list[str]:
    """`n` sentences of 8 words drawn from WORDS: far from near duplicates of each other."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, 8, replace=False)) + "." for _ in range(n)]


ALICE_TEXTS = texts(1, 12)
BOB_TEXTS = texts(2, 6) + ALICE_TEXTS[:4]  # 4 exact duplicates of alice's: not accepted for bob


def jsonl(texts: list[str]) -> bytes:
    return b"".join(json.dumps({"text": t}).encode() + b"\n" for t in texts)


def data_unit(key: SecretKey, blob: bytes) -> DataUnit:
    unit = DataUnit(
        P.chain_id,
        key.pubkey,
        BlobHash(H(blob)),
        blob.count(b"\n"),
        len(blob),
        DataFormat.JSONL_TEXT,
        0,
        TimestampMs(GENESIS_TIME_MS),
        0,
    )
    return unit.mined(P)


def update(scale: int, seed: int) -> dict[str, np.ndarray]:
    """An update near one direction (honest), or that direction times `scale` (the outlier)."""
    rng = np.random.default_rng(seed)
    return {
        s.name: (np.full(s.shape, 1_000, dtype=np.int64) * scale + rng.integers(-50, 50, s.shape)).astype(
            np.int32
        )
        for s in LAYOUT.exchanged()
    }


def learning_unit(key: SecretKey, blob: bytes, base: bytes) -> LearningUnit:
    unit = LearningUnit(
        P.chain_id,
        key.pubkey,
        base,  # type: ignore[arg-type]
        BlobHash(H(blob)),
        10,
        Micro(2_000_000),
        0,
        Encryption.PLAINTEXT,
        len(blob),
        TimestampMs(GENESIS_TIME_MS),
        0,
    )
    return unit.mined(P)


@dataclass
class World:
    chain: MemChain
    store: BlockStore
    blobs: FileBlobStore
    data: DataBlocks
    data_units: list[tuple[DataUnit, bytes]]
    learning: dict[str, LearningUnit]
    updates: dict[bytes, dict[str, np.ndarray]]
    tmp: Path

    def connect(self, body: TxBody | DataBody | VersionBody | None = None) -> Block:
        """Apply the next block in memory and connect it to the LevelDB store."""
        block, effects = self.chain.add(body)
        self.store.connect_block(block, effects)
        return block

    def draft(self, body: DataBody | VersionBody) -> Block:
        return make_block(self.chain.tip, body, self.chain.keys["validator0"], bytes(32), 0, pow_bits=0)

    def rounds(self, *, floor: int = 0) -> RoundsService:
        worker = LazyWorker(P, lambda: pytest.fail("no worker may start"))
        return RoundsService(self.store, self.data, worker, final_floor=lambda: floor)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """Height 1 (TX): validator1 funded, alice's and bob's data units, four learning units (the
    fourth, validator1's, 50 times the others); the chain stops at height 1."""
    chain = MemChain(*dev_genesis(n_validators=2, funded=("alice", "bob", "carol"), params=P))
    store = BlockStore.open(tmp_path / "chain", chain.genesis)
    blobs = FileBlobStore(tmp_path / "blobs")
    w = World(chain, store, blobs, DataBlocks(P, store, blobs, LAYOUT), [], {}, {}, tmp_path)
    (tmp_path / "linguachain.toml").write_text('network = "devnet"\n')
    keys, base = chain.keys, chain.state.model_version().version_id
    nonces = {name: 0 for name in AUTHORS}
    txs = [chain.tx("alice", Transfer(chain.account("validator1"), Amount(COIN)), nonce=0)]
    nonces["alice"] = 1
    for name, lines in (("alice", ALICE_TEXTS), ("bob", BOB_TEXTS)):
        blob = jsonl(lines)
        blobs.put_bytes_sync(blob)
        data = data_unit(keys[name], blob)
        w.data_units.append((data, blob))
        txs.append(chain.tx(name, data, nonce=nonces[name]))
        nonces[name] += 1
    for i, name in enumerate(AUTHORS):
        tensors = update(50 if name == "validator1" else 1, seed=i)
        blob = update_blob(tensors)
        blobs.put_bytes_sync(blob)
        unit = learning_unit(keys[name], blob, base)
        w.learning[name] = unit
        w.updates[bytes(unit.id)] = tensors
        txs.append(chain.tx(name, unit, nonce=nonces[name]))
        nonces[name] += 1
    try:
        w.connect(TxBody(tuple(txs)))
        yield w
    finally:
        store.close()


def honest_data_body(w: World) -> DataBody:
    return data_body(select_test_set(P, w.data_units))


def test_a_data_body_with_moved_accepted_counts_is_refused_on_import(world: World) -> None:
    """Bob's 4 duplicates of alice's examples are not accepted: the honest body says so and the
    pool follows it; a proposer who moves accepted examples to bob (same total) is refused."""
    w = world
    honest = honest_data_body(w)
    accepted = dict(zip((bytes(u) for u in honest.unit_ids), honest.accepted, strict=True))
    alice_unit, bob_unit = (bytes(u.id) for u, _ in w.data_units)
    assert (accepted[alice_unit], accepted[bob_unit]) == (12, 6)
    counts = tuple(
        c + (2 if bytes(u) == bob_unit else -2) for u, c in zip(honest.unit_ids, honest.accepted, strict=True)
    )
    moved = dataclasses.replace(honest, accepted=counts)
    reader = w.store.reader()
    assert w.data.check(w.draft(moved), reader) == ErrorCode.BAD_BODY
    assert w.data.check(w.draft(honest), reader) is None
    block = w.connect(honest)
    paid = {
        bytes(r.ref): r.amount
        for r in w.store.rewards_at(block.height)
        if r.reason == RewardReason.DATA_CONTRIBUTOR
    }
    shares = dict(data_pool_shares(P, list(zip(honest.unit_ids, honest.accepted, strict=True))))
    assert paid == {bytes(u): a for u, a in shares.items()}
    assert paid[alice_unit] == P.reward_data_pool * 12 // 18  # accepted 12 of 18, not declared 12 of 22
    explained = trio.run(explain, w, alice_unit.hex())
    assert (explained["kind"], explained["accepted_examples"]) == ("data", 12)


def version_setup(w: World) -> tuple[RoundResult, VersionBody]:
    """Heights 2-5 (the honest DATA block, then empty ones); round 1's inputs, the aggregate the
    rules make of them and an improving VERSION body with made-up scores."""
    reader = w.store.reader()
    assert w.data.check(w.draft(honest_data_body(w)), reader) is None  # keeps the test-set blob
    w.connect(honest_data_body(w))
    while w.chain.height < 5:
        w.connect()
    inputs = inputs_for(P, w.store.reader(), 1)
    assert inputs is not None
    assert inputs.worth_computing
    units = [
        UnitUpdate(c.unit_id, w.updates[bytes(c.unit_id)], c.n_examples, c.staleness)
        for c in inputs.candidates
    ]
    agg = aggregate(P, units, {s.name: s.shape for s in LAYOUT.exchanged()})
    _, _, new_hash = next_adapter(
        {s.name: np.zeros(s.shape, dtype=np.int32) for s in LAYOUT.exchanged()}, agg
    )
    new = tuple(1_900_000 + 1_000 * b for b in range(P.n_score_batches))
    old = tuple(2_000_000 + 1_000 * b for b in range(P.n_score_batches))
    result = RoundResult(inputs.key, agg.included, agg.excluded, new_hash, 18, new, old)
    body = body_for(P, inputs, result)
    assert [(bytes(e.unit_id), e.reason) for e in body.excluded] == [
        (bytes(w.learning["validator1"].id), Exclusion.NORM_OUTLIER)
    ]
    return result, body


def test_a_version_body_with_a_wrong_excluded_list_is_refused_on_import(world: World) -> None:
    """The excluded list is checked bit for bit against the recomputed aggregate, by a node that
    re-scores and by one that imports the block as already final (aggregate only); the honest block
    moves reputation: validator1's outlier unit costs it `reputation_unit_penalty`."""
    w = world
    result, body = version_setup(w)
    hidden = dataclasses.replace(body, excluded=())
    other = dataclasses.replace(
        body, excluded=(dataclasses.replace(body.excluded[0], reason=Exclusion.RARELY_KEPT),)
    )
    reader = w.store.reader()
    final = w.rounds(floor=6)  # the block is at or below this node's checkpoint
    assert final.check_block(w.draft(body), reader) is None
    assert final.statistics().scores_skipped == 1
    scoring = w.rounds()
    scoring._cache[result.key] = result  # what its background computation gave
    for node in (final, scoring):
        assert node.check_block(w.draft(hidden), reader) == ErrorCode.BAD_BODY
        assert node.check_block(w.draft(other), reader) == ErrorCode.BAD_BODY
    assert scoring.check_block(w.draft(body), reader) is None
    author = w.chain.keys["validator1"].pubkey
    before = w.chain.state.validator(author).reputation  # type: ignore[union-attr]
    block = w.connect(body)
    assert w.chain.state.validator(author).reputation == before - P.reputation_unit_penalty  # type: ignore[union-attr]
    assert w.store.reader().unit(w.learning["validator1"].id).used_height == block.height  # type: ignore[union-attr]
    paid = {
        bytes(r.ref)
        for r in w.store.rewards_at(block.height)
        if r.reason == RewardReason.LEARNING_CONTRIBUTOR
    }
    assert paid == {bytes(w.learning[n].id) for n in ("alice", "bob", "carol")}
    explained = {n: trio.run(explain, w, w.learning[n].id.hex()) for n in ("alice", "validator1")}
    assert explained["validator1"]["excluded"] == "norm_outlier"
    assert explained["validator1"]["rewards"] == []
    weight = next(u.weight for u in body.units if bytes(u.unit_id) == bytes(w.learning["alice"].id))
    assert (explained["alice"]["weight"], explained["alice"]["improved"]) == (weight, True)
    assert [r["reason"] for r in explained["alice"]["rewards"]] == ["learning_contributor"]


async def explain(w: World, target: str) -> dict[str, Any]:
    """`explainrewards` over this store, as the RPC server calls it."""
    config = build_config({"datadir": str(w.tmp)}, {})
    ctx = RpcContext(config, w.chain.genesis, bytes(w.store.genesis_hash), lambda: None, Parts(store=w.store))
    method = {m.name: m for m in build_methods(ctx)}["explainrewards"]
    out: dict[str, Any] = await method.fn(target)
    return out


def test_only_blocks_known_final_skip_rescoring(world: World) -> None:
    """PROTOCOL §6.5: a syncing node may skip re-scoring blocks that are already final. Syncing is
    not enough: without a checkpoint at or above the block it computes the scores first
    (BLOB_MISSING until then, the computation queued)."""
    w = world
    _, body = version_setup(w)
    reader = w.store.reader()
    syncing = w.rounds()  # a node catching up, without a checkpoint
    assert not syncing.known_final(6)
    assert syncing.check_block(w.draft(body), reader) == ErrorCode.BLOB_MISSING
    assert syncing._next_inputs() is not None  # queued for the background computation
    assert syncing.statistics().scores_skipped == 0
    final = w.rounds(floor=6)
    assert final.known_final(6)
    assert not final.known_final(7)
    assert final.check_block(w.draft(body), reader) is None


def test_importer_checks_every_batch_and_an_attester_its_assigned_ones(world: World) -> None:
    """The plain importer, which scored every batch in the background, refuses a claim off by more
    than `score_tolerance` on any batch of either adapter; an attester attests only if the batches
    the VDF output assigns it agree, and never a scored body it has no scores for."""
    w = world
    result, body = version_setup(w)
    reader = w.store.reader()
    node = w.rounds()
    node._cache[result.key] = result
    attesters = [w.chain.keys["validator0"].pubkey, w.chain.keys["validator1"].pubkey, PubKey(H(b"third"))]
    draft = w.draft(body)
    plan = assign_score_batches(draft.header.vdf_output, attesters, P.n_score_batches)
    me, other = attesters[0], attesters[1]
    target = next(b for b in plan[other] if b not in plan[me])
    off = P.score_tolerance_micro + 1
    old = [s + (off if b == target else 0) for b, s in enumerate(body.previous_batch_scores)]
    lying = dataclasses.replace(
        body, previous_batch_scores=tuple(Micro(s) for s in old), previous_score=total_score(old)
    )
    assert node.check_block(draft, reader) is None
    assert all(node.may_attest(draft, reader, a, attesters) for a in attesters)
    bad = w.draft(lying)
    assert node.check_block(bad, reader) == ErrorCode.BAD_BODY  # the importer checks every batch
    assert node.may_attest(bad, reader, me, attesters)  # not one of my batches
    assert not node.may_attest(bad, reader, other, attesters)
    assert not w.rounds().may_attest(draft, reader, me, attesters)  # no scores here: no vote
    noop = w.draft(
        dataclasses.replace(
            body,
            units=(),
            excluded=(),
            per_batch_scores=(),
            previous_batch_scores=(),
            total_score=0,
            previous_score=0,
        )
    )
    assert w.rounds().may_attest(noop, reader, me, attesters)


def test_the_attester_withholds_its_vote_when_its_score_check_fails(tmp_path: Path) -> None:
    """linguachaind.services.attester asks the score check (the rounds service's `may_attest`) with
    the head block, its parent state, its key and the validators voting at that height; it signs
    only when the check passes."""
    genesis, keys = dev_genesis(2)
    clock = FakeClock(GENESIS_TIME_MS + 100_000)
    store = BlockStore.open(tmp_path / "chain", genesis)
    chain = ChainService(store, clock)
    v = Validator(tmp_path, "v0", keys["validator0"], chain, clock)
    asked: list[tuple[bytes, PubKey, list[PubKey]]] = []
    verdict = [False]

    def check(block: Block, parent: StateView, me: PubKey, attesters: Sequence[PubKey]) -> bool:
        asked.append((bytes(block.hash), me, list(attesters)))
        return verdict[0]

    attester = Attester(chain, v.key, v.protection, NullNetwork(), score_check=check)
    try:
        block = v.propose(chain, chain.tip_header())
        assert chain.import_block(block) is AddBlockResult.NEW_TIP
        assert attester.attest_head() is None
        assert attester.withheld == 1
        validators = sorted((keys["validator0"].pubkey, keys["validator1"].pubkey), key=bytes)
        assert asked == [(bytes(block.hash), v.key.pubkey, validators)]
        verdict[0] = True
        vote = attester.attest_head()
        assert vote is not None
        assert vote.block_hash == block.hash
    finally:
        v.protection.close()
        store.close()
