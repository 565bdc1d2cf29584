"""The inputs and the outcome of one coming VERSION block, read from a state (PROTOCOL §6.5 timing).

Owns: `RoundInputs` (what round k's version aggregates and is scored on, fixed `version_lag_rounds`
earlier: the learning units registered in TX blocks up to the inputs round and unused, their
staleness, the version current at that point, and the test sets of the DATA blocks up to it),
`inputs_for`, `RoundResult` (the aggregate and the scores this node computed), `body_for` (the
VERSION body a result makes), `expected_for` (what `scoring.check_version_body` compares with) and
`unit_update` (a candidate's aggregation input from its blob's bytes).
Must not: evaluate, read blobs or wait (linguachaind.services.rounds does); every function here is a
pure read of the state passed in, so every node computes the same inputs from the same chain.

Why the parent state is enough: units registered after the inputs round are left out by height,
and a unit consumed after it means a version changed the model after it, which makes the block a
stale-base no-op anyway; so the inputs read from a VERSION block's parent state equal the inputs as
they were at the inputs round whenever they matter.
"""

from __future__ import annotations

from dataclasses import dataclass

from chain.block import UnitWeight, VersionBody
from chain.consensus.aggregation import Excluded, UnitUpdate
from chain.consensus.scoring import (
    AnnouncedUnit,
    ExpectedVersion,
    VersionOutcome,
    candidate_units,
    decide_by_scores,
    inputs_round,
    total_score,
)
from chain.errors import ErrorCode
from chain.hashing import H
from chain.header import round_for_height
from chain.lora import LoraLayout, check_update_blob
from chain.params import ChainParams
from chain.state import keys, learning
from chain.state.model import ModelVersion, UnitKind, UnitRecord
from chain.state.view import StateView, load
from chain.types import BlobHash, Hash32, Micro, Round, UnitId


@dataclass(frozen=True, slots=True)
class Candidate:
    unit_id: UnitId
    staleness: int
    blob_hash: BlobHash
    n_examples: int
    byte_size: int  # declared by the unit: a blob of another length is excluded as MALFORMED


def unit_update(candidate: Candidate, blob: bytes, layout: LoraLayout) -> UnitUpdate:
    """The aggregation input of one candidate from its blob: no tensors (so `aggregate` excludes
    it as MALFORMED and the author loses reputation) when the blob does not parse for the chain's
    layout or its length is not the unit's declared `byte_size` (finding 9 of issue 10: the
    mempool and the blob store check the size, but a proposer's TX block need not have; every
    node recomputes the aggregate, so this is a consensus rule of VERSION blocks)."""
    update = (
        check_update_blob(blob, layout) if len(blob) == candidate.byte_size else ErrorCode.BLOB_SIZE_MISMATCH
    )
    tensors = {} if isinstance(update, ErrorCode) else update.as_dict()
    return UnitUpdate(candidate.unit_id, tensors, candidate.n_examples, candidate.staleness)


@dataclass(frozen=True, slots=True)
class RoundInputs:
    """The inputs of round `round`'s version as the state shows them."""

    round: int
    inputs_height: int  # the DATA block of the inputs round: test sets up to here
    base: ModelVersion  # the current version (every VERSION body names it)
    base_is_current: bool  # no version became current after the inputs round
    candidates: tuple[Candidate, ...]  # sorted by unit id
    test_sets: tuple[Hash32, ...]  # newest first

    @property
    def key(self) -> bytes:
        """Equal keys, equal results (the round number itself does not change the outcome)."""
        parts = [bytes(self.base.version_id), b"\x01" if self.base_is_current else b"\x00"]
        parts += [bytes(c.unit_id) + c.staleness.to_bytes(8, "big") for c in self.candidates]
        parts += [b"T" + bytes(t) for t in self.test_sets]
        return H(b"".join(parts))

    @property
    def worth_computing(self) -> bool:
        """False when the rules make an unscored no-op whatever the units hold (stale base, no unit)."""
        return self.base_is_current and bool(self.candidates) and bool(self.test_sets)


@dataclass(frozen=True, slots=True)
class Pending:
    """An unused learning unit of a state with the number of the version it was trained from."""

    unit_id: UnitId
    record: UnitRecord
    base_version: int


def pending_units(params: ChainParams, reader: StateView) -> list[Pending]:
    """Every unused learning unit trained from a version at most `max_staleness` before the current
    one (one scan of the units, shared by the rounds a caller looks at)."""
    out = []
    for key, raw in reader.items(keys.UNIT):
        rec = load(UnitRecord, raw)
        if rec.kind != UnitKind.LEARNING or rec.used_height != 0:
            continue
        base = learning.version_number(reader, rec.base_version_id, params.max_staleness)
        if base is not None:  # else too old (or unknown): never a candidate again
            out.append(Pending(UnitId(key[len(keys.UNIT) :]), rec, base))
    return out


def inputs_for(
    params: ChainParams, reader: StateView, version_round: int, pending: list[Pending] | None = None
) -> RoundInputs | None:
    """The inputs of `version_round`'s VERSION block on `reader` (its parent state), or None in
    the first `version_lag_rounds` rounds (no inputs: an unscored no-op). `pending`: the state's
    `pending_units`, when the caller already has them."""
    r = inputs_round(params, version_round)
    if r is None:
        return None
    last_tx, data_height = 3 * r + 1, 3 * r + 2
    current = reader.model_version()
    units = [
        p
        for p in (pending if pending is not None else pending_units(params, reader))
        if p.record.height <= last_tx
    ]
    records = {bytes(p.unit_id): p.record for p in units}
    announced = [AnnouncedUnit(p.unit_id, round_for_height(p.record.height), p.base_version) for p in units]
    chosen = candidate_units(params, version_round, int(current.version), announced, frozenset())
    candidates = tuple(
        Candidate(u, s, r.blob_hash, int(r.n_examples), int(r.byte_size))
        for u, s in chosen
        for r in (records[bytes(u)],)
    )
    sets = learning.recent_test_sets(reader, data_height, params.max_test_examples)
    return RoundInputs(
        round=version_round,
        inputs_height=data_height,
        base=current,
        base_is_current=current.height <= data_height,
        candidates=candidates,
        test_sets=tuple(e.test_set_hash for e in sets),
    )


@dataclass(frozen=True, slots=True)
class RoundResult:
    """What this node computed for one `RoundInputs.key`: the aggregate's units and new adapter,
    and (when scored) the per-batch losses of the new and the previous adapter."""

    key: bytes
    included: tuple[UnitWeight, ...]
    excluded: tuple[Excluded, ...]
    new_adapter_hash: BlobHash
    n_test_examples: int
    new_scores: tuple[int, ...] | None  # None: an unscored no-op (too few units or examples)
    previous_scores: tuple[int, ...] | None
    seconds: float = 0.0

    @property
    def outcome(self) -> VersionOutcome | None:
        """IMPROVED or NOOP_NO_IMPROVEMENT when scored, else None."""
        if self.new_scores is None or self.previous_scores is None:
            return None
        return decide_by_scores(total_score(self.new_scores), total_score(self.previous_scores))


def body_for(params: ChainParams, inputs: RoundInputs, result: RoundResult | None) -> VersionBody:
    """The VERSION body of `inputs.round`: improved, a scored no-op, or (no result, nothing to
    score) the unscored no-op that keeps the chain going without waiting for training."""
    base = inputs.base
    outcome = result.outcome if result is not None else None
    if result is None or outcome is None or result.new_scores is None or result.previous_scores is None:
        return unscored_noop(params, inputs.round, base)
    improved = outcome == VersionOutcome.IMPROVED
    return VersionBody(
        round=Round(inputs.round),
        base_version_id=base.version_id,
        units=result.included if improved else (),
        aggregation_rule=params.aggregation_rule,
        new_adapter_blob_hash=result.new_adapter_hash if improved else base.adapter_blob_hash,
        per_batch_scores=tuple(Micro(s) for s in result.new_scores),
        total_score=total_score(result.new_scores),
        previous_score=total_score(result.previous_scores),
        excluded=result.excluded if improved else (),
        previous_batch_scores=tuple(Micro(s) for s in result.previous_scores),
    )


def unscored_noop(params: ChainParams, version_round: int, base: ModelVersion) -> VersionBody:
    """No units, no batches, the current adapter and score repeated in both totals."""
    return VersionBody(
        round=Round(version_round),
        base_version_id=base.version_id,
        units=(),
        aggregation_rule=params.aggregation_rule,
        new_adapter_blob_hash=base.adapter_blob_hash,
        per_batch_scores=(),
        total_score=base.score,
        previous_score=base.score,
    )


def expected_for(inputs: RoundInputs, result: RoundResult) -> ExpectedVersion:
    return ExpectedVersion(
        round=Round(inputs.round),
        base_version_id=inputs.base.version_id,
        base_is_current=inputs.base_is_current,
        current_adapter_hash=inputs.base.adapter_blob_hash,
        included=result.included,
        new_adapter_hash=result.new_adapter_hash,
        n_test_examples=result.n_test_examples,
        excluded=result.excluded,
    )
