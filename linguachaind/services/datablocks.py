"""DATA blocks on the node (PROTOCOL §3.3, §6.4, ARCHITECTURE §4): unit blobs, the DATA proposer's
body, the import check that re-runs the selection, and the active test set.

Owns: resolving a registered data unit (its `DATA_UNIT` tx in the block that registered it) and its
blob; `unit_blob_problem`, the mempool's admission check of a unit's blob (held, `byte_size`, parses);
`body`, the DATA proposer's selection (`choose_units` + `select_test_set` over the registered, unused
data units whose blobs this node holds, with each unit's accepted count); `check`, the chain
service's import check (`check_data_body` with the blobs: the report and the accepted counts are
recomputed; a missing blob is BLOB_MISSING, transient, and is queued for a fetch);
`active_examples`, the active test set of a state (chain.state.learning's test-set records and
their blobs); `store_data_unit`, the seam for RPC and the CLI (store a blob, build the unit).
Must not: decide the selection rules (chain.consensus.data_selection does), write the chain, or
talk to the network except through the fetch function `run` is given.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from trio_typing import TaskStatus

from chain.block import Block, DataBody, QualityReport, TxBody
from chain.codec import decode
from chain.consensus.data_selection import (
    SelectionError,
    check_data_body,
    choose_units,
    data_body,
    exact_key,
    jsonl_bytes,
    select_test_set,
    signature,
    unit_problem,
)
from chain.consensus.data_selection import active_test_set as window
from chain.crypto import SecretKey
from chain.errors import ErrorCode
from chain.examples import Example, parse_line, split_lines
from chain.lora import LoraLayout, check_update_blob
from chain.params import ChainParams
from chain.state import keys, learning
from chain.state.model import UnitKind, UnitRecord
from chain.state.view import StateView, load
from chain.store.blockstore import BlockStore
from chain.tx import Tx
from chain.types import ZERO_HASH, BlobHash, ChainId, Hash32, TimestampMs, UnitId
from chain.units import DataFormat, DataUnit, LearningUnit
from p2p.blobstore import FileBlobStore

log = logging.getLogger(__name__)

FETCH_QUEUE: Final = 256  # blob hashes waiting for a fetch; more are dropped (asked again later)

# a gossiped unit's blob, from the peer that sent it, inside the gossip validation deadline (2 s);
# the default of config `unit_blob_fetch_s` (a slow machine, a test under load: raise both)
UNIT_BLOB_FETCH_S: Final = 1.5

# p2p.service.P2PService.fetch_blob's shape: (blob hash, peers or None for all) -> error or None
Fetch = Callable[[BlobHash, Sequence[str] | None], Awaitable[ErrorCode | None]]

__all__ = ["DataBlocks", "Fetch", "store_data_unit"]


class DataBlocks:
    """The node's DATA-block work over its block store and blob store."""

    def __init__(
        self,
        params: ChainParams,
        store: BlockStore,
        blobs: FileBlobStore,
        layout: LoraLayout | None = None,
        *,
        unit_blob_fetch_s: float = UNIT_BLOB_FETCH_S,
    ) -> None:
        self.params = params
        self.unit_blob_fetch_s = unit_blob_fetch_s
        self.store = store
        self.blobs = blobs
        self.layout = layout
        self._want_send, self._want_recv = trio.open_memory_channel[BlobHash](FETCH_QUEUE)
        self._wanted: set[bytes] = set()
        # Gossiped units' blobs, each from the peer that announced it (`fetch_unit_blob`): fetched by
        # `run` at once, beside the queue above, and the waiting admission woken when done.
        self._urgent_send, self._urgent_recv = trio.open_memory_channel[
            tuple[BlobHash, str, trio.Event, list[ErrorCode | None]]
        ](FETCH_QUEUE)
        self._warm = trio.Event()  # set at the first data unit: load MinHash off the trio thread
        self.selected = self.checked = self.missing = 0

    # -- units and blobs ----------------------------------------------------------------------------

    def unit_blob_problem(self, unit: DataUnit | LearningUnit) -> ErrorCode | None:
        """Admission of a unit tx (mempool): BLOB_MISSING until the blob is held, else whether the
        blob is the unit's (size == byte_size, and it parses as the unit's kind: a learning unit's
        blob passes `check_update_blob` against the layout, which the node reads from the base
        model's headers at start; size only on a node without the base model's safetensors)."""
        blob_hash = unit.blob_hash if isinstance(unit, DataUnit) else unit.adapter_blob_hash
        self.blobs.expect_size(blob_hash, unit.byte_size)  # a download of another size is refused
        blob = self.blobs.read(blob_hash)
        if blob is None:
            self.want(blob_hash)
            return ErrorCode.BLOB_MISSING
        if isinstance(unit, DataUnit):
            self._warm.set()
            return None if unit_problem(self.params, unit, blob) is None else ErrorCode.BAD_UNIT
        if len(blob) != unit.byte_size:
            return ErrorCode.BAD_UNIT
        if self.layout is None:  # no base model safetensors here, no worker yet: size only
            return None
        return None if not isinstance(check_update_blob(blob, self.layout), ErrorCode) else ErrorCode.BAD_UNIT

    def data_unit(self, reader: StateView, unit_id: UnitId) -> DataUnit | None:
        """The registered data unit `unit_id`, from the main-chain block that registered it."""
        rec = reader.unit(unit_id)
        if rec is None or rec.kind != UnitKind.DATA:
            return None
        block = self.store.get_block_at(rec.height)
        if block is None or not isinstance(block.body, TxBody):
            return None
        for tx in block.body.txs:
            if isinstance(tx.payload, DataUnit) and bytes(tx.payload.id) == bytes(unit_id):
                return tx.payload
        return None

    def want(self, blob_hash: BlobHash) -> None:
        """Queue a fetch of `blob_hash` (once until it is fetched or fails)."""
        if bytes(blob_hash) in self._wanted:
            return
        try:
            self._want_send.send_nowait(blob_hash)
            self._wanted.add(bytes(blob_hash))
        except trio.WouldBlock:
            pass

    async def run(self, fetch: Fetch, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fetch the wanted blobs one after the other from every peer, and each gossiped unit's blob
        from its sender at once, through `fetch` (p2p's, which starts after this object is built:
        until `run` starts, wanted blobs stay queued); at the first data unit, import the selection's
        MinHash (scipy, seconds) in a thread, so that the first DATA block's selection does not stall
        the node on the import."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._warm_up)
            nursery.start_soon(self._unit_blob_loop, fetch, nursery)
            task_status.started()
            await self._fetch_loop(fetch)

    async def _warm_up(self) -> None:
        await self._warm.wait()
        await trio.to_thread.run_sync(signature, "warm up")

    async def _fetch_loop(self, fetch: Fetch) -> None:
        async for blob_hash in self._want_recv:
            if not self.blobs.has(blob_hash):
                error = await fetch(blob_hash, None)
                if error is not None:
                    log.info("blob %s not fetched: %s", blob_hash.hex()[:16], error.name)
            self._wanted.discard(bytes(blob_hash))

    async def fetch_unit_blob(self, raw_tx: bytes, peer: str) -> ErrorCode | None:
        """Before a gossiped unit tx is admitted: fetch its blob from the peer that sent it (the
        announcing peer holds it), within `unit_blob_fetch_s`. Nothing to do for other txs. The
        fetch's error, if it ended with one in time: BLOB_SIZE_MISMATCH says the sender offers a
        blob of another size than its unit declares (nothing is downloaded)."""
        tx = decode(Tx, raw_tx, max_bytes=self.params.max_tx_bytes)
        if isinstance(tx, ErrorCode) or not isinstance(tx.payload, DataUnit | LearningUnit):
            return None
        unit = tx.payload
        blob_hash = unit.blob_hash if isinstance(unit, DataUnit) else unit.adapter_blob_hash
        if self.blobs.has(blob_hash):
            return None
        self.blobs.expect_size(blob_hash, unit.byte_size)
        done, result = trio.Event(), list[ErrorCode | None]()
        try:
            self._urgent_send.send_nowait((blob_hash, peer, done, result))
        except trio.WouldBlock:
            return None  # too many at once: admission answers BLOB_MISSING, the unit comes again
        with trio.move_on_after(self.unit_blob_fetch_s):
            await done.wait()
        return result[0] if result else None

    async def _unit_blob_loop(self, fetch: Fetch, nursery: trio.Nursery) -> None:
        async for blob_hash, peer, done, result in self._urgent_recv:
            nursery.start_soon(self._fetch_unit_blob, fetch, blob_hash, peer, done, result)

    async def _fetch_unit_blob(
        self, fetch: Fetch, blob_hash: BlobHash, peer: str, done: trio.Event, result: list[ErrorCode | None]
    ) -> None:
        try:
            with trio.move_on_after(self.unit_blob_fetch_s):
                error = await fetch(blob_hash, [peer])
                result.append(error)
                if error is not None:
                    log.info("unit blob %s not fetched from %s: %s", blob_hash.hex()[:16], peer, error.name)
        finally:
            done.set()

    # -- the active test set --------------------------------------------------------------------------

    def active_examples(self, reader: StateView, up_to_height: int) -> tuple[Example, ...] | None:
        """The active test set of `reader` as of the DATA blocks up to `up_to_height` (newest
        selection first, cut at `max_test_examples`); None while a test-set blob is missing."""
        entries = learning.recent_test_sets(reader, up_to_height, self.params.max_test_examples)
        return self.examples_of([e.test_set_hash for e in entries])

    def examples_of(self, test_sets: Sequence[Hash32]) -> tuple[Example, ...] | None:
        """The active test-set window over these selections (newest first); None while a blob is
        missing (its fetch is queued)."""
        recent = []
        for test_set in test_sets:
            blob = self.blobs.read(BlobHash(test_set))
            if blob is None:
                self.want(BlobHash(test_set))
                return None
            recent.append(_parse_test_set(blob))
        return window(recent, self.params.max_test_examples)

    # -- the proposer and the import check ---------------------------------------------------------

    def offered(self, reader: StateView) -> list[tuple[DataUnit, bytes]]:
        """Registered, unused data units whose blobs this node holds, oldest registration first."""
        out: list[tuple[int, bytes, DataUnit, bytes]] = []
        for key, raw in reader.items(keys.UNIT):
            rec = load(UnitRecord, raw)
            if rec.kind != UnitKind.DATA or rec.used_height != 0:
                continue
            unit = self.data_unit(reader, UnitId(key[len(keys.UNIT) :]))
            if unit is None:
                continue
            blob = self.blobs.read(rec.blob_hash)
            if blob is None:
                self.want(rec.blob_hash)
                continue
            out.append((int(rec.height), key, unit, blob))
        return [(u, b) for _, _, u, b in sorted(out, key=lambda x: (x[0], x[1]))]

    def body(self, reader: StateView) -> DataBody:
        """The DATA body for a block on `reader`: the chosen units' selection, its test-set blob
        stored (every node keeps the active test set's examples)."""
        active = self.active_examples(reader, reader.height)
        chosen = choose_units(self.params, self.offered(reader)) if active is not None else []
        if not chosen:
            return DataBody((), QualityReport(0, 0, 0, 0, 0, 0, 0, ZERO_HASH))
        selection = select_test_set(self.params, chosen, frozenset(exact_key(e) for e in active or ()))
        if selection.examples:
            self.blobs.put_bytes_sync(jsonl_bytes(selection.examples))
        self.selected += 1
        return data_body(selection)  # units in id order with their accepted counts

    def check(self, block: Block, parent: StateView) -> ErrorCode | None:
        """Import check of a DATA block on its parent state: re-run the selection with the blobs
        (BLOB_MISSING, transient, while one is missing) and keep its test-set blob."""
        body = block.body
        if not isinstance(body, DataBody) or not body.unit_ids:
            return None
        units: list[tuple[DataUnit, bytes]] = []
        for unit_id in body.unit_ids:
            unit = self.data_unit(parent, unit_id)
            if unit is None:
                return ErrorCode.BAD_BODY if parent.unit(unit_id) is None else ErrorCode.BLOB_MISSING
            blob = self.blobs.read(unit.blob_hash)
            if blob is None:
                self.want(unit.blob_hash)
                self.missing += 1
                return ErrorCode.BLOB_MISSING
            if len(blob) != unit.byte_size:  # the rule is consensus, not only the blob store's
                return ErrorCode.BLOB_SIZE_MISMATCH
            units.append((unit, blob))
        active = self.active_examples(parent, parent.height)
        if active is None:
            self.missing += 1
            return ErrorCode.BLOB_MISSING
        keys_ = frozenset(exact_key(e) for e in active)
        code = check_data_body(self.params, body, units, keys_)
        if code is None and body.report.n_selected:
            self.blobs.put_bytes_sync(jsonl_bytes(select_test_set(self.params, units, keys_).examples))
        self.checked += 1
        return code

    def statistics(self) -> dict[str, int]:
        return {"selected": self.selected, "checked": self.checked, "missing": self.missing}


def _parse_test_set(blob: bytes) -> list[Example]:
    out = []
    for line in split_lines(blob):
        example = parse_line(line)
        if isinstance(example, str):
            raise SelectionError(f"a stored test set has a malformed line: {example}")
        out.append(example)
    return out


async def store_data_unit(
    params: ChainParams,
    blobs: FileBlobStore,
    author: SecretKey,
    data: bytes,
    fmt: DataFormat,
    now_ms: int,
    task: int = 0,
) -> DataUnit:
    """The seam for `submitdataunit` and the CLI: check `data` (JSONL), store it as a blob and
    return the mined, unsigned data unit of `author` (the caller signs and submits its tx)."""
    blob_hash = await blobs.put_bytes(data)
    unit = DataUnit(
        chain_id=ChainId(params.chain_id),
        author=author.pubkey,
        blob_hash=blob_hash,
        n_examples=len(split_lines(data)),
        byte_size=len(data),
        format=fmt,
        task=task,
        created_ms=TimestampMs(now_ms),
        pow_nonce=0,
    )
    problem = unit_problem(params, unit, data)
    if problem is not None:
        raise ValueError(problem)
    return await trio.to_thread.run_sync(unit.mined, params)
