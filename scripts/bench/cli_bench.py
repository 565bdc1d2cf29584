"""CLI start-up benchmark: `linguachain-cli --help` against a bare interpreter start.

Owns: measurements only (prints a table; writes nothing). Must not: be imported by the node. The
tests only check that `--help` imports nothing heavy (tests/unit/test_cli_main.py); how fast it is
lives here, as a ratio against `python -c pass` measured in the same run, so runs on different
(or loaded) machines compare.

    .venv/bin/python scripts/bench/cli_bench.py            # 15 runs of each, a few seconds
    .venv/bin/python scripts/bench/cli_bench.py --runs 50
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def median_wall(cmd: Sequence[str], runs: int) -> float:
    """Median wall seconds of `runs` runs of `cmd` (after one warm-up)."""
    subprocess.run(cmd, cwd=REPO, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    base = median_wall([sys.executable, "-c", "pass"], args.runs)
    rows = [
        ("python -c pass (baseline)", base),
        ("python -c 'import click'", median_wall([sys.executable, "-c", "import click"], args.runs)),
        (
            "linguachain-cli --help",
            median_wall([sys.executable, "-m", "linguachain_cli.main", "--help"], args.runs),
        ),
    ]
    print(f"{'command':32} {'median s':>9} {'x baseline':>11}")
    for name, seconds in rows:
        print(f"{name:32} {seconds:9.3f} {seconds / base:10.2f}x")


if __name__ == "__main__":
    main()
