"""Per-epoch validator sets in state: take, promote and activate them (PROTOCOL §4.4).

Owns: `advance_sets`, run by the transition at the start of every block. Must not: decide vote or
leader weights (chain.consensus.validators reads the sets) or check signatures (validation checked
the block's `parent_certificate` before the transition runs).

The chain itself proves checkpoint finality, with the 2-chain rule of chain.consensus.finality
applied to certificates carried in headers:
- a block whose `parent_certificate` reaches the threshold (weighed by the active set) justifies
  its parent; if that parent is a checkpoint (first block of an epoch), the set is taken from the
  parent's state (`bonded_members`), moved from the final set by at most the churn limit
  (`limit_churn`: the rest waits for the next checkpoint), and kept as *pending*;
- when the checkpoint's child is justified the same way, the checkpoint is final on this chain and
  the pending set becomes the *final* set;
- the first block of each epoch makes the final set the *active* one.
Every justification is also recorded as `justified` (keys.JUSTIFIED): the source that a vote for
the block must sign (`chain.consensus.validators.vote_source_of`).
A set in use was therefore taken at a checkpoint the chain proves final. Two branches that prove
the same final checkpoint weigh every vote identically, whatever else they contain; proving
different ones would need conflicting finality, which needs 1/3 of the stake to be slashable.
"""

from __future__ import annotations

import dataclasses

from chain.consensus.certificate import meets_threshold
from chain.consensus.validators import bonded_members, epoch_of, is_checkpoint, limit_churn
from chain.header import Header
from chain.params import ChainParams
from chain.state import keys
from chain.state.model import Checkpoint, StateReader, ValidatorSet
from chain.state.view import StateOverlay
from chain.types import BlockHash, Hash32, Height


def genesis_sets(reader: StateReader) -> dict[bytes, ValidatorSet]:
    """The active and final sets of the genesis state (the genesis is final by definition)."""
    first = ValidatorSet(0, Height(0), Hash32(bytes(32)), bonded_members(reader, 1))
    return {keys.ACTIVE_SET: first, keys.FINAL_SET: first}


def justifies_parent(params: ChainParams, parent_set: ValidatorSet, header: Header) -> bool:
    """True if `header.parent_certificate` carries >= threshold of `parent_set`'s stake for the parent."""
    stakes = parent_set.stakes()
    signers = {
        a.validator
        for a in header.parent_certificate
        if a.height == header.height - 1 and a.block_hash == header.prev_hash
    }
    weight = sum(stakes.get(v, 0) for v in signers)
    return meets_threshold(params, weight, sum(stakes.values()))


def advance_sets(params: ChainParams, parent: StateReader, ov: StateOverlay, header: Header) -> None:
    """Activate, take and promote validator sets for the block `header` applied on `parent`."""
    active = parent.validator_set(keys.ACTIVE_SET)
    if active is None:
        return  # a state without sets (only hand-made test states): nothing to track
    height = header.height
    epoch = epoch_of(params, height)
    if epoch != active.epoch:
        final = parent.validator_set(keys.FINAL_SET) or active
        ov.set_validator_set(keys.ACTIVE_SET, dataclasses.replace(final, epoch=epoch))
    if height < 2 or not justifies_parent(params, active, header):
        return  # `active` is still the parent's set here: the parent is in the previous epoch or this
    ov.put(keys.JUSTIFIED, Checkpoint(Height(height - 1), BlockHash(header.prev_hash)))
    if is_checkpoint(params, height - 1):
        final = parent.validator_set(keys.FINAL_SET) or active
        taken = limit_churn(parent, height, final.members, bonded_members(parent, height))
        ov.set_validator_set(
            keys.PENDING_SET, ValidatorSet(0, Height(height - 1), Hash32(header.prev_hash), taken)
        )
    if height >= 3 and is_checkpoint(params, height - 2):
        pending = parent.validator_set(keys.PENDING_SET)
        if pending is not None and pending.checkpoint_height == height - 2:
            ov.set_validator_set(keys.FINAL_SET, pending)
