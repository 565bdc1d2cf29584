#!/usr/bin/env python3
"""Gossip soak on loopback (docs/networking.md): N nodes, steady load of 1-200 KB messages, peers
joining and leaving; prints a report and exits non-zero unless every valid message was delivered with
no stream error.

    .venv/bin/python scripts/p2p_soak.py --duration 300 --nodes 6 --rate 50 [--in-process]

By default every node runs in its own OS process (as real nodes run; the acceptance configuration,
as in the slow pytest) and visitors leave by SIGKILL. --in-process puts all nodes in this process,
on one core: there the publishers fall behind at 50 msg/s and the report says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the soak drivers live in tests/support

from tests.support.soak import run_soak
from tests.support.soak_procs import run_soak_procs


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load (default 300)")
    parser.add_argument("--nodes", type=int, default=6, help="core nodes (default 6)")
    parser.add_argument("--visitors", type=int, default=2, help="nodes that join and leave (default 2)")
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second (default 50)")
    parser.add_argument("--min-kb", type=int, default=1)
    parser.add_argument("--max-kb", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--in-process", action="store_true", help="all nodes in this one process")
    parser.add_argument("--processes", action="store_true", help=argparse.SUPPRESS)  # the default now
    args = parser.parse_args()
    kwargs = {"core": args.nodes, "visitors": args.visitors, "rate": args.rate, "seed": args.seed}
    kwargs |= {"min_kb": args.min_kb, "max_kb": args.max_kb}
    if args.in_process:
        report = trio.run(functools.partial(run_soak, args.duration, **kwargs))
    else:
        report = run_soak_procs(args.duration, **kwargs)
    print(json.dumps({**dataclasses.asdict(report), "ok": report.ok}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
