"""DATA blocks on the node (linguachaind.services.datablocks, PROTOCOL §6.4): a data unit is admitted
once its blob is held, the DATA proposer selects it, and another node's import re-runs the selection
with the blobs: the honest body is accepted (and its test set kept), a missing blob is BLOB_MISSING
(transient), a falsified quality report is BAD_BODY. Real stores, real mempool, the real VDF."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import trio

from chain.block import DataBody
from chain.codec import encode
from chain.consensus.data_selection import jsonl_bytes, select_test_set
from chain.errors import ErrorCode
from chain.header import BlockKind
from chain.params import DEVNET
from chain.state import learning
from chain.state.model import StateReader
from chain.state.view import StateView
from chain.store.blockstore import BlockStore
from chain.tx import make_tx
from chain.types import BlobHash
from chain.units import DataFormat, DataUnit
from linguachaind.glue import BlobFetches
from linguachaind.services.chain_service import AddBlockResult, ChainService
from linguachaind.services.datablocks import DataBlocks, store_data_unit
from mempool import DEFAULT_CONFIG, Mempool
from p2p.blobstore import FileBlobStore
from tests.support.chainbuilders import GENESIS_TIME_MS, dev_genesis
from tests.support.doubles import FakeClock
from tests.support.services_support import learning_producer, propose_on_tip

TEXTS = [
    "The river runs past the old mill every spring.",
    "A small bird sang on the fence at dawn today.",
    "Numbers add up when you count them twice, slowly.",
    "The library opens at nine and closes at five.",
    "She wrote a letter to her brother in the city.",
    "Bread rises best in a warm and quiet kitchen.",
    "The train was late because of snow on the line.",
    "Children played football in the park after school.",
    "The river runs past the old mill every spring.",  # an exact duplicate
    "{not json",  # malformed
]


class Node:
    """One node's store, blob store, mempool, chain service and DATA-block work."""

    def __init__(self, tmp: Path, name: str, clock: FakeClock) -> None:
        genesis, self.keys = dev_genesis(1, funded=("alice",))
        self.store = BlockStore.open(tmp / f"{name}-chain", genesis)
        self.blobs = FileBlobStore(tmp / f"{name}-blobs")
        self.data = DataBlocks(DEVNET, self.store, self.blobs)
        self.pool = Mempool.open(
            tmp / f"{name}-pool",
            DEVNET,
            config=DEFAULT_CONFIG,
            reader=self.store.reader(),
            now_ms=clock.now_ms(),
            unit_check=self.data.unit_blob_problem,
        )
        self.chain = ChainService(self.store, clock, mempool=self.pool, learning_check=self.data.check)

    def close(self) -> None:
        self.pool.close()
        self.store.close()


class Falsified:
    """A DATA proposer that claims one more exact duplicate than the selection found."""

    def __init__(self, honest: DataBlocks) -> None:
        self.honest = honest

    def body(self, reader: StateView) -> DataBody:
        body = self.honest.body(reader)
        report = dataclasses.replace(
            body.report, n_exact_duplicates=body.report.n_exact_duplicates + 1, n_malformed=0
        )
        return dataclasses.replace(body, report=report)


def test_a_data_unit_is_selected_by_the_proposer_and_checked_on_import(tmp_path: Path) -> None:
    clock = FakeClock(GENESIS_TIME_MS + 100_000)
    a, b = Node(tmp_path, "a", clock), Node(tmp_path, "b", clock)
    key, alice = a.keys["validator0"], a.keys["alice"]
    try:
        data = b"".join(
            (json.dumps({"text": t}).encode() if t[0] != "{" else t.encode()) + b"\n" for t in TEXTS
        )
        unit = trio.run(store_data_unit, DEVNET, a.blobs, alice, data, DataFormat.JSONL_TEXT, clock.now_ms())
        assert isinstance(unit, DataUnit)
        assert unit.n_examples == len(TEXTS)
        tx = make_tx(alice, DEVNET.chain_id, 0, 1_000_000, unit)
        assert b.pool.add(tx, clock.now_ms()) is ErrorCode.BLOB_MISSING  # B does not hold the blob
        assert a.pool.add(tx, clock.now_ms()) == tx.id
        honest = learning_producer(tmp_path, "a", key, a.chain, a.pool, clock, data_blocks=a.data)
        tx_block = propose_on_tip(honest, a.chain, key)
        assert a.chain.import_block(tx_block) is AddBlockResult.NEW_TIP
        assert b.chain.import_block(tx_block) is AddBlockResult.NEW_TIP
        clock.advance(1_000)

        assert a.chain.tip_header().height + 1 == 2  # the DATA block of round 0
        cheat_producer = learning_producer(
            tmp_path, "cheat", key, a.chain, a.pool, clock, data_blocks=Falsified(a.data)
        )
        cheat = propose_on_tip(cheat_producer, a.chain, key)
        block = propose_on_tip(honest, a.chain, key)
        assert block.header.kind == BlockKind.DATA
        assert isinstance(block.body, DataBody)
        assert block.body.unit_ids == (unit.id,)
        report = block.body.report
        assert (report.n_examples_in, report.n_exact_duplicates, report.n_malformed, report.n_selected) == (
            10,
            1,
            1,
            8,
        )
        assert b.chain.import_block(block) is ErrorCode.BLOB_MISSING  # transient: fetched, then again
        assert bytes(b.data._want_recv.receive_nowait()) == bytes(unit.blob_hash)
        assert trio.run(b.blobs.put_bytes, data) == unit.blob_hash
        assert b.chain.import_block(cheat) is ErrorCode.BAD_BODY
        assert b.chain.import_block(block) is AddBlockResult.NEW_TIP
        assert a.chain.import_block(block) is AddBlockResult.NEW_TIP
        check_test_set(b, report.test_set_hash, unit, data)
        assert b.store.reader().unit(unit.id).used_height == 2  # type: ignore[union-attr]
    finally:
        a.close()
        b.close()


def check_test_set(node: Node, test_set_hash: bytes, unit: DataUnit, data: bytes) -> None:
    """The importer recorded the test set in its state and keeps its blob: the active test set."""
    reader: StateReader = node.store.reader()
    entries = learning.recent_test_sets(node.store.reader(), 10, DEVNET.max_test_examples)
    assert [(e.height, e.test_set_hash, e.n_selected) for e in entries] == [(2, test_set_hash, 8)]
    expected = select_test_set(DEVNET, [(unit, data)]).examples
    assert node.blobs.read(BlobHash(test_set_hash)) == jsonl_bytes(expected)
    assert node.data.active_examples(node.store.reader(), reader.height) == expected


def test_a_gossiped_units_blob_is_fetched_from_its_sender_through_run(tmp_path: Path) -> None:
    """The blob fetch is an argument of `run` (built before p2p, no late connect): a gossiped data
    unit's admission waits while its blob is fetched from the peer that sent it, and then admits."""
    clock = FakeClock(GENESIS_TIME_MS + 100_000)
    a, b = Node(tmp_path, "a", clock), Node(tmp_path, "b", clock)
    asked: list[tuple[bytes, tuple[str, ...] | None]] = []

    async def from_a(blob_hash: BlobHash, peers: Sequence[str] | None) -> ErrorCode | None:
        asked.append((bytes(blob_hash), tuple(peers) if peers is not None else None))
        blob = a.blobs.read(blob_hash)
        if blob is None:
            return ErrorCode.BLOB_MISSING
        await b.blobs.put_bytes(blob)
        return None

    async def admit(raw: bytes) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(b.data.run, BlobFetches(from_a).fetch)  # as the node does
            await b.data.fetch_unit_blob(raw, "peer-a")  # NodeApi.validate_tx, on BLOB_MISSING
            nursery.cancel_scope.cancel()

    try:
        data = b"".join(json.dumps({"text": t}).encode() + b"\n" for t in TEXTS[:8])
        alice = a.keys["alice"]
        unit = trio.run(store_data_unit, DEVNET, a.blobs, alice, data, DataFormat.JSONL_TEXT, clock.now_ms())
        tx = make_tx(alice, DEVNET.chain_id, 0, 1_000_000, unit)
        assert not b.blobs.has(unit.blob_hash)
        trio.run(admit, encode(tx))
        assert asked == [(bytes(unit.blob_hash), ("peer-a",))]
        assert b.blobs.read(unit.blob_hash) == data
        assert b.pool.add_raw(encode(tx), clock.now_ms()) == tx.id
    finally:
        a.close()
        b.close()
