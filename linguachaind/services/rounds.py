"""The rounds service (PROTOCOL §6.5, ARCHITECTURE §4 step 5): VERSION blocks computed in the
background before they are due, looked up by the proposer and checked on import.

Owns: watching the tip for coming VERSION rounds whose inputs are fixed (`roundinputs.inputs_for`),
computing each distinct input once (learning-unit blobs checked with `chain.lora.check_update_blob`,
`aggregation.aggregate` in a worker thread, the new adapter stored as a blob, both adapters scored on
the active test set in `n_score_batches` batches by the training worker), the cache of results, the
proposer's VERSION body (`body`), the import check of DATA and VERSION bodies (`check_block`: DATA via
`DataBlocks.check`; VERSION: the aggregate and its exclusions bit for bit, and every batch of both
adapters within `score_tolerance`), the attester's vote check of its VDF-assigned score batches
(`may_attest`), the FALSE_SCORE oracle and `statistics()`. The worker is the node's shared
`LazyWorker`.
Must not: make the chain wait (no result: the proposer makes an unscored no-op, which import always
accepts), decide rules (chain.consensus does), or write the chain.

A scored VERSION body whose result this node has not computed yet is BLOB_MISSING (transient, never
a ban): the computation is queued and the block comes back by gossip or sync. A block this node
knows final when it imports it (at or below its final height or its weak-subjectivity checkpoint,
`final_floor`) is checked on its aggregate only (computed at once; PROTOCOL §6.5 lets a syncing
node skip re-scoring blocks that are already final). A node whose genesis base model it cannot load
accepts scored VERSION bodies unchecked (counted in `unchecked`) and never attests one; it follows
the other attesters' certificates; docs/learning.md says so.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import trio

if TYPE_CHECKING:
    from trio_typing import TaskStatus

from chain.block import Block, DataBody, VersionBody, VersionScores
from chain.consensus.aggregation import UnitUpdate, aggregate, next_adapter
from chain.consensus.data_selection import jsonl_bytes
from chain.consensus.scoring import (
    RecomputedScores,
    assign_score_batches,
    assigned_batches_agree,
    check_version_body,
    noop_before_scoring,
    total_score,
)
from chain.consensus.slashing import claim_is_false, false_score_evidence
from chain.errors import ErrorCode
from chain.evidence import Evidence
from chain.header import Header, round_for_height
from chain.lora import Int32Array, LoraLayout, check_update_blob
from chain.params import ChainParams
from chain.state.model import ModelVersion
from chain.state.view import StateView
from chain.store.blockstore import BlockStore
from chain.types import PubKey
from linguachaind.services.datablocks import DataBlocks
from linguachaind.services.roundinputs import (
    Candidate,
    RoundInputs,
    RoundResult,
    body_for,
    expected_for,
    inputs_for,
    pending_units,
    unit_update,
    unscored_noop,
)
from linguachaind.services.wakeup import ChainChanges, Poke, wait_change_or_poke
from linguachaind.services.worker import LazyWorker
from training import protocol as wp
from training.supervisor import JobFailed, TrainingSupervisor

log = logging.getLogger(__name__)

MAX_RESULTS: Final = 64  # cached results (one per distinct input; a round rarely needs more than 2)
EVAL_BATCH: Final = 16  # examples per forward pass (memory only; results do not depend on it)
POLL_S: Final = 1.0  # looks again for fetched blobs even when the chain did not move
RETRY_FAILED_S: Final = 30.0  # a computation that failed (worker error, bug) is retried after this


class _Missing(Exception):
    """A blob the computation needs is not here yet (its fetch is queued)."""


@dataclass(frozen=True, slots=True)
class RoundsStatistics:
    state: str  # "idle", "computing", "waiting_for_blobs", "no_model"
    computed: int
    failed: int
    improved: int
    unchecked: int
    scores_skipped: int  # scored bodies known final at import: aggregate checked, scores not
    cached: int
    last_round: int
    last_outcome: str
    last_ms: int  # how long the last computation took
    last_error: str


class RoundsService:
    """Background VERSION results over the chain service, the DATA-block work and the worker."""

    def __init__(
        self,
        store: BlockStore,
        data: DataBlocks,
        worker: LazyWorker | None,
        *,
        final_floor: Callable[[], int] = lambda: 0,
    ) -> None:
        """Built before the chain service, whose import asks `check_block`; `run` is given the
        chain service to watch. `final_floor`: the height of this node's weak-subjectivity
        checkpoint (0 without one); a scored VERSION block at or below it, or at or below the final
        height, is checked on its aggregate only (`known_final`, PROTOCOL §6.5). Whether the node is
        syncing does not matter: a block that is not known final is re-scored."""
        self.store = store
        self.params: ChainParams = store.params
        self.data = data
        self._worker_handle = worker
        self._cache: OrderedDict[bytes, RoundResult] = OrderedDict()
        self._requested: OrderedDict[bytes, RoundInputs] = OrderedDict()
        self._failed_at: dict[bytes, float] = {}  # key -> when its computation last failed
        self._false_scores: OrderedDict[bytes, Evidence] = OrderedDict()  # block hash -> evidence
        self._unjudged: OrderedDict[bytes, tuple[bytes, Block]] = OrderedDict()  # BLOB_MISSING VERSIONs
        self._poke = Poke()
        self._state = "idle" if worker is not None else "no_model"
        self.computed = self.failed = self.improved = self.unchecked = self.scores_skipped = 0
        self.final_floor = final_floor  # the checkpoint's height (given or adopted), 0 without one
        self._last: tuple[int, str, int, str] = (-1, "", 0, "")

    # -- the background loop ----------------------------------------------------------------------

    async def run(
        self, chain: ChainChanges, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Compute coming rounds; look again when `chain` (the chain service) changes, an import
        asks for a result, or every `POLL_S` (blob arrivals have no event)."""
        task_status.started()
        seen = chain.version
        while True:
            inputs = self._next_inputs() if self._worker_handle is not None else None
            if inputs is not None and await self._compute_logged(inputs):
                continue
            await wait_change_or_poke(chain, seen, self._poke, POLL_S)
            seen = chain.version

    def _next_inputs(self) -> RoundInputs | None:
        """Inputs an import asked for first, then the coming VERSION rounds whose inputs are fixed
        at the tip, nearest first; None when every one is cached or not worth computing."""
        now = time.monotonic()
        self._failed_at = {k: t for k, t in self._failed_at.items() if now - t < RETRY_FAILED_S}
        while self._requested:
            _, inputs = self._requested.popitem(last=False)
            if inputs.key not in self._cache and inputs.key not in self._failed_at:
                return inputs
        reader = self.store.reader()
        tip = reader.height
        next_version = tip + 1 + (-(tip + 1)) % 3  # VERSION heights are multiples of 3
        first = round_for_height(next_version)
        pending = pending_units(self.params, reader)  # one scan for every round looked at
        for k in range(first, first + self.params.version_lag_rounds + 1):
            if 3 * (k - self.params.version_lag_rounds) + 2 > tip:
                break
            found = inputs_for(self.params, reader, k, pending)
            fresh = found is not None and found.key not in self._cache and found.key not in self._failed_at
            if found is not None and found.worth_computing and fresh:
                return found
        return None

    async def _compute_logged(self, inputs: RoundInputs) -> bool:
        """Compute and cache; True when a result was added (look for more at once)."""
        start = time.monotonic()
        self._state = "computing"
        try:
            result = await self.compute(inputs)
        except _Missing as e:
            self._state = "waiting_for_blobs"
            self._last = (inputs.round, "", 0, str(e))
            return False
        except JobFailed as e:
            self._failed_at[inputs.key] = time.monotonic()
            self.failed += 1
            self._state = "idle"
            self._last = (inputs.round, "", 0, f"{e.code.name}: {e}")
            log.warning("round %d: scoring failed: %s", inputs.round, e)
            return False
        except Exception as e:  # a bug here must not stop the node: its blocks stay no-ops
            self._failed_at[inputs.key] = time.monotonic()
            self.failed += 1
            self._state = "idle"
            self._last = (inputs.round, "", 0, repr(e))
            log.exception("round %d: computing the version failed", inputs.round)
            return False
        self._state = "idle"
        self.computed += 1
        outcome = result.outcome
        name = outcome.name.lower() if outcome is not None else "unscored"
        seconds = time.monotonic() - start
        self._last = (inputs.round, name, int(seconds * 1000), "")
        self._cache[inputs.key] = result
        while len(self._cache) > MAX_RESULTS:
            self._cache.popitem(last=False)
        self._judge_waiting(inputs.key, result)
        log.info(
            "round %d: %d units included, %s in %.1f s (new %s, previous %s)",
            inputs.round,
            len(result.included),
            name,
            seconds,
            total_score(result.new_scores) if result.new_scores else "-",
            total_score(result.previous_scores) if result.previous_scores else "-",
        )
        return True

    # -- one computation --------------------------------------------------------------------------

    async def compute(self, inputs: RoundInputs) -> RoundResult:
        """The aggregate of `inputs` (exact), the new adapter stored, and both adapters' scores."""
        supervisor, layout = await self._worker()
        shapes = {s.name: s.shape for s in layout.exchanged()}
        units = [self._update(c, layout) for c in inputs.candidates]
        current = self._adapter(inputs.base, layout)
        agg = await trio.to_thread.run_sync(aggregate, self.params, units, shapes)
        _, blob, new_hash = next_adapter(current, agg)
        await self.data.blobs.put_bytes(blob)
        examples = self.data.examples_of(inputs.test_sets)
        if examples is None:
            raise _Missing("a test-set blob")
        early = noop_before_scoring(
            self.params,
            n_included=len(agg.included),
            base_is_current=inputs.base_is_current,
            n_test_examples=len(examples),
        )
        new_scores = previous = None
        if early is None:
            test_hash = await self.data.blobs.put_bytes(jsonl_bytes(examples))
            test_path = str(self.data.blobs.path(test_hash))
            base_path = (
                "" if inputs.base.version == 0 else str(self.data.blobs.path(inputs.base.adapter_blob_hash))
            )
            new_scores = await self._evaluate(supervisor, test_path, str(self.data.blobs.path(new_hash)))
            previous = await self._evaluate(supervisor, test_path, base_path)
        return RoundResult(
            inputs.key, agg.included, agg.excluded, new_hash, len(examples), new_scores, previous
        )

    async def _evaluate(self, supervisor: TrainingSupervisor, data: str, adapter: str) -> tuple[int, ...]:
        request = wp.Evaluate(data, adapter, self.params.n_score_batches, EVAL_BATCH)
        result = await supervisor.evaluate(request)
        return tuple(int(s) for s in result.batch_losses_micro)

    def _update(self, candidate: Candidate, layout: LoraLayout) -> UnitUpdate:
        blob = self.data.blobs.read(candidate.blob_hash)
        if blob is None:
            self.data.want(candidate.blob_hash)
            raise _Missing(f"the blob of unit {candidate.unit_id.hex()[:16]}")
        return unit_update(candidate, blob, layout)

    def _adapter(self, base: ModelVersion, layout: LoraLayout) -> dict[str, Int32Array]:
        if base.version == 0:
            return {s.name: np.zeros(s.shape, dtype=np.int32) for s in layout.exchanged()}
        blob = self.data.blobs.read(base.adapter_blob_hash)
        if blob is None:
            self.data.want(base.adapter_blob_hash)
            raise _Missing(f"the adapter of version {base.version}")
        update = check_update_blob(blob, layout)
        if isinstance(update, ErrorCode):
            raise _Missing(f"the adapter of version {base.version} is not valid: {update.name}")
        return update.as_dict()

    async def _worker(self) -> tuple[TrainingSupervisor, LoraLayout]:
        """The node's shared training worker (started on first use)."""
        assert self._worker_handle is not None
        supervisor, layout = await self._worker_handle.get()
        if self.data.layout is not None and self.data.layout != layout:  # header vs handshake
            log.warning("worker LoRA layout differs from the base weights' headers; using the worker's")
        self.data.layout = layout  # learning-unit blobs are checked against it from now on
        return supervisor, layout

    # -- what the producer, block import and evidence look up ---------------------------------------

    def body(self, reader: StateView, height: int) -> VersionBody:
        """The VERSION body at `height` on `reader` (its parent state), from the cached result."""
        k = round_for_height(height)
        inputs = inputs_for(self.params, reader, k)
        if inputs is None:
            return unscored_noop(self.params, k, reader.model_version())
        result = self._cache.get(inputs.key) if inputs.worth_computing else None
        return body_for(self.params, inputs, result)

    def check_block(self, block: Block, parent: StateView) -> ErrorCode | None:
        """The chain service's import check of DATA and VERSION bodies (`ChainService.learning_check`)."""
        body = block.body
        if isinstance(body, DataBody):
            return self.data.check(block, parent)
        assert isinstance(body, VersionBody)
        if not body.per_batch_scores and not body.units:
            return None  # an unscored no-op: never refused, so the chain never waits for training
        inputs = inputs_for(self.params, parent, body.round)
        if inputs is None or not inputs.worth_computing:
            return ErrorCode.BAD_BODY  # nothing to score, yet the body is scored
        result = self._cache.get(inputs.key)
        if result is None:
            if self._worker_handle is None:
                self.unchecked += 1
                return None
            if self.known_final(block.height):
                unscored = self._aggregate_now(inputs)
                if unscored is not None:  # PROTOCOL §6.5: no re-scoring of a block already final
                    self.scores_skipped += 1
                    return check_version_body(self.params, body, expected_for(inputs, unscored))
            self._requested[inputs.key] = inputs
            self._unjudged[bytes(block.hash)] = (inputs.key, block)  # judged for FALSE_SCORE once computed
            while len(self._unjudged) > MAX_RESULTS:
                self._unjudged.popitem(last=False)
            self._poke.set()
            return ErrorCode.BLOB_MISSING  # transient: computed in the background, then imported
        code = self._check_version(body, inputs, result)
        if code is not None:
            self._note_false_score(block, result)  # the reporter turns it into FALSE_SCORE evidence
        return code

    def known_final(self, height: int) -> bool:
        """A block at `height` is final as far as this node knows when it imports it: at or below
        its own final height, or at or below its weak-subjectivity checkpoint (a final block it was
        given or adopted from its configured peers: the chain this node ends up on holds that block,
        and a block at a lower height that is not its ancestor never joins that chain). A node
        syncing without a checkpoint re-scores every VERSION block it imports."""
        return height <= max(self.store.final_height, self.final_floor())

    def _aggregate_now(self, inputs: RoundInputs) -> RoundResult | None:
        """The aggregate of `inputs` on this thread, without scores (a node importing a final
        block still recomputes aggregates: the adapters it trains on depend on them); None while
        the worker's layout or a blob is missing."""
        worker_layout = self._worker_handle.layout if self._worker_handle is not None else None
        layout = worker_layout or self.data.layout  # the base model's headers give it before the worker
        examples = self.data.examples_of(inputs.test_sets)
        if layout is None or examples is None:
            return None
        try:
            units = [self._update(c, layout) for c in inputs.candidates]
            current = self._adapter(inputs.base, layout)
        except _Missing:
            return None
        agg = aggregate(self.params, units, {s.name: s.shape for s in layout.exchanged()})
        _, blob, new_hash = next_adapter(current, agg)
        self.data.blobs.put_bytes_sync(blob)
        return RoundResult(inputs.key, agg.included, agg.excluded, new_hash, len(examples), None, None)

    def _check_version(self, body: VersionBody, inputs: RoundInputs, result: RoundResult) -> ErrorCode | None:
        code = check_version_body(self.params, body, expected_for(inputs, result))
        if code is not None:
            return code
        if result.new_scores is None or result.previous_scores is None:
            return ErrorCode.BAD_BODY
        every = range(self.params.n_score_batches)  # this node scored every batch: check them all
        if not assigned_batches_agree(self.params, body, every, result.new_scores, result.previous_scores):
            return ErrorCode.BAD_BODY
        if body.units:
            self.improved += 1
        return None

    def scores_of(
        self, parent: StateView | None, claim: VersionScores, height: int
    ) -> RecomputedScores | ErrorCode | None:
        """FALSE_SCORE's oracle (`chain.consensus.slashing.ScoreOracle`; the chain service passes the
        claimed block's `parent` state and the height of the block carrying the evidence): this
        node's scores of the claim's round. No model here: None (follows the certificates, counted
        in `unchecked`); no result and the carrying block known final (`known_final`): None
        (PROTOCOL §6.5, counted in `scores_skipped`); parent unknown: ORPHAN; a round the rules do
        not score: EVIDENCE_NOT_A_FAULT; else, not computed yet: queued, BLOB_MISSING (transient:
        the block waits, it never splits honest nodes)."""
        if self._worker_handle is None:
            self.unchecked += 1
            return None
        if parent is None:
            return ErrorCode.ORPHAN
        inputs = inputs_for(self.params, parent, claim.round)
        if inputs is None or not inputs.worth_computing:
            return ErrorCode.EVIDENCE_NOT_A_FAULT
        result = self._cache.get(inputs.key)
        if result is None:
            if self.known_final(height):
                self.scores_skipped += 1
                return None
            self._requested[inputs.key] = inputs
            self._poke.set()
            return ErrorCode.BLOB_MISSING
        return _recomputed(result)

    def false_score_evidence(self, header: Header) -> Evidence | None:
        """FALSE_SCORE evidence of a VERSION block this node's import found false beyond the slash
        tolerance plus `score_tolerance_micro` (so every honest node agrees), for the reporter."""
        return self._false_scores.get(bytes(header.hash))

    def false_scores(self) -> list[Evidence]:
        """Every FALSE_SCORE evidence kept (the newest 64), also of VERSION blocks judged after their
        import waited for this node's result (the evidence reporter polls it)."""
        return list(self._false_scores.values())

    def _judge_waiting(self, key: bytes, result: RoundResult) -> None:
        """VERSION blocks refused as BLOB_MISSING while `key` was not computed are judged now: a
        false claim is kept as evidence even if the block never comes back."""
        for block_hash, (waiting_key, block) in list(self._unjudged.items()):
            if waiting_key == key:
                del self._unjudged[block_hash]
                if isinstance(block.body, VersionBody):
                    self._note_false_score(block, result)

    def _note_false_score(self, block: Block, result: RoundResult) -> None:
        mine = _recomputed(result)
        margin = self.params.score_tolerance_micro
        if not isinstance(block.body, VersionBody) or not isinstance(mine, RecomputedScores):
            return
        evidence = false_score_evidence(block)
        if evidence is not None and claim_is_false(self.params, block.body.scores, mine, margin=margin):
            log.warning(
                "VERSION block %s at height %d claims false scores", block.hash.hex()[:16], block.height
            )
            self._false_scores[bytes(block.hash)] = evidence
            while len(self._false_scores) > MAX_RESULTS:
                self._false_scores.popitem(last=False)

    def may_attest(self, block: Block, parent: StateView, me: PubKey, attesters: Sequence[PubKey]) -> bool:
        """The attester's score check (PROTOCOL §6.5): `me` may attest `block` (on its `parent`
        state) unless it is a scored VERSION block and the losses this node computed for the
        batches its VDF output assigns `me` among `attesters` (`assign_score_batches`), of the
        new or the previous adapter, are not within `score_tolerance_micro` of the claim. False
        while this node has no scores of it (no model here, or imported as final unscored)."""
        body = block.body
        if not isinstance(body, VersionBody) or not body.per_batch_scores:
            return True
        inputs = inputs_for(self.params, parent, body.round)
        result = self._cache.get(inputs.key) if inputs is not None else None
        if result is None or result.new_scores is None or result.previous_scores is None:
            return False
        plan = assign_score_batches(block.header.vdf_output, attesters, self.params.n_score_batches)
        mine = plan.get(me, ())
        return assigned_batches_agree(self.params, body, mine, result.new_scores, result.previous_scores)

    def statistics(self) -> RoundsStatistics:
        last_round, outcome, last_ms, error = self._last
        return RoundsStatistics(
            self._state,
            self.computed,
            self.failed,
            self.improved,
            self.unchecked,
            self.scores_skipped,
            len(self._cache),
            last_round,
            outcome,
            last_ms,
            error,
        )


def _recomputed(result: RoundResult) -> RecomputedScores | ErrorCode:
    """A cached result as FALSE_SCORE's oracle answers it (an unscored round proves nothing)."""
    if result.new_scores is None or result.previous_scores is None:
        return ErrorCode.EVIDENCE_NOT_A_FAULT
    return RecomputedScores(
        dict(enumerate(result.new_scores)),
        total_score(result.previous_scores),
        dict(enumerate(result.previous_scores)),
    )
