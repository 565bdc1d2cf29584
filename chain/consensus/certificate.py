"""Attestations, certificates and the finality threshold (PROTOCOL §4.4).

Owns: `check_attestation` (one vote against the eligible set of its height), `certificate_weight`
(a list of votes for one block: no duplicate signer, every signer eligible, every signature valid),
`meets_threshold` / `certificate_reaches_threshold`. Must not: store attestations or decide which
block to vote for (`chain.consensus.duties` does the latter).

The voters of the block at height h and their weights are `validators.vote_weights(state at h-1, h)`:
bonded stake of the epoch's validator set, fixed from the last final checkpoint, never reputation
(§4.4). Every `eligible` argument below is such a weight map.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from chain.errors import ErrorCode
from chain.header import Attestation
from chain.params import ChainParams
from chain.types import ChainId, PubKey


def check_attestation(
    chain_id: ChainId, att: Attestation, eligible: Mapping[PubKey, int]
) -> ErrorCode | None:
    """None if `att` is a valid vote by an eligible validator (cheap checks before the signature)."""
    if att.chain_id != chain_id:
        return ErrorCode.WRONG_CHAIN
    if eligible.get(att.validator, 0) <= 0:
        return ErrorCode.SIGNER_NOT_ELIGIBLE
    if not att.signature_valid():
        return ErrorCode.BAD_SIGNATURE
    return None


def certificate_weight(
    chain_id: ChainId,
    height: int,
    block_hash: bytes,
    eligible: Sequence[tuple[PubKey, int]] | Mapping[PubKey, int],
    attestations: Iterable[Attestation],
) -> int | ErrorCode:
    """Total eligible weight attesting `block_hash` at `height`, or the first fault of the list.

    Codes: BAD_CERTIFICATE (a vote for another height or block), DUPLICATE_SIGNER,
    SIGNER_NOT_ELIGIBLE, WRONG_CHAIN, BAD_SIGNATURE. A certificate below the threshold is valid
    (PROTOCOL §3.2: the parent is then not final yet); compare with `meets_threshold`.
    """
    weights = eligible if isinstance(eligible, Mapping) else dict(eligible)
    seen: set[bytes] = set()
    total = 0
    for att in attestations:
        if att.height != height or att.block_hash != block_hash:
            return ErrorCode.BAD_CERTIFICATE
        if att.validator in seen:
            return ErrorCode.DUPLICATE_SIGNER
        seen.add(att.validator)
        code = check_attestation(chain_id, att, weights)
        if code is not None:
            return code
        total += weights[att.validator]
    return total


def meets_threshold(params: ChainParams, weight: int, total: int) -> bool:
    """weight / total >= finality_threshold_num / finality_threshold_den, exactly (§4.4: "at least
    2/3"). False if total is 0.

    The only place where a justification, finality or certificate weight meets the threshold (the
    transition's checkpoint tracking, the node, the attester and the simulation all call it).
    Integers on both sides, no rounding: v1 compared permille (667), so 4 of 6 equal stakes
    (exactly 2/3, 666.67 permille) never justified anything and the larger side of a 4/2 split
    never finalised.
    """
    return total > 0 and weight * params.finality_threshold_den >= total * params.finality_threshold_num


def certificate_reaches_threshold(
    params: ChainParams,
    height: int,
    block_hash: bytes,
    eligible: Sequence[tuple[PubKey, int]],
    attestations: Iterable[Attestation],
) -> bool:
    """True if `attestations` form a valid certificate reaching the threshold: the block is
    *justified*. Finality needs one more step (chain.consensus.finality.finalized_by)."""
    weight = certificate_weight(params.chain_id, height, block_hash, eligible, attestations)
    if isinstance(weight, ErrorCode):
        return False
    return meets_threshold(params, weight, sum(w for _, w in eligible))
