"""VERSION scores (PROTOCOL §5.1, §5.3, §6.5, chain.consensus.scoring): batches, attester
assignment, tolerances, the improve-or-no-op decision, pool shares and the VERSION body check."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.block import UnitWeight, VersionBody
from chain.consensus.aggregation import Excluded, Exclusion, UnitUpdate, aggregate, next_adapter
from chain.consensus.scoring import (
    AnnouncedUnit,
    ExpectedVersion,
    RecomputedScores,
    VersionOutcome,
    assign_score_batches,
    assigned_batches_agree,
    batch_bounds,
    candidate_units,
    check_version_body,
    check_version_body_stateless,
    data_pool_shares,
    decide_by_scores,
    inputs_round,
    learning_pool_shares,
    noop_before_scoring,
    total_score,
    unit_reputation_deltas,
    within_tolerance,
)
from chain.consensus.slashing import claim_is_false
from chain.errors import ErrorCode
from chain.hashing import H
from chain.params import DEVNET, AggregationRule, ChainParams
from chain.types import BlobHash, Hash32, Micro, PubKey, Round, UnitId

P = DEVNET  # n_score_batches 8, score_tolerance 20_000, slash tolerance 200_000


@given(
    vdf=st.binary(min_size=1, max_size=64),
    n_attesters=st.integers(1, 40),
    n_batches=st.integers(1, 32),
)
def test_every_attester_checks_a_batch_and_every_batch_is_checked(
    vdf: bytes, n_attesters: int, n_batches: int
) -> None:
    attesters = [PubKey(H(b"v%d" % i)) for i in range(n_attesters)]
    plan = assign_score_batches(vdf, attesters, n_batches)
    assert set(plan) == set(attesters)
    assert all(batches for batches in plan.values())
    assert set().union(*plan.values()) == set(range(n_batches))
    loads = [len(b) for b in plan.values()]
    assert max(loads) - min(loads) <= 1  # dealt evenly
    assert assign_score_batches(vdf, list(reversed(attesters)), n_batches) == plan


def test_assignment_follows_the_vdf_output() -> None:
    attesters = [PubKey(H(b"v%d" % i)) for i in range(4)]
    plans = {tuple(sorted(assign_score_batches(b"%d" % i, attesters, 8).items())) for i in range(20)}
    assert len(plans) > 10
    assert assign_score_batches(b"x", [], 8) == {}
    with pytest.raises(ValueError, match="n_batches"):
        assign_score_batches(b"x", attesters, 0)


def test_batches_match_the_worker_split() -> None:
    assert batch_bounds(10, 4) == [(0, 2), (2, 5), (5, 7), (7, 10)]
    assert total_score([1_000_000, 2_000_001]) == 1_500_000
    assert total_score([-3, 0]) == -2  # floor
    with pytest.raises(ValueError, match="no batch scores"):
        total_score([])


def test_tolerance_and_false_score_thresholds() -> None:
    claimed = [2_000_000] * 8
    body = _body(
        per_batch=claimed, total=2_000_000, previous=2_100_000, units=(UnitWeight(UnitId(H(b"u")), 5),)
    )
    assert within_tolerance(P, claimed, {0: 2_020_000, 5: 1_980_000})
    assert not within_tolerance(P, claimed, {3: 2_020_001})
    assert not within_tolerance(P, claimed, {8: 2_000_000})  # no such batch
    assert not is_false_score(body, {1: 2_200_000})
    assert is_false_score(body, {1: 2_200_001})
    assert not is_false_score(body, {1: 2_000_000}, previous=1_900_000)
    assert is_false_score(body, {1: 2_000_000}, previous=1_899_999)


def is_false_score(
    body: VersionBody,
    recomputed: dict[int, int],
    previous: int | None = None,
    previous_batches: dict[int, int] | None = None,
) -> bool:
    """FALSE_SCORE's comparison (`slashing.claim_is_false`, margin 0) of `body`'s claim with this
    node's recomputed batch losses (and the previous adapter's total and batches, when given)."""
    return claim_is_false(P, body.scores, RecomputedScores(recomputed, previous, previous_batches))


def _early(
    params: ChainParams = P, n_included: int = 3, base_is_current: bool = True, n_test_examples: int = 100
) -> VersionOutcome | None:
    return noop_before_scoring(
        params, n_included=n_included, base_is_current=base_is_current, n_test_examples=n_test_examples
    )


def test_noop_outcomes_before_scoring() -> None:
    assert _early() is None
    assert _early(base_is_current=False) == VersionOutcome.NOOP_STALE_BASE
    assert _early(n_included=0) == VersionOutcome.NOOP_FEW_UNITS
    assert (
        _early(dataclasses.replace(P, min_units_per_version=3), n_included=2) == VersionOutcome.NOOP_FEW_UNITS
    )
    assert _early(n_test_examples=7) == VersionOutcome.NOOP_NO_TEST_SET
    assert decide_by_scores(1_999_999, 2_000_000) == VersionOutcome.IMPROVED
    assert decide_by_scores(2_000_000, 2_000_000) == VersionOutcome.NOOP_NO_IMPROVEMENT


def test_learning_pool_is_paid_by_weight_only_on_improvement() -> None:
    a, b = UnitId(H(b"a")), UnitId(H(b"b"))
    included = [UnitWeight(a, 3), UnitWeight(b, 1)]
    pool = P.reward_learning_pool
    assert learning_pool_shares(P, VersionOutcome.IMPROVED, included) == [(a, pool * 3 // 4), (b, pool // 4)]
    for outcome in VersionOutcome:
        if outcome != VersionOutcome.IMPROVED:
            assert learning_pool_shares(P, outcome, included) == []


def test_reputation_moves_only_when_units_are_consumed() -> None:
    a, b, c, d = (UnitId(H(x)) for x in (b"a", b"b", b"c", b"d"))
    included = [UnitWeight(a, 3)]
    excluded = [
        Excluded(b, Exclusion.NORM_OUTLIER),
        Excluded(c, Exclusion.STALE),
        Excluded(d, Exclusion.RARELY_KEPT),
    ]
    moves = dict(unit_reputation_deltas(P, VersionOutcome.IMPROVED, included, excluded))
    assert moves == {a: P.reputation_unit_bonus, b: -P.reputation_unit_penalty, d: -P.reputation_unit_penalty}
    assert unit_reputation_deltas(P, VersionOutcome.NOOP_NO_IMPROVEMENT, included, excluded) == []


def test_data_pool_is_paid_by_accepted_examples() -> None:
    a, b, c = UnitId(H(b"a")), UnitId(H(b"b")), UnitId(H(b"c"))
    shares = data_pool_shares(P, [(a, 2), (b, 1), (c, 0)])
    assert shares == [(a, P.reward_data_pool * 2 // 3), (b, P.reward_data_pool // 3)]
    assert sum(s for _, s in shares) <= P.reward_data_pool
    assert data_pool_shares(P, [(a, 0)]) == []


# -- the VERSION body check ----------------------------------------------------------------------

BASE = Hash32(H(b"version 4"))
CURRENT = BlobHash(H(b"adapter 4"))
NEW = BlobHash(H(b"adapter 4 + aggregate"))
INCLUDED = tuple(
    sorted((UnitWeight(UnitId(H(b"u1")), 1000), UnitWeight(UnitId(H(b"u2")), 500)), key=lambda w: w.unit_id)
)  # sorted by unit id, as aggregate() lists them
EXCLUDED = (Excluded(UnitId(H(b"u3")), Exclusion.NORM_OUTLIER),)  # the rule left it out
EXPECTED = ExpectedVersion(Round(7), BASE, True, CURRENT, INCLUDED, NEW, 64, EXCLUDED)


def _body(
    *,
    per_batch: list[int],
    total: int,
    previous: int,
    units: tuple[UnitWeight, ...] = INCLUDED,
    adapter: BlobHash = NEW,
    excluded: tuple[Excluded, ...] | None = None,
) -> VersionBody:
    """A body as `body_for` makes it: the exclusions beside the units (the expected ones by
    default), the previous adapter's batches all equal to `previous` when scored."""
    return VersionBody(
        round=Round(7),
        base_version_id=BASE,
        units=units,
        aggregation_rule=P.aggregation_rule,
        new_adapter_blob_hash=adapter,
        per_batch_scores=tuple(Micro(s) for s in per_batch),
        total_score=total,
        previous_score=previous,
        excluded=(EXCLUDED if units else ()) if excluded is None else excluded,
        previous_batch_scores=tuple(Micro(previous) for _ in per_batch),
    )


IMPROVED = _body(per_batch=[2_000_000] * 7 + [2_000_007], total=2_000_000, previous=2_300_000)


def test_an_improving_version_body_passes() -> None:
    assert check_version_body(P, IMPROVED, EXPECTED) is None
    assert check_version_body_stateless(P, IMPROVED) is None


def test_stateless_version_rules() -> None:
    unscored = _body(per_batch=[], total=2_100_000, previous=2_100_000, units=(), adapter=CURRENT)
    scored_noop = _body(per_batch=[2_000_000] * 8, total=2_000_000, previous=2_000_000, units=())
    assert check_version_body_stateless(P, unscored) is None
    assert check_version_body_stateless(P, scored_noop) is None
    bad = [
        dataclasses.replace(IMPROVED, units=INCLUDED[::-1]),  # not sorted by id
        dataclasses.replace(IMPROVED, units=(INCLUDED[0], INCLUDED[0])),  # repeated
        dataclasses.replace(IMPROVED, units=(UnitWeight(INCLUDED[0].unit_id, 0),)),  # zero weight
        dataclasses.replace(unscored, total_score=5),  # unequal totals without scores
        dataclasses.replace(unscored, units=INCLUDED),  # paid without a score
        dataclasses.replace(IMPROVED, per_batch_scores=IMPROVED.per_batch_scores[:7]),
        dataclasses.replace(IMPROVED, total_score=IMPROVED.total_score + 1),
        dataclasses.replace(IMPROVED, previous_score=IMPROVED.total_score),  # units without improving
        dataclasses.replace(scored_noop, previous_score=2_000_001),  # improved but lists no unit
    ]
    for body in bad:
        assert check_version_body_stateless(P, body) == ErrorCode.BAD_BODY, body


@pytest.mark.parametrize(
    "change",
    [
        {"round": Round(8)},
        {"base_version_id": Hash32(H(b"other"))},
        {"units": INCLUDED[:1]},  # a unit left out
        {"units": (UnitWeight(INCLUDED[0].unit_id, 999), INCLUDED[1])},  # a wrong weight
        {"new_adapter_blob_hash": BlobHash(H(b"wrong aggregate"))},
        {"total_score": 2_000_001},  # inconsistent with the batches
        {"per_batch_scores": (Micro(2_000_000),) * 7},  # a batch missing
        {"previous_score": 2_000_000},  # claims improvement without one
        {"excluded": ()},  # the outlier not listed (its author would escape the penalty)
        {"excluded": (Excluded(EXCLUDED[0].unit_id, Exclusion.RARELY_KEPT),)},  # a wrong reason
        {"excluded": (*EXCLUDED, Excluded(UnitId(H(b"\xffu4")), Exclusion.MALFORMED))},  # one too many
        {"previous_batch_scores": (Micro(2_300_000),) * 7},  # a previous batch missing
        {"previous_batch_scores": (Micro(2_300_001),) * 8},  # inconsistent with previous_score
    ],
)
def test_a_wrong_version_body_is_rejected(change: dict[str, object]) -> None:
    assert check_version_body(P, dataclasses.replace(IMPROVED, **change), EXPECTED) == ErrorCode.BAD_BODY  # type: ignore[arg-type]


def test_a_scored_noop_keeps_the_adapter_and_lists_no_units() -> None:
    noop = _body(per_batch=[2_000_000] * 8, total=2_000_000, previous=1_900_000, units=(), adapter=CURRENT)
    assert noop.is_noop
    assert check_version_body(P, noop, EXPECTED) is None
    paid_anyway = dataclasses.replace(noop, units=INCLUDED, new_adapter_blob_hash=NEW)
    assert check_version_body(P, paid_anyway, EXPECTED) == ErrorCode.BAD_BODY
    # skipping the scores while units and a test set exist is not allowed (no lazy no-ops)
    lazy = _body(per_batch=[], total=0, previous=0, units=(), adapter=CURRENT)
    assert check_version_body(P, lazy, EXPECTED) == ErrorCode.BAD_BODY


@pytest.mark.parametrize(
    "expected",
    [
        dataclasses.replace(EXPECTED, base_is_current=False),
        dataclasses.replace(EXPECTED, included=()),
        dataclasses.replace(EXPECTED, n_test_examples=3),
    ],
    ids=["stale-base", "no-units", "no-test-set"],
)
def test_unscored_noops_where_the_rules_make_them(expected: ExpectedVersion) -> None:
    noop = _body(per_batch=[], total=2_100_000, previous=2_100_000, units=(), adapter=CURRENT)
    assert check_version_body(P, noop, expected) is None
    assert check_version_body(P, IMPROVED, expected) == ErrorCode.BAD_BODY
    moved = dataclasses.replace(noop, new_adapter_blob_hash=NEW)
    assert check_version_body(P, moved, expected) == ErrorCode.BAD_BODY


# FALSE_SCORE evidence (the signed score leaf, its branch, the oracle): tests/unit/test_false_score.py


def test_a_version_built_by_the_rules_passes_its_check_end_to_end() -> None:
    """Units -> aggregate -> next adapter -> body; a validator recomputing the same passes it, and
    one unit's weight changed by one fails it."""
    shapes = {"m.lora_B.weight": (8, 4)}
    rng = np.random.default_rng(3)
    units = [
        UnitUpdate(
            UnitId(H(b"e2e%d" % i)),
            {"m.lora_B.weight": rng.integers(-(2**20), 2**20, (8, 4)).astype(np.int32)},
            10 + i,
            i % 2,
        )
        for i in range(4)
    ]
    current = {"m.lora_B.weight": np.zeros((8, 4), dtype=np.int32)}
    agg = aggregate(P, units, shapes)
    _, _, new_hash = next_adapter(current, agg)
    expected = ExpectedVersion(Round(7), BASE, True, CURRENT, agg.included, new_hash, 64, agg.excluded)
    scores = [1_900_000 + b for b in range(8)]
    body = _body(
        per_batch=scores,
        total=total_score(scores),
        previous=2_000_000,
        units=agg.included,
        adapter=new_hash,
        excluded=agg.excluded,
    )
    assert check_version_body(P, body, expected) is None
    bumped = (dataclasses.replace(agg.included[0], weight=agg.included[0].weight + 1), *agg.included[1:])
    assert check_version_body(P, dataclasses.replace(body, units=bumped), expected) == ErrorCode.BAD_BODY
    paid = learning_pool_shares(P, VersionOutcome.IMPROVED, body.units)
    assert [u for u, _ in paid] == [w.unit_id for w in agg.included]


def test_a_version_lists_the_units_its_rule_excluded_bit_for_bit() -> None:
    """Norm-filtered fedavg drops a x50 copy: the body must list it with NORM_OUTLIER (reputation
    moves by it, PROTOCOL §5.2); a body that hides it, or names another reason, is refused."""
    params = dataclasses.replace(P, aggregation_rule=AggregationRule.NORM_FILTERED_FEDAVG)
    shapes = {"m.lora_B.weight": (8, 4)}
    rng = np.random.default_rng(5)
    honest = rng.integers(2**10, 2**12, (8, 4)).astype(np.int32)
    tensors = [honest + i for i in range(4)] + [honest * 50]
    units = [UnitUpdate(UnitId(H(b"n%d" % i)), {"m.lora_B.weight": t}, 10, 0) for i, t in enumerate(tensors)]
    agg = aggregate(params, units, shapes)
    outlier = units[4].unit_id
    assert [(e.unit_id, e.reason) for e in agg.excluded] == [(outlier, Exclusion.NORM_OUTLIER)]
    _, _, new_hash = next_adapter({"m.lora_B.weight": np.zeros((8, 4), dtype=np.int32)}, agg)
    expected = ExpectedVersion(Round(7), BASE, True, CURRENT, agg.included, new_hash, 64, agg.excluded)
    scores = [1_900_000] * 8
    body = dataclasses.replace(
        _body(per_batch=scores, total=1_900_000, previous=2_000_000, units=agg.included, adapter=new_hash),
        aggregation_rule=params.aggregation_rule,
        excluded=agg.excluded,
    )
    assert check_version_body(params, body, expected) is None
    hidden = dataclasses.replace(body, excluded=())
    assert check_version_body(params, hidden, expected) == ErrorCode.BAD_BODY
    other = dataclasses.replace(body, excluded=(Excluded(outlier, Exclusion.DIRECTION_OUTLIER),))
    assert check_version_body(params, other, expected) == ErrorCode.BAD_BODY
    moves = dict(unit_reputation_deltas(params, VersionOutcome.IMPROVED, body.units, body.excluded))
    assert moves[outlier] == -params.reputation_unit_penalty


def test_an_attester_checks_both_adapters_on_its_assigned_batches_only() -> None:
    """PROTOCOL §6.5: an attester recomputes the batches the VDF output assigned it and attests
    only if the claimed losses of the new and the previous adapter are within `score_tolerance`."""
    mine_new = [1_900_000 + i for i in range(8)]
    mine_old = [2_000_000 + i for i in range(8)]
    off = P.score_tolerance_micro + 1
    claimed_new = [*mine_new[:3], mine_new[3] - off, *mine_new[4:]]  # batch 3 falsified
    body = dataclasses.replace(
        IMPROVED,
        per_batch_scores=tuple(Micro(s) for s in claimed_new),
        total_score=total_score(claimed_new),
        previous_batch_scores=tuple(Micro(s) for s in mine_old),
        previous_score=total_score(mine_old),
    )
    assert check_version_body_stateless(P, body) is None
    assert assigned_batches_agree(P, body, (0, 5), mine_new, mine_old)
    assert not assigned_batches_agree(P, body, (3,), mine_new, mine_old)
    old_off = [*mine_old[:6], mine_old[6] + off, mine_old[7]]
    assert not assigned_batches_agree(P, body, (6,), mine_new, old_off)  # the previous adapter's batch
    assert assigned_batches_agree(P, body, (5,), mine_new, old_off)
    near = [s + P.score_tolerance_micro for s in mine_old]
    assert assigned_batches_agree(P, body, tuple(range(8))[4:], mine_new, near)  # within tolerance


def test_a_false_previous_batch_is_a_false_score() -> None:
    limit = P.score_slash_tolerance_micro
    assert not is_false_score(IMPROVED, {}, None, {1: 2_300_000 + limit})
    assert is_false_score(IMPROVED, {}, None, {1: 2_300_000 + limit + 1})
    assert is_false_score(IMPROVED, {}, None, {7: 2_300_000 - limit - 1})


def test_inputs_are_fixed_version_lag_rounds_earlier() -> None:
    lag = P.version_lag_rounds
    assert inputs_round(P, lag + 5) == 5
    assert inputs_round(P, lag - 1) is None
    u = [UnitId(H(b"c%d" % i)) for i in range(5)]
    announced = [
        AnnouncedUnit(u[0], round=5, base_version=3),  # in time, staleness 1
        AnnouncedUnit(u[1], round=6, base_version=4),  # announced after the inputs round
        AnnouncedUnit(u[2], round=2, base_version=4),  # consumed by an earlier version
        AnnouncedUnit(u[3], round=1, base_version=1),  # staleness 3 > max_staleness 2
        AnnouncedUnit(u[4], round=0, base_version=4),  # fresh
    ]
    got = candidate_units(P, lag + 5, 4, announced, frozenset({bytes(u[2])}))
    assert got == sorted([(u[0], 1), (u[4], 0)], key=lambda c: bytes(c[0]))
    assert candidate_units(P, lag - 1, 4, announced, frozenset()) == []


def test_the_producers_empty_version_body_is_an_unscored_noop() -> None:
    """linguachaind's producer repeats the current version (its score in both totals) until the
    rounds service builds real versions: that body passes these rules wherever a no-op is due."""
    current_score = 2_345_678
    producer_noop = _body(
        per_batch=[], total=current_score, previous=current_score, units=(), adapter=CURRENT
    )
    assert check_version_body_stateless(P, producer_noop) is None
    early = dataclasses.replace(EXPECTED, included=())
    assert check_version_body(P, producer_noop, early) is None
