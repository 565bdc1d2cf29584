"""Coinbase arithmetic (PROTOCOL §5.1): integer pro-rata splits of block rewards, pools and slashes.

Owns: how an amount is divided among weighted recipients and where the rounding remainder goes.
Must not: read or write state (the state transition looks up the recipients and records the
payments) or use floats.

Rules (all floor divisions, so nothing is ever minted beyond the stated amount):
- A validator's income (proposer reward, fees) goes to the owners of the stake bound to its key,
  pro rata to their bonded amount; the remainder of the floor division goes to the largest owner
  (ties: the lowest account id, i.e. the first in key order), so the whole amount is paid.
- A contributor pool (data or learning) is split pro rata to examples or weights; the remainder is
  not minted (burned by omission). With a zero total weight the pool is not minted at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

K = TypeVar("K")


def split_floor(total: int, weights: Sequence[tuple[K, int]]) -> tuple[list[tuple[K, int]], int]:
    """floor(total * w / sum(w)) for each recipient, and the undistributed remainder.

    Recipients with weight 0 get nothing and are left out. A zero weight sum distributes nothing.
    """
    if total < 0 or any(w < 0 for _, w in weights):
        raise ValueError("amounts and weights must be non-negative")
    weight_sum = sum(w for _, w in weights)
    if total == 0 or weight_sum == 0:
        return [], total
    shares = [(k, total * w // weight_sum) for k, w in weights if w > 0]
    return shares, total - sum(s for _, s in shares)


def split_to_largest(total: int, weights: Sequence[tuple[K, int]]) -> list[tuple[K, int]]:
    """Pro-rata floor shares with the remainder added to the largest weight (first one on ties)."""
    shares, remainder = split_floor(total, weights)
    if not shares or remainder == 0:
        return shares
    best = 0
    best_weight = -1
    positive = [w for _, w in weights if w > 0]
    for i, w in enumerate(positive):
        if w > best_weight:
            best, best_weight = i, w
    key, amount = shares[best]
    shares[best] = (key, amount + remainder)
    return shares


def split_capped(total: int, weights: Sequence[tuple[K, int]]) -> list[tuple[K, int]]:
    """Like `split_to_largest` but no recipient gets more than its own weight (slashing pieces of
    stake); a remainder that would exceed the cap is dropped. Requires total <= sum of weights."""
    shares = split_to_largest(total, weights)
    capped = dict(weights)
    return [(k, min(s, capped[k])) for k, s in shares]
