"""Validator reputation arithmetic (PROTOCOL §5.2), in permille, bounded to
[reputation_min, reputation_max].

Owns: how reputation moves on a proposed block, a missed leader slot, a unit included or excluded
by the aggregation rule (`unit_move`), and a slash, and the election weight it scales. Must not:
read or write state (the state transition stores the result), decide who missed a slot (the
election rules know the ranks) or which units a rule excludes (chain.consensus.aggregation does).
"""

from __future__ import annotations

from typing import Final

from chain.block import Exclusion
from chain.params import ChainParams

PENALISED: Final = frozenset(
    {Exclusion.MALFORMED, Exclusion.NORM_OUTLIER, Exclusion.DIRECTION_OUTLIER, Exclusion.RARELY_KEPT}
)
"""Exclusions that cost the author reputation: the unit was judged and rejected. A stale unit or
one without examples is refused before any judgement (no fault of quality)."""


def clamp(params: ChainParams, reputation: int) -> int:
    return max(params.reputation_min, min(params.reputation_max, reputation))


def after_propose(params: ChainParams, reputation: int) -> int:
    """+`reputation_propose_bonus` for a block proposed and applied."""
    return clamp(params, reputation + params.reputation_propose_bonus)


def after_miss(params: ChainParams, reputation: int) -> int:
    """-`reputation_miss_penalty` for a leader slot that a lower-ranked proposer filled."""
    return clamp(params, reputation - params.reputation_miss_penalty)


def unit_move(params: ChainParams, excluded: Exclusion | None) -> int:
    """The move for the author of a unit a VERSION block used: +`reputation_unit_bonus` when it
    was included (`excluded` None), -`reputation_unit_penalty` when the rule rejected it
    (`PENALISED`), 0 otherwise. Also +bonus for a data unit with accepted examples."""
    if excluded is None:
        return params.reputation_unit_bonus
    return -params.reputation_unit_penalty if excluded in PENALISED else 0


def after_slash(params: ChainParams) -> int:
    """A slashed validator restarts at the minimum."""
    return params.reputation_min


def election_weight(stake: int, reputation: int) -> int:
    """w = stake * reputation / 1000 (integer, PROTOCOL §4.3)."""
    return stake * reputation // 1000
