#!/usr/bin/env python3
"""Surround-vote lookup benchmark: the evidence reporter's check of one incoming vote against every
kept vote, as it was (a scan of all kept votes) and as it is (`VoteIndex.surrounding`, O(log n)).

Owns: measurements only (prints a table). Must not: be imported by the project.

The kept votes are a full evidence window of honest votes (`--validators` x `--heights`, capped at
the reporter's MAX_VOTES); the incoming votes are each validator's next vote plus one surround per
validator. Both lookups run in the same process on the same votes; the ratio old / new is the
figure to compare across machines. Both find the same faults (checked).

    .venv/bin/python scripts/bench/surround_bench.py                    # 100 validators x 80 heights
    .venv/bin/python scripts/bench/surround_bench.py --validators 20 --heights 50
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from chain.crypto import SecretKey
from chain.hashing import H
from chain.header import Attestation
from chain.params import DEVNET
from chain.types import BlockHash, Height, PubKey
from linguachaind.services.evidence import MAX_VOTES
from linguachaind.services.vote_index import VoteIndex


def vote(validator: PubKey, height: int, source: int) -> Attestation:
    """An unsigned vote (the lookup never reads the signature)."""
    target = BlockHash(H(height.to_bytes(8, "big")))
    src = BlockHash(H(source.to_bytes(8, "big")))
    return Attestation(DEVNET.chain_id, Height(height), target, Height(source), src, validator)


def old_scan(
    kept: dict[tuple[int, PubKey], Attestation], att: Attestation
) -> tuple[Attestation, Attestation] | None:
    """The reporter's check before the index (linguachaind/services/evidence.py at 0dd8e46)."""
    for (_, validator), old in list(kept.items()):
        if validator != att.validator:
            continue
        if old.source_height < att.source_height and att.height < old.height:
            return old, att
        if att.source_height < old.source_height and old.height < att.height:
            return att, old
    return None


def per_call(fn: Callable[[Attestation], object], votes: list[Attestation], repeat: int = 3) -> float:
    """Best mean seconds per call over `repeat` passes."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for att in votes:
            fn(att)
        best = min(best, (time.perf_counter() - start) / len(votes))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--validators", type=int, default=100)
    ap.add_argument("--heights", type=int, default=80)
    args = ap.parse_args()
    keys = [SecretKey.from_label(f"bench-{i}").pubkey for i in range(args.validators)]
    kept: dict[tuple[int, PubKey], Attestation] = {}
    index = VoteIndex(MAX_VOTES)
    for h in range(2, args.heights + 2):  # honest: the source is two below the target
        for pk in keys:
            att = vote(pk, h, h - 2)
            if len(kept) < MAX_VOTES:
                kept[(h, pk)] = att
                index.add(att)
    top = args.heights + 1
    incoming = [vote(pk, top + 1, top - 1) for pk in keys]  # honest next votes: no fault
    incoming += [vote(pk, top + 2, 0) for pk in keys]  # each surrounds every kept vote of its validator
    found_old = [old_scan(kept, a) is not None for a in incoming]
    found_new = [index.surrounding(a) is not None for a in incoming]
    assert found_old == found_new, "the index and the scan disagree"
    assert sum(found_new) == len(keys)
    t_old = per_call(lambda a: old_scan(kept, a), incoming)
    t_new = per_call(index.surrounding, incoming)
    shape = f"{args.validators} validators x {args.heights} heights, cap {MAX_VOTES:,}"
    print(f"kept votes: {len(kept):,} ({shape})")
    print(f"  scan of every kept vote (before)   {t_old * 1e6:10.1f} us per vote")
    print(f"  VoteIndex.surrounding (now)        {t_new * 1e6:10.1f} us per vote")
    print(f"  ratio before / now                 {t_old / t_new:10.0f} x")


if __name__ == "__main__":
    main()
