"""Nodes of the learning-round integration tests: a store, blob store, DATA-block work, mempool,
rounds service and chain service wired as the daemon wires them (linguachaind.node), without p2p.

Owns: `LEARNING_PARAMS` (devnet with a one-round version lag), `TEXTS` and `write_test_set` (the
data unit's JSONL examples), `LearningNode`, `learning_unit` (a real training job's update as a
mined learning unit, its blob put on every node as the gossip fetch would) and `advance` (one block
proposed on a node's tip and imported by the others). Must not: mock the stores, the worker or the
rules.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import trio

from chain.block import Block
from chain.crypto import SecretKey
from chain.params import DEVNET
from chain.store.blockstore import BlockStore
from chain.types import ZERO_HASH, BlobHash, ChainId, Micro, TimestampMs
from chain.units import Encryption, LearningUnit
from linguachaind.services.chain_service import AddBlockResult, ChainService
from linguachaind.services.datablocks import DataBlocks
from linguachaind.services.evidence import EvidenceReporter
from linguachaind.services.producer import Producer
from linguachaind.services.rounds import RoundsService
from linguachaind.services.submit import TxSubmitter
from linguachaind.services.worker import LazyWorker
from mempool import DEFAULT_CONFIG, Mempool
from p2p.blobstore import FileBlobStore
from tests.support.chainbuilders import GENESIS_TIME_MS, dev_genesis
from tests.support.doubles import FakeClock
from tests.support.services_support import propose_on_tip
from training import protocol as wp
from training.supervisor import TrainingSupervisor

LEARNING_PARAMS = dataclasses.replace(DEVNET, version_lag_rounds=1)
TEXTS: Final = (  # the examples of the tests' data unit (its test set)
    "the miller walks to the river every morning to check the wheel.",
    "the wheel of the mill turns slowly when the river is low in summer.",
    "in spring the river is high and the wheel turns fast all day long.",
    "the miller's daughter keeps the accounts of the mill in a green book.",
    "farmers bring their grain to the mill on market day each week.",
    "the flour is packed in sacks and carried to the bakery by cart.",
    "the baker buys flour from the mill and bakes bread before dawn.",
    "bread from the village bakery is sold warm in the square.",
    "the old mill has stood by the river for two hundred years.",
    "children watch the wheel turning and listen to the water.",
    "at night the mill is quiet and the river keeps on flowing.",
    "the miller repairs the wooden wheel when the ice has melted.",
)


def write_test_set(tmp: Path, count: int = len(TEXTS)) -> tuple[bytes, Path]:
    """The first `count` of `TEXTS` as a JSONL text file `tmp/test.jsonl`: its bytes and path."""
    text = "".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:count]).encode()
    path = tmp / "test.jsonl"
    path.write_bytes(text)
    return text, path


class LearningNode:
    """One node's learning stack in `tmp`, named `name`. `worker` None: no base model here (scored
    VERSION bodies are followed unchecked). `checkpoint`: the height of a weak-subjectivity
    checkpoint it was given (blocks at or below it are known final). `reporter`: the name of the key
    whose evidence reporter (over the rounds service's FALSE_SCORE evidence, submitting through
    `txs`) the chain service shows its imports to, as the daemon builds a validator's."""

    def __init__(
        self,
        tmp: Path,
        name: str,
        clock: FakeClock,
        worker: LazyWorker | None,
        *,
        validators: int = 1,
        funded: tuple[str, ...] = ("alice", "bob"),
        checkpoint: int = 0,
        reporter: str | None = None,
    ) -> None:
        p = LEARNING_PARAMS
        self.genesis, self.keys = dev_genesis(validators, funded=funded, params=p)
        self.store = BlockStore.open(tmp / f"{name}-chain", self.genesis)
        self.blobs = FileBlobStore(tmp / f"{name}-blobs")
        self.data = DataBlocks(p, self.store, self.blobs)
        self.pool = Mempool.open(
            tmp / f"{name}-pool",
            p,
            config=DEFAULT_CONFIG,
            reader=self.store.reader(),
            now_ms=clock.now_ms(),
            unit_check=self.data.unit_blob_problem,
        )
        self.txs = TxSubmitter(self.pool, clock)
        self.rounds = RoundsService(self.store, self.data, worker, final_floor=lambda: checkpoint)
        self.reporter = None
        if reporter is not None:
            false_scores = self.rounds.false_scores
            key = self.keys[reporter]
            self.reporter = EvidenceReporter(self.store, key, self.pool, self.txs, false_scores=false_scores)
        self.chain = ChainService(
            self.store,
            clock,
            mempool=self.pool,
            learning_check=self.rounds.check_block,
            scores_of=self.rounds.scores_of,
            watchers=(self.reporter,) if self.reporter is not None else (),
        )

    def close(self) -> None:
        self.pool.close()
        self.store.close()


async def learning_unit(
    supervisor: TrainingSupervisor, nodes: Sequence[LearningNode], author: SecretKey, data: Path, seed: int
) -> LearningUnit:
    """`author`'s mined learning unit of a real 12-step training job on `data` from version 0."""
    out = data.parent / f"update-{seed}.safetensors"
    train = wp.Train(str(data), "", str(out), 12, 0, 8, wp.nano(2e-2), seed, 10**6, 0, wp.nano(1e-5))
    result = await supervisor.train(train)
    blob = out.read_bytes()
    for node in nodes:  # what the gossip fetch does between nodes
        await node.blobs.put_bytes(blob)
    unit = LearningUnit(
        chain_id=ChainId(LEARNING_PARAMS.chain_id),
        author=author.pubkey,
        base_version_id=ZERO_HASH,
        adapter_blob_hash=BlobHash(result.blob_hash),
        n_examples=result.n_examples,
        train_loss_micro=Micro(result.train_loss_micro),
        dp_epsilon_micro=0,
        encryption=Encryption.PLAINTEXT,
        byte_size=len(blob),
        created_ms=TimestampMs(GENESIS_TIME_MS),
        pow_nonce=0,
    )
    return await trio.to_thread.run_sync(unit.mined, LEARNING_PARAMS)


def advance(
    prod: Producer,
    key: SecretKey,
    home: LearningNode,
    nodes: Sequence[LearningNode],
    clock: FakeClock,
    slot_ms: int = 1_000,
) -> Block:
    """`slot_ms` later, the next block proposed by `prod` (`key`) on `home`'s tip and imported by
    every node of `nodes` in order (a node other than `home` checks it without effects)."""
    clock.advance(slot_ms)
    block = propose_on_tip(prod, home.chain, key)
    for node in nodes:
        assert node.chain.import_block(block) is AddBlockResult.NEW_TIP
    return block
