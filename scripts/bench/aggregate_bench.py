#!/usr/bin/env python3
"""Aggregation benchmark: the four integer rules of chain.consensus.aggregation on 10 and 100 units
of about 1M parameters each, beside one plain numpy pass over the same data in the same run.

Owns: measurements only (prints a table). Must not: be imported by the project.

The baseline is what a non-consensus FedAvg would do: one float64 pass that adds every unit's values
and divides (`acc += unit` per unit, then `/ n`). Each rule is printed as seconds and as a ratio to
that baseline, so runs on different machines compare. Also timed: the exact squared norms the
norm filter needs and the DATA selection of 512 examples.

    nice -n 10 .venv/bin/python scripts/bench/aggregate_bench.py            # 10 and 100 units
    nice -n 10 .venv/bin/python scripts/bench/aggregate_bench.py --quick    # 10 units only
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from chain.consensus.aggregation import UnitUpdate, aggregate, norm_sq
from chain.consensus.data_selection import select_test_set
from chain.hashing import H
from chain.params import DEVNET, AggregationRule
from chain.types import BlobHash, ChainId, PubKey, TimestampMs, UnitId
from chain.units import DataFormat, DataUnit

# 16 LoRA B matrices of a rank-4 adapter: 16 x 16384 x 4 = 1,048,576 parameters
SHAPES = {f"layers.{i}.lora_B.weight": (16_384, 4) for i in range(16)}


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of `repeat` runs, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def make_units(n: int, seed: int = 1) -> list[UnitUpdate]:
    rng = np.random.default_rng(seed)
    direction = {k: rng.normal(0, 1 << 20, s) for k, s in SHAPES.items()}
    units = []
    for i in range(n):
        tensors = {
            k: np.rint(d + rng.normal(0, 1 << 19, d.shape)).astype(np.int32) for k, d in direction.items()
        }
        units.append(UnitUpdate(UnitId(H(b"bench%d" % i)), tensors, 100 + i, i % 3))
    return units


def baseline(units: list[UnitUpdate]) -> dict[str, np.ndarray]:
    out = {}
    for name in SHAPES:
        acc = np.zeros(SHAPES[name], dtype=np.float64)
        for u in units:
            acc += u.tensors[name]
        out[name] = acc / len(units)
    return out


def bench_rules(n: int, repeat: int) -> None:
    units = make_units(n)
    params = DEVNET.with_overrides({"max_staleness": 2})
    base = timed(lambda: baseline(units), repeat)
    print(f"\n{n} units x {sum(int(np.prod(s)) for s in SHAPES.values()):,} parameters")
    print(f"  {'plain numpy float64 mean (baseline)':<38} {base:8.3f} s   1.00x")
    for rule in AggregationRule:
        p = params.with_overrides({"aggregation_rule": int(rule)})
        t = timed(functools.partial(aggregate, p, units, SHAPES), repeat)
        print(f"  {rule.name.lower().replace('_', '-'):<38} {t:8.3f} s {t / base:7.2f}x")
    names = sorted(SHAPES)
    t = timed(lambda: [norm_sq(u, names) for u in units], repeat)
    print(f"  {'exact squared norms (part of norm-filtered)':<38} {t:8.3f} s {t / base:7.2f}x")


def bench_selection(repeat: int) -> None:
    rng = np.random.default_rng(2)
    words = [w for w in Path(__file__).read_text().split() if w.isalpha()]
    lines = [
        json.dumps({"text": " ".join(rng.choice(words, int(rng.integers(10, 40))))}).encode()
        for _ in range(512)
    ]
    blob = b"\n".join(lines) + b"\n"
    unit = DataUnit(
        ChainId("lc-devnet"), PubKey(b"\x01" * 32), BlobHash(H(blob)), 512, len(blob),
        DataFormat.JSONL_TEXT, 0, TimestampMs(0), 0,
    )  # fmt: skip
    select_test_set(DEVNET, [(unit, blob)])  # loads datasketch once
    t = timed(lambda: select_test_set(DEVNET, [(unit, blob)]), repeat)
    per_example_ms = t / 512 * 1e3
    print(f"\nDATA selection of 512 examples ({len(blob):,} bytes): {t:.3f} s ({per_example_ms:.2f} ms each)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 units only, one repetition")
    args = ap.parse_args()
    repeat = 1 if args.quick else 2
    for n in (10,) if args.quick else (10, 100):
        bench_rules(n, repeat)
    bench_selection(repeat)


if __name__ == "__main__":
    main()
