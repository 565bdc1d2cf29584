"""Scores of VERSION blocks: batches, attester assignment, tolerances, the improve-or-no-op decision,
the pool shares and the VERSION body check (PROTOCOL §5.1, §5.3, §6.5).

Owns: how the active test set splits into `n_score_batches` batches, which batches each attester
recomputes (from the VDF output), when recomputed scores agree with claimed ones
(`score_tolerance_micro`) and when they prove a false score (`score_slash_tolerance_micro`), whether
a version improves or is a no-op, how the learning and data pools are shared, and the body check that
compares a VERSION body with what the validator computed. Must not: evaluate a model (the training
worker does, returning per-batch mean losses in micro-units), read state or blobs, or use floats.
Scores are losses: lower is better. The rules and their reasons are in docs/learning.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from chain.block import Excluded, UnitWeight, VersionBody
from chain.consensus import reputation
from chain.consensus.reputation import PENALISED
from chain.consensus.rewards import split_floor
from chain.errors import ErrorCode
from chain.hashing import H
from chain.params import ChainParams
from chain.types import BlobHash, Hash32, PubKey, Round, UnitId

_ASSIGN_TAG: Final = b"LC/score-batches/1"


class VersionOutcome(IntEnum):
    """What a VERSION block of a round must be (§6.5). Only IMPROVED pays the learning pool."""

    IMPROVED = 1
    NOOP_STALE_BASE = 2  # a newer version became current after this round's inputs were fixed
    NOOP_FEW_UNITS = 3  # fewer than max(1, min_units_per_version) units in the aggregate
    NOOP_NO_TEST_SET = 4  # fewer active test examples than score batches
    NOOP_NO_IMPROVEMENT = 5  # scored, and the new adapter's loss is not lower

    @property
    def scored(self) -> bool:
        return self in (VersionOutcome.IMPROVED, VersionOutcome.NOOP_NO_IMPROVEMENT)


def batch_bounds(n_examples: int, n_batches: int) -> list[tuple[int, int]]:
    """Contiguous batches of the test set in its order: batch i is [i*n//k, (i+1)*n//k) (the
    training worker's `evaluate` splits the same way)."""
    return [(i * n_examples // n_batches, (i + 1) * n_examples // n_batches) for i in range(n_batches)]


def total_score(per_batch: Sequence[int]) -> int:
    """floor(mean of the per-batch mean losses): checkable from the body alone."""
    if not per_batch:
        raise ValueError("no batch scores")
    return sum(per_batch) // len(per_batch)


def inputs_round(params: ChainParams, version_round: int) -> int | None:
    """The round whose final TX and DATA blocks fix the inputs of round `version_round`'s version
    (its units and test set, PROTOCOL §6.5 timing), or None in the first rounds (an unscored no-op)."""
    r = version_round - params.version_lag_rounds
    return r if r >= 0 else None


@dataclass(frozen=True, slots=True)
class AnnouncedUnit:
    """A learning unit as the chain knows it: the round of the TX block that included it and the
    number of the version it was trained from (resolved from `base_version_id` by the caller)."""

    unit_id: UnitId
    round: int
    base_version: int


def candidate_units(
    params: ChainParams,
    version_round: int,
    base_version: int,
    announced: Sequence[AnnouncedUnit],
    consumed: frozenset[bytes],
) -> list[tuple[UnitId, int]]:
    """(unit id, staleness) of the units round `version_round`'s version aggregates, sorted by id:
    included in a TX block up to the inputs round, not consumed by an earlier version, and trained
    from a version at most `max_staleness` before `base_version` (the version current when the
    inputs were fixed, which the new version builds on)."""
    last = inputs_round(params, version_round)
    if last is None:
        return []
    out = [
        (u.unit_id, base_version - u.base_version)
        for u in announced
        if u.round <= last
        and bytes(u.unit_id) not in consumed
        and 0 <= base_version - u.base_version <= params.max_staleness
    ]
    return sorted(out, key=lambda c: bytes(c[0]))


def assign_score_batches(
    vdf_output: bytes, attesters: Sequence[PubKey], n_batches: int
) -> dict[PubKey, tuple[int, ...]]:
    """Which batches each attester recomputes: attesters and batches are each ordered by a hash of
    the VDF output (unpredictable before it), then dealt round robin over max(attesters, batches)
    turns, so every attester gets at least one batch and every batch at least one attester."""
    if n_batches < 1:
        raise ValueError("n_batches must be at least 1")
    people = sorted(set(attesters), key=lambda p: H(_ASSIGN_TAG + bytes(vdf_output) + bytes(p)))
    if not people:
        return {}
    batches = sorted(
        range(n_batches), key=lambda b: H(_ASSIGN_TAG + bytes(vdf_output) + b.to_bytes(2, "big"))
    )
    out: dict[PubKey, set[int]] = {p: set() for p in people}
    for turn in range(max(len(people), n_batches)):
        out[people[turn % len(people)]].add(batches[turn % n_batches])
    return {p: tuple(sorted(b)) for p, b in out.items()}


def within_tolerance(params: ChainParams, claimed: Sequence[int], recomputed: Mapping[int, int]) -> bool:
    """An attester's check: each batch it recomputed is within `score_tolerance_micro` of the claim."""
    return all(
        0 <= b < len(claimed) and abs(claimed[b] - score) <= params.score_tolerance_micro
        for b, score in recomputed.items()
    )


def assigned_batches_agree(
    params: ChainParams,
    body: VersionBody,
    batches: Sequence[int],
    new_scores: Sequence[int],
    previous_scores: Sequence[int],
) -> bool:
    """An attester's vote check of a scored VERSION body (§6.5): on each of its assigned `batches`
    both the new and the previous adapter's claimed losses are within `score_tolerance_micro` of
    its own (`new_scores`/`previous_scores`: this node's per-batch losses, every batch)."""
    return within_tolerance(
        params, body.per_batch_scores, {b: new_scores[b] for b in batches}
    ) and within_tolerance(params, body.previous_batch_scores, {b: previous_scores[b] for b in batches})


def noop_before_scoring(
    params: ChainParams, *, n_included: int, base_is_current: bool, n_test_examples: int
) -> VersionOutcome | None:
    """The no-op outcomes that need no evaluation, in this order; None when scores must decide."""
    if not base_is_current:
        return VersionOutcome.NOOP_STALE_BASE
    if n_included < max(1, params.min_units_per_version):
        return VersionOutcome.NOOP_FEW_UNITS
    if n_test_examples < params.n_score_batches:
        return VersionOutcome.NOOP_NO_TEST_SET
    return None


def decide_by_scores(new_total: int, previous_total: int) -> VersionOutcome:
    """IMPROVED only when the new adapter's loss is strictly lower on the same test set."""
    return VersionOutcome.IMPROVED if new_total < previous_total else VersionOutcome.NOOP_NO_IMPROVEMENT


def learning_pool_shares(
    params: ChainParams, outcome: VersionOutcome, included: Sequence[UnitWeight]
) -> list[tuple[UnitId, int]]:
    """Unit authors' shares of `reward_learning_pool`, by aggregation weight, only if IMPROVED (the
    floor remainder is not minted, see chain.consensus.rewards)."""
    if outcome != VersionOutcome.IMPROVED:
        return []
    shares, _ = split_floor(params.reward_learning_pool, [(w.unit_id, w.weight) for w in included])
    return shares


def unit_reputation_deltas(
    params: ChainParams, outcome: VersionOutcome, included: Sequence[UnitWeight], excluded: Sequence[Excluded]
) -> list[tuple[UnitId, int]]:
    """Reputation moves for unit authors (§5.2), by unit id in id order: +`reputation_unit_bonus`
    per included unit and -`reputation_unit_penalty` per unit the rule rejected (malformed, an
    outlier, rarely kept), only when the version IMPROVED: a no-op consumes no units (they stay
    candidates until stale), so judging them then would count them again next round. Staleness
    is no fault. The caller applies them to authors that are validators, clamped (reputation.clamp)."""
    if outcome != VersionOutcome.IMPROVED:
        return []
    moves = [(w.unit_id, reputation.unit_move(params, None)) for w in included]
    moves += [(e.unit_id, reputation.unit_move(params, e.reason)) for e in excluded if e.reason in PENALISED]
    return sorted(moves, key=lambda m: bytes(m[0]))


def data_pool_shares(params: ChainParams, accepted: Sequence[tuple[UnitId, int]]) -> list[tuple[UnitId, int]]:
    """Data authors' shares of `reward_data_pool`, by accepted (selected) examples."""
    shares, _ = split_floor(params.reward_data_pool, list(accepted))
    return shares


@dataclass(frozen=True, slots=True)
class ExpectedVersion:
    """What the validator computed for this round's VERSION block from final inputs (§6.5)."""

    round: Round
    base_version_id: Hash32  # the current version: every VERSION body names it (the state checks)
    base_is_current: bool  # the inputs were fixed on that same version (else a stale-base no-op)
    current_adapter_hash: BlobHash  # a no-op keeps it
    included: tuple[UnitWeight, ...]  # from chain.consensus.aggregation.aggregate, sorted by id
    new_adapter_hash: BlobHash  # blob hash of current adapter + aggregate
    n_test_examples: int
    excluded: tuple[Excluded, ...] = ()  # the aggregate's exclusions, sorted by id


def check_version_body_stateless(params: ChainParams, body: VersionBody) -> ErrorCode | None:
    """The parts of the VERSION rules a body shows by itself (for `check_fl_body_stateless`, and so
    provable by INVALID_BLOCK evidence): included units strictly increasing by id with positive
    weights, excluded units strictly increasing by id and none of them included; either unscored
    (no batches of either adapter, equal totals, no units, no exclusions) or `n_score_batches`
    batch scores of each adapter with `total_score` and `previous_score` their floored means;
    units listed only when the total improves on the previous, exclusions only with units."""
    ids = [bytes(w.unit_id) for w in body.units]
    if any(a >= b for a, b in itertools.pairwise(ids)) or any(w.weight <= 0 for w in body.units):
        return ErrorCode.BAD_BODY
    out = [bytes(e.unit_id) for e in body.excluded]
    if any(a >= b for a, b in itertools.pairwise(out)) or set(out) & set(ids):
        return ErrorCode.BAD_BODY
    if body.excluded and not body.units:
        return ErrorCode.BAD_BODY  # a no-op consumes no units, so it judges none
    if not body.per_batch_scores and not body.previous_batch_scores:
        unscored = not body.units and body.total_score == body.previous_score
        return None if unscored else ErrorCode.BAD_BODY
    n = params.n_score_batches
    if len(body.per_batch_scores) != n or len(body.previous_batch_scores) != n:
        return ErrorCode.BAD_BODY
    if body.total_score != total_score(body.per_batch_scores):
        return ErrorCode.BAD_BODY
    if body.previous_score != total_score(body.previous_batch_scores):
        return ErrorCode.BAD_BODY
    improved = decide_by_scores(body.total_score, body.previous_score) == VersionOutcome.IMPROVED
    return None if improved == bool(body.units) else ErrorCode.BAD_BODY


def check_version_body(params: ChainParams, body: VersionBody, expected: ExpectedVersion) -> ErrorCode | None:
    """BAD_BODY unless the body is the version the rules make of `expected`: exact unit weights,
    exclusions (with their reasons) and adapter hash, consistent totals, and the outcome its scores
    imply. Whether the scores are true is the attesters' check (`assigned_batches_agree`) and
    FALSE_SCORE's (`chain.consensus.slashing.claim_is_false`)."""
    stateless = check_version_body_stateless(params, body)
    if stateless is not None:
        return stateless
    if (body.round, bytes(body.base_version_id)) != (expected.round, bytes(expected.base_version_id)):
        return ErrorCode.BAD_BODY
    if body.aggregation_rule != params.aggregation_rule:
        return ErrorCode.BAD_BODY
    early = noop_before_scoring(
        params,
        n_included=len(expected.included),
        base_is_current=expected.base_is_current,
        n_test_examples=expected.n_test_examples,
    )
    if early is not None:
        unscored = not body.per_batch_scores and body.total_score == body.previous_score
        keeps = bytes(body.new_adapter_blob_hash) == bytes(expected.current_adapter_hash)
        return None if (not body.units and unscored and keeps) else ErrorCode.BAD_BODY
    if not body.per_batch_scores:
        return ErrorCode.BAD_BODY  # the rules make a scored body here (stateless: both lists complete)
    if decide_by_scores(body.total_score, body.previous_score) == VersionOutcome.IMPROVED:
        ok = (
            body.units == expected.included
            and body.excluded == expected.excluded
            and bytes(body.new_adapter_blob_hash) == bytes(expected.new_adapter_hash)
        )
    else:
        ok = not body.units and bytes(body.new_adapter_blob_hash) == bytes(expected.current_adapter_hash)
    return None if ok else ErrorCode.BAD_BODY


@dataclass(frozen=True, slots=True)
class RecomputedScores:
    """This node's own evaluation of a VERSION block: per-batch losses of its new adapter (batch
    index -> micro) and, when it scored the whole test set, the previous adapter's total and
    per-batch losses."""

    per_batch: Mapping[int, int]
    previous_total: int | None = None
    previous_per_batch: Mapping[int, int] | None = None
