"""Integer aggregation of learning units (PROTOCOL §6.5, chain.consensus.aggregation).

Owns: tests of every aggregation rule against Python-int reference definitions, order independence,
robustness to a scaled or sign-flipped outlier, staleness refusal and malformed-unit exclusion.
"""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.consensus.aggregation import (
    INT32_MAX,
    INT32_MIN,
    WEIGHT_SHIFT,
    Aggregate,
    Exclusion,
    UnitUpdate,
    aggregate,
    apply_update,
    exact_dot,
    fedavg_weight,
    next_adapter,
    norm_sq,
    staleness_discount,
)
from chain.hashing import H
from chain.lora import update_blob
from chain.params import DEVNET, AggregationRule, ChainParams
from chain.types import UnitId

SHAPES = {"b.lora_B.weight": (3, 2), "a.lora_B.weight": (4, 2)}
ALL_RULES = list(AggregationRule)


def _params(rule: AggregationRule, **kw: int) -> ChainParams:
    return DEVNET.with_overrides({"aggregation_rule": int(rule), **kw})


def _unit(i: int, values: list[int], n: int = 10, staleness: int = 0) -> UnitUpdate:
    """A unit whose flattened tensors (names sorted) hold `values`."""
    tensors = {}
    pos = 0
    for name in sorted(SHAPES):
        size = int(np.prod(SHAPES[name]))
        tensors[name] = np.array(values[pos : pos + size], dtype=np.int32).reshape(SHAPES[name])
        pos += size
    return UnitUpdate(UnitId(H(b"unit%d" % i)), tensors, n, staleness)


def _flat(agg: Aggregate) -> list[int]:
    return [int(v) for _, a in agg.tensors for v in a.reshape(-1)]


def _ref_fedavg(units: list[UnitUpdate]) -> list[int]:
    """Python-int reference: floor(sum_i floor(w_i 2^30 / W) x_i / 2^30)."""
    weights = [u.n_examples * (1000 // (1 + u.staleness)) for u in units]
    total = sum(weights)
    q = [(w << WEIGHT_SHIFT) // total for w in weights]
    flats = [[int(v) for name in sorted(SHAPES) for v in u.tensors[name].reshape(-1)] for u in units]
    return [
        sum(qi * f[j] for qi, f in zip(q, flats, strict=True)) >> WEIGHT_SHIFT for j in range(len(flats[0]))
    ]


def _ref_coordinate(units: list[UnitUpdate], rule: AggregationRule, trim_permille: int) -> list[int]:
    flats = [[int(v) for name in sorted(SHAPES) for v in u.tensors[name].reshape(-1)] for u in units]
    n = len(units)
    out = []
    for j in range(len(flats[0])):
        column = sorted(f[j] for f in flats)
        if rule == AggregationRule.MEDIAN:
            out.append((column[(n - 1) // 2] + column[n // 2]) // 2)
        else:
            t = min(math.ceil(n * trim_permille / 1000), (n - 1) // 2)
            kept = column[t : n - t]
            out.append(sum(kept) // len(kept))
    return out


int32s = st.integers(INT32_MIN, INT32_MAX)
unit_lists = st.lists(
    st.tuples(st.lists(int32s, min_size=14, max_size=14), st.integers(1, 2**32 - 1), st.integers(0, 2)),
    min_size=1,
    max_size=7,
)


@given(raw=unit_lists, rule=st.sampled_from(ALL_RULES), seed=st.integers(0, 2**32))
def test_any_order_gives_identical_bytes(
    raw: list[tuple[list[int], int, int]], rule: AggregationRule, seed: int
) -> None:
    units = [_unit(i, v, n, s) for i, (v, n, s) in enumerate(raw)]
    params = _params(rule)
    first = aggregate(params, units, SHAPES)
    shuffled = list(units)
    random.Random(seed).shuffle(shuffled)
    second = aggregate(params, shuffled, SHAPES)
    assert first.digest() == second.digest()
    assert first.included == second.included
    assert first.excluded == second.excluded
    assert all(a.dtype == np.int32 and a.shape == SHAPES[n] for n, a in first.tensors)


@given(raw=unit_lists)
def test_fedavg_matches_the_python_int_definition_at_extreme_values(
    raw: list[tuple[list[int], int, int]],
) -> None:
    units = [_unit(i, v, n, s) for i, (v, n, s) in enumerate(raw)]
    agg = aggregate(_params(AggregationRule.FEDAVG), units, SHAPES)
    assert _flat(agg) == _ref_fedavg(sorted(units, key=lambda u: u.unit_id))
    assert {w.unit_id: w.weight for w in agg.included} == {u.unit_id: fedavg_weight(u) for u in units}


@given(
    raw=unit_lists,
    rule=st.sampled_from([AggregationRule.TRIMMED_MEAN, AggregationRule.MEDIAN]),
    trim=st.integers(0, 499),
)
def test_per_coordinate_rules_match_their_definition(
    raw: list[tuple[list[int], int, int]], rule: AggregationRule, trim: int
) -> None:
    units = [_unit(i, v, n, s) for i, (v, n, s) in enumerate(raw)]
    agg = aggregate(_params(rule, trim_fraction_permille=trim), units, SHAPES)
    assert _flat(agg) == _ref_coordinate(units, rule, trim)


def test_fedavg_weights_follow_examples_and_staleness() -> None:
    assert [staleness_discount(s) for s in range(4)] == [1000, 500, 333, 250]
    assert staleness_discount(5_000) == 1  # never zero: a weight sum is never zero
    fresh = _unit(1, [1000] * 14, n=10, staleness=0)
    old = _unit(2, [4000] * 14, n=10, staleness=1)
    agg = aggregate(_params(AggregationRule.FEDAVG), [fresh, old], SHAPES)
    weights = {w.unit_id: w.weight for w in agg.included}
    assert weights == {fresh.unit_id: 10_000, old.unit_id: 5_000}
    # (2 * 1000 + 1 * 4000) / 3 = 2000, up to the floor of the normalised weights
    assert all(1999 <= v <= 2000 for v in _flat(agg))


@pytest.mark.parametrize("rule", ALL_RULES)
def test_units_older_than_max_staleness_are_refused(rule: AggregationRule) -> None:
    params = _params(rule)
    ok = _unit(1, [100] * 14, staleness=params.max_staleness)
    stale = _unit(2, [10**6] * 14, staleness=params.max_staleness + 1)
    agg = aggregate(params, [ok, stale], SHAPES)
    assert [w.unit_id for w in agg.included] == [ok.unit_id]
    assert [(e.unit_id, e.reason) for e in agg.excluded] == [(stale.unit_id, Exclusion.STALE)]
    assert set(_flat(agg)) == {100}


@pytest.mark.parametrize("rule", ALL_RULES)
def test_malformed_units_are_excluded_not_aggregated(rule: AggregationRule) -> None:
    good = _unit(1, [7] * 14)
    wrong_dtype = dataclasses.replace(
        _unit(2, [9] * 14), tensors={n: a.astype(np.int64) for n, a in _unit(2, [9] * 14).tensors.items()}
    )
    wrong_shape = dataclasses.replace(
        _unit(3, [9] * 14), tensors={n: a.reshape(-1) for n, a in _unit(3, [9] * 14).tensors.items()}
    )
    missing = dataclasses.replace(_unit(4, [9] * 14), tensors={"a.lora_B.weight": np.zeros((4, 2), np.int32)})
    agg = aggregate(_params(rule), [good, wrong_dtype, wrong_shape, missing], SHAPES)
    assert [w.unit_id for w in agg.included] == [good.unit_id]
    assert {e.reason for e in agg.excluded} == {Exclusion.MALFORMED}
    assert set(_flat(agg)) == {7}


@pytest.mark.parametrize("rule", ALL_RULES)
def test_no_eligible_unit_gives_the_zero_update(rule: AggregationRule) -> None:
    agg = aggregate(_params(rule), [], SHAPES)
    assert agg.included == ()
    assert set(_flat(agg)) == {0}


def test_duplicate_unit_ids_are_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="duplicate unit ids"):
        aggregate(DEVNET, [_unit(1, [0] * 14), _unit(1, [1] * 14)], SHAPES)


# -- robustness ----------------------------------------------------------------------------------

P = 4096
BIG = {"w": (64, 64)}


def _honest(n: int, seed: int = 7) -> tuple[list[UnitUpdate], np.ndarray]:
    """n honest updates around one direction (fixed point ~ 2^20 scale), and their true mean."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(0, 1 << 20, P)
    units = []
    for i in range(n):
        values = np.rint(direction + rng.normal(0, 1 << 19, P)).astype(np.int32)
        units.append(UnitUpdate(UnitId(H(b"honest%d" % i)), {"w": values.reshape(64, 64)}, 100, 0))
    mean = np.mean([u.tensors["w"].reshape(-1).astype(np.float64) for u in units], axis=0)
    return units, mean


def _attacker(honest: list[UnitUpdate], factor: int) -> UnitUpdate:
    values = np.clip(honest[0].tensors["w"].astype(np.int64) * factor, INT32_MIN, INT32_MAX).astype(np.int32)
    return UnitUpdate(UnitId(H(b"attacker")), {"w": values}, 100, 0)


def _flat_of(agg: Aggregate) -> np.ndarray:
    return agg.as_dict()["w"].reshape(-1).astype(np.float64)


def _distance(agg: Aggregate, reference: np.ndarray, scale: np.ndarray) -> float:
    return float(np.linalg.norm(_flat_of(agg) - reference) / np.linalg.norm(scale))


@pytest.mark.parametrize("factor", [-1, -10, 20], ids=["sign-flip", "sign-flip-x10", "scale-x20"])
@pytest.mark.parametrize(
    "rule", [AggregationRule.TRIMMED_MEAN, AggregationRule.MEDIAN, AggregationRule.NORM_FILTERED_FEDAVG]
)
def test_robust_rules_drop_an_outlier_that_pulls_fedavg_away(rule: AggregationRule, factor: int) -> None:
    honest, mean = _honest(10)
    attacker = _attacker(honest, factor)
    units = [*honest, attacker]
    fedavg = aggregate(_params(AggregationRule.FEDAVG), units, BIG)
    robust = aggregate(_params(rule), units, BIG)
    assert attacker.unit_id in {w.unit_id for w in fedavg.included}
    # the pull of one attacker: distance to the same rule over the honest units only
    fedavg_pull = _distance(fedavg, _flat_of(aggregate(_params(AggregationRule.FEDAVG), honest, BIG)), mean)
    robust_pull = _distance(robust, _flat_of(aggregate(_params(rule), honest, BIG)), mean)
    assert fedavg_pull > 0.15  # fedavg is pulled away by one unit of eleven
    assert robust_pull < 0.1
    assert robust_pull < fedavg_pull / 2
    assert _distance(robust, mean, mean) < 0.15  # and stays near the honest mean
    assert attacker.unit_id in {e.unit_id for e in robust.excluded}
    assert attacker.unit_id not in {w.unit_id for w in robust.included}
    assert len(robust.included) == 10  # no honest unit is excluded


def test_norm_filter_reasons() -> None:
    honest, _ = _honest(6)
    scaled, flipped = (
        _attacker(honest, 20),
        dataclasses.replace(_attacker(honest, -1), unit_id=UnitId(H(b"f"))),
    )
    agg = aggregate(_params(AggregationRule.NORM_FILTERED_FEDAVG), [*honest, scaled, flipped], BIG)
    reasons = {e.unit_id: e.reason for e in agg.excluded}
    assert reasons == {scaled.unit_id: Exclusion.NORM_OUTLIER, flipped.unit_id: Exclusion.DIRECTION_OUTLIER}


# -- exact helpers -------------------------------------------------------------------------------


@given(st.lists(st.tuples(int32s, int32s), min_size=0, max_size=50))
def test_exact_dot_and_norm_match_python_ints(pairs: list[tuple[int, int]]) -> None:
    a = np.array([p[0] for p in pairs], dtype=np.int32)
    b = np.array([p[1] for p in pairs], dtype=np.int32)
    assert exact_dot(a, b) == sum(x * y for x, y in pairs)
    unit = UnitUpdate(UnitId(H(b"n")), {"v": a}, 1, 0)
    assert norm_sq(unit, ["v"]) == sum(x * x for x, _ in pairs)


def test_exact_norm_of_a_long_extreme_vector_does_not_overflow() -> None:
    n = (1 << 20) + 5  # more than one limb chunk
    a = np.full(n, INT32_MIN, dtype=np.int32)
    assert exact_dot(a, a) == n * 2**62


def test_apply_update_adds_and_clamps() -> None:
    adapter = {"w": np.array([INT32_MAX - 1, 5, INT32_MIN + 1], dtype=np.int32)}
    update = {"w": np.array([10, -7, -10], dtype=np.int32)}
    assert apply_update(adapter, update)["w"].tolist() == [INT32_MAX, -2, INT32_MIN]
    with pytest.raises(ValueError, match="different tensor names"):
        apply_update(adapter, {"x": update["w"]})


def test_next_adapter_is_the_canonical_blob_of_the_sum() -> None:
    current = {n: np.full(SHAPES[n], 5, dtype=np.int32) for n in SHAPES}
    agg = aggregate(_params(AggregationRule.FEDAVG), [_unit(1, list(range(14)))], SHAPES)
    tensors, blob, blob_hash = next_adapter(current, agg)
    assert _flat(Aggregate(tuple(sorted(tensors.items())), (), ())) == [v + 5 for v in range(14)]
    assert bytes(blob_hash) == bytes(H(blob))
    assert blob == update_blob(tensors)
