#!/usr/bin/env python3
"""The devnet's bundled sample data: small templated prompt/completion tasks, license-clean by
construction (every line is generated here from a seeded RNG; no text is copied from anywhere).

Writes `OUT/nodeK.jsonl` (one non-IID training shard per node: most of a node's examples come from
"its" tasks, the rest from all tasks) and `OUT/test.jsonl` (a held-out test set, every task equally,
no example of it in any shard). The same arguments give byte-identical files. The committed copy
under data/sample/ was made with the defaults:

    .venv/bin/python scripts/make_sample_data.py --out data/sample

`scripts/devnet up` uses data/sample/ for up to as many nodes as it holds shards, and runs this script
into the devnet directory for more.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"


def _word(rng: random.Random) -> str:
    """A pronounceable made-up word of 2 or 3 syllables (thousands of distinct ones)."""
    return "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(rng.randint(2, 3)))


Task = Callable[[random.Random], tuple[str, str]]


def _add(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return f"{a}+{b}=", str(a + b)


def _sub(rng: random.Random) -> tuple[str, str]:
    a, b = sorted((rng.randint(10, 99), rng.randint(10, 99)), reverse=True)
    return f"{a}-{b}=", str(a - b)


def _reverse(rng: random.Random) -> tuple[str, str]:
    word = _word(rng)
    return f"rev {word}:", f" {word[::-1]}"


def _upper(rng: random.Random) -> tuple[str, str]:
    word = _word(rng)
    return f"up {word}:", f" {word.upper()}"


def _km(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(2, 999)
    return f"{n} km in m:", f" {n * 1000}"


def _hours(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(2, 999)
    return f"{n} h in min:", f" {n * 60}"


TASKS: tuple[Task, ...] = (_add, _sub, _reverse, _upper, _km, _hours)


def _line(prompt: str, completion: str) -> str:
    return json.dumps({"prompt": prompt, "completion": completion}, ensure_ascii=False)


def make(out: Path, nodes: int, per_node: int, n_test: int, seed: int, own_share: float) -> None:
    """Write the shards and the test set (see the module docstring)."""
    rng = random.Random(seed)
    test: list[str] = []
    seen: set[str] = set()
    per_task = -(-n_test // len(TASKS))
    for task in TASKS:  # the held-out set first: every task equally, all distinct
        made = 0
        while made < per_task:
            line = _line(*task(rng))
            if line not in seen:
                seen.add(line)
                test.append(line)
                made += 1
    rng.shuffle(test)
    out.mkdir(parents=True, exist_ok=True)
    (out / "test.jsonl").write_text("\n".join(test[:n_test]) + "\n")
    for k in range(nodes):
        own = [t for i, t in enumerate(TASKS) if i % nodes == k] or [TASKS[k % len(TASKS)]]
        lines: list[str] = []
        while len(lines) < per_node:
            task = rng.choice(own) if rng.random() < own_share else rng.choice(TASKS)
            line = _line(*task(rng))
            if line not in seen:  # never a test example, never a repeat
                seen.add(line)
                lines.append(line)
        (out / f"node{k}.jsonl").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--per-node", type=int, default=400, help="training examples per shard")
    ap.add_argument("--test", type=int, default=120, help="held-out test examples")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--own-share", type=float, default=0.8, help="share of a shard from its own tasks")
    args = ap.parse_args()
    if not 1 <= args.nodes <= 64 or args.per_node < 1 or args.test < 1 or not 0 <= args.own_share <= 1:
        raise SystemExit("error: --nodes in 1..64, --per-node and --test >= 1, --own-share in [0, 1]")
    make(args.out, args.nodes, args.per_node, args.test, args.seed, args.own_share)
    print(f"wrote {args.nodes} shards of {args.per_node} and {args.test} test examples to {args.out}")


if __name__ == "__main__":
    main()
