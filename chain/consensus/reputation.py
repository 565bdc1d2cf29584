"""Validator reputation arithmetic (PROTOCOL §5.2), in permille, bounded to
[reputation_min, reputation_max].

Owns: how reputation moves on a proposed block, a missed leader slot and a slash, and the
election weight it scales. Must not: read or write state (the state transition stores the result)
or decide who missed a slot (the election rules know the ranks).
"""

from __future__ import annotations

from chain.params import ChainParams


def clamp(params: ChainParams, reputation: int) -> int:
    return max(params.reputation_min, min(params.reputation_max, reputation))


def after_propose(params: ChainParams, reputation: int) -> int:
    """+`reputation_propose_bonus` for a block proposed and applied."""
    return clamp(params, reputation + params.reputation_propose_bonus)


def after_miss(params: ChainParams, reputation: int) -> int:
    """-`reputation_miss_penalty` for a leader slot that a lower-ranked proposer filled."""
    return clamp(params, reputation - params.reputation_miss_penalty)


def after_slash(params: ChainParams) -> int:
    """A slashed validator restarts at the minimum."""
    return params.reputation_min


def election_weight(stake: int, reputation: int) -> int:
    """w = stake * reputation / 1000 (integer, PROTOCOL §4.3)."""
    return stake * reputation // 1000
