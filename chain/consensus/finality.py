"""Justification and finality: the Casper-FFG reading of per-height attestations (PROTOCOL §4.4).

Owns: `vote_source` (the justified ancestor a vote for a block implicitly links from),
`certifies_parent`, `finalized_by` (the 2-chain finality rule) and `may_attest` (the honest voting
rule that keeps votes from surrounding each other).
Must not: store votes or blocks, or read state (eligible weights come in as callables).

Why not "final = 2/3 attestations on a block" alone: the in-process simulation found schedules
(tests/integration/test_consensus_sim.py::test_literal_rule_is_unsafe_and_ffg_rule_is_safe) where
honest validators who vote once per height but switch forks let two conflicting blocks at different
heights each gather 2/3, with only 1 of 4 validators Byzantine. The fix reads each attestation for
block X as a Casper-FFG link from `vote_source(X)` -- the highest ancestor of X that X's own chain proves
justified by a `parent_certificate` meeting the threshold -- to X, without changing the wire format:
- J is *justified* when attestations of >= threshold weight for J are known (their source is fixed
  by J's chain and is itself justified, recursively down to genesis or the last final block);
- B is *final* when a direct child C of B carries a threshold certificate for B (so every vote for C
  links B -> C) and C itself gathers >= threshold attestations;
- an honest validator attests X only if X.height > its last attested height and
  vote_source(X).height >= the source height of its last attestation (no double vote, no surround).
Fork choice puts chains proving a higher source first (`forkchoice.choose_head(source_height=...)`)
so that validators bound by their last source can keep voting. Then two conflicting final blocks
require >= 1/3 of the weight to double-vote or surround-vote (the Casper-FFG argument; the proof
sketch is in docs/consensus.md). Double votes are slashable (DOUBLE_ATTEST); surround votes are only
detectable from the chain, so they are not yet slashable evidence (see docs/consensus.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from chain.consensus.certificate import meets_threshold
from chain.header import Header
from chain.params import ChainParams
from chain.types import BlockHash, PubKey

WeightsOf = Callable[[BlockHash], Mapping[PubKey, int]]
"""Eligible weights of the voters for a block (eligible_validators at its height, as a dict)."""


def certifies_parent(params: ChainParams, child: Header, parent_weights: Mapping[PubKey, int]) -> bool:
    """True if `child.parent_certificate` (already validated) reaches the threshold for its parent."""
    signers = {a.validator for a in child.parent_certificate}
    weight = sum(parent_weights.get(v, 0) for v in signers)
    return meets_threshold(params, weight, sum(parent_weights.values()))


def vote_source(
    params: ChainParams,
    headers: Mapping[BlockHash, Header],
    block_hash: BlockHash,
    weights_of: WeightsOf,
    floor: BlockHash,
) -> BlockHash:
    """The highest strict ancestor J of `block_hash` that its chain proves justified: the child of J
    on this chain carries a threshold certificate for J. `floor` (the last final block, justified by
    definition) or genesis ends the walk."""
    child = headers[block_hash]
    while child.height > 0:
        parent_hash = child.prev_hash
        parent = headers.get(parent_hash)
        if parent_hash == floor or parent is None or parent.height == 0:
            return parent_hash
        if certifies_parent(params, child, weights_of(parent_hash)):
            return parent_hash
        child = parent
    return block_hash  # genesis has no source: it is justified by definition


def is_justified(params: ChainParams, vote_weight: int, weights: Mapping[PubKey, int]) -> bool:
    return meets_threshold(params, vote_weight, sum(weights.values()))


def finalized_by(
    params: ChainParams,
    headers: Mapping[BlockHash, Header],
    child_hash: BlockHash,
    vote_weight: Callable[[BlockHash], int],
    weights_of: WeightsOf,
) -> BlockHash | None:
    """The parent B of `child_hash` if the pair finalises B (2-chain rule above), else None."""
    child = headers.get(child_hash)
    if child is None or child.height <= 1:
        return None  # the genesis is final by definition
    parent = child.prev_hash
    if parent not in headers or not certifies_parent(params, child, weights_of(parent)):
        return None
    if not is_justified(params, vote_weight(child_hash), weights_of(child_hash)):
        return None
    return parent


def may_attest(target_height: int, source_height: int, last_height: int, last_source_height: int) -> bool:
    """Honest voting rule: strictly increasing target heights (no double vote) and non-decreasing
    source heights (no surround vote)."""
    return target_height > last_height and source_height >= last_source_height
