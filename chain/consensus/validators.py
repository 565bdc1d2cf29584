"""Validator sets fixed per epoch: vote weights (bonded stake only) and leader weights (PROTOCOL §4.3, §4.4).

Owns: epochs and checkpoints (`epoch_of`, `is_checkpoint`), taking a set from a state
(`bonded_members`), the churn limit between two sets (`limit_churn`, `churn_budget`), the set that
rules a height (`validator_set_for`), and the two weightings read
from it: `vote_weights` (bonded stake, for attestations, certificates, justification and finality)
and `leader_weights` (stake x reputation, only for the leader order). Must not: write state (the
transition keeps the active/final/pending sets, chain.state.epochs) or read the clock.

Why a fixed set. v1 weighed votes by stake x reputation from each branch's own state. Reputation
moves every block, so during a 2/2 partition each side's absent validators sank and its present
ones rose until about 40% of the stake reached 2/3 of its own branch's weight: both sides finalised
conflicting blocks (tests/integration/test_consensus_sim.py::test_two_two_partition_never_finalises).
Now every vote is weighed by the bonded stake of a set that changes only at epoch boundaries, to the
set taken at the last checkpoint the chain proves final. Blocks after the last final checkpoint
cannot change the weights, so every branch that extends it weighs votes identically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from chain.consensus.reputation import election_weight
from chain.header import Attestation
from chain.params import ChainParams
from chain.state import keys
from chain.state.model import Checkpoint, SetMember, StateReader, ValidatorSet
from chain.types import ZERO_HASH, Amount, Height, PubKey


def epoch_of(params: ChainParams, height: int) -> int:
    """Epoch of a height: 0 for genesis, then (height - 1) // epoch_blocks."""
    return 0 if height <= 0 else (height - 1) // params.epoch_blocks


def is_checkpoint(params: ChainParams, height: int) -> bool:
    """The first block of every epoch is its checkpoint (the genesis is the checkpoint of epoch 0)."""
    return height == 0 or (height - 1) % params.epoch_blocks == 0


def bonded_members(reader: StateReader, height: int) -> tuple[SetMember, ...]:
    """The set taken from `reader` for blocks from `height` on: validators not jailed at `height`
    with mature bonded stake >= min_stake (the activation delay is `stake_maturity_blocks`), the
    `max_validators` largest stakes (ties: lower pubkey), sorted by pubkey."""
    params = reader.params
    members: list[SetMember] = []
    for v in reader.validators():
        stake = reader.eligible_stake(v.pubkey, Height(height))
        if stake > 0:
            members.append(SetMember(v.pubkey, stake, v.reputation))
    if len(members) > params.max_validators:
        members.sort(key=lambda m: (-m.stake, m.pubkey))
        members = members[: params.max_validators]
    members.sort(key=lambda m: m.pubkey)
    return tuple(members)


def churn_budget(params: ChainParams, previous_total: int) -> int:
    """Stake that may enter (and, separately, leave) the set at one change: `churn_limit_permille`
    of the previous set's stake, at least `min_stake` (so that a small network can still grow)."""
    return max(previous_total * params.churn_limit_permille // 1000, int(params.min_stake))


def limit_churn(
    reader: StateReader, height: int, previous: Sequence[SetMember], target: Sequence[SetMember]
) -> tuple[SetMember, ...]:
    """The set that replaces `previous` when `target` (`bonded_members`) is taken at a checkpoint.

    Increases (new or added stake) and decreases (unstaked, pushed out by `max_validators`) each
    move by at most `churn_budget` in total, shared pro rata to the wanted change (so the result
    does not depend on any order); what does not fit waits for the next set change, which compares
    with this result again. Two exceptions are never delayed: a validator jailed at `height` leaves
    at once, and no member keeps more weight than `slashable_stake` (released stake carries no
    vote: accountability needs every counted vote to be slashable). Reputations are the state's.
    """
    params = reader.params
    have = {m.pubkey: int(m.stake) for m in previous}
    want = {m.pubkey: int(m.stake) for m in target}
    budget = churn_budget(params, sum(have.values()))
    keys_ = sorted(set(have) | set(want))
    forced = {pk for pk in keys_ if (rec := reader.validator(pk)) is None or height < rec.jailed_until}
    ups = {pk: want.get(pk, 0) - have.get(pk, 0) for pk in keys_ if want.get(pk, 0) > have.get(pk, 0)}
    downs = {
        pk: have[pk] - want.get(pk, 0)
        for pk in keys_
        if pk not in forced and want.get(pk, 0) < have.get(pk, 0)
    }
    out: list[SetMember] = []
    for pk in keys_:
        stake = have.get(pk, 0)
        if pk in forced:
            stake = want.get(pk, 0)
        elif pk in ups:
            stake += _share(ups[pk], ups, budget)
        elif pk in downs:
            stake -= _share(downs[pk], downs, budget)
        stake = min(stake, int(reader.slashable_stake(pk)))
        rec = reader.validator(pk)
        if stake > 0 and rec is not None:
            out.append(SetMember(pk, Amount(stake), rec.reputation))
    return tuple(out)


def _share(change: int, changes: Mapping[PubKey, int], budget: int) -> int:
    """This change's part of `budget` when all `changes` compete for it: whole if they fit, else
    pro rata, rounded down (integers only)."""
    total = sum(changes.values())
    return change if total <= budget else change * budget // total


def validator_set_for(reader: StateReader, height: int) -> ValidatorSet:
    """The set that rules the block at `height`; `reader` is the state of its parent.

    Inside an epoch it is the active set; the first block of a new epoch already uses the final set
    (the transition makes it the active set when it applies that block, chain.state.epochs).
    A state without sets (never produced by genesis) has an empty set: nobody is eligible.
    """
    epoch = epoch_of(reader.params, height)
    active = reader.validator_set(keys.ACTIVE_SET)
    if active is None:
        return ValidatorSet(epoch, Height(0), ZERO_HASH, ())
    if active.epoch == epoch:
        return active
    final = reader.validator_set(keys.FINAL_SET) or active
    return dataclasses.replace(final, epoch=epoch)


def vote_weights(reader: StateReader, height: int) -> list[tuple[PubKey, int]]:
    """(pubkey, bonded stake) of the validators whose votes count at `height`, sorted by pubkey.

    Stake only: reputation never weighs a vote (§4.4). A validator jailed during the epoch keeps its
    weight until the set changes (its votes stay slashable); the next set leaves it out.
    """
    return [(m.pubkey, int(m.stake)) for m in validator_set_for(reader, height).members]


def leader_weights(reader: StateReader, height: int) -> list[tuple[PubKey, int]]:
    """(pubkey, stake x reputation / 1000) of the set at `height`, for the leader order only (§4.3).

    Both factors are the checkpoint's, so nothing in the blocks of the current epoch (rank choices,
    missed slots, included evidence) changes who leads later in the epoch.
    """
    out = []
    for m in validator_set_for(reader, height).members:
        w = election_weight(m.stake, m.reputation)
        if w > 0:
            out.append((m.pubkey, w))
    return out


def may_propose(reader: StateReader, pubkey: PubKey, height: int) -> bool:
    """A set member jailed since the checkpoint keeps its rank but may not propose: its slot goes to
    the next rank after `rank_delay_ms`, so slashing changes no one else's rank."""
    rec = reader.validator(pubkey)
    return rec is not None and height >= rec.jailed_until


def vote_source_of(target_state: StateReader) -> Checkpoint:
    """The source a vote for a block must sign: the highest ancestor its chain proves justified
    (`StateReader.justified` of the state after the target block; the genesis is height 0 with the
    zero hash). Equal to `finality.vote_source` over the same chain; read from state it costs O(1)
    and every node computes the same value, so a vote whose signed source differs is not counted
    and cannot enter a certificate (§4.4)."""
    return target_state.justified()


def source_matches(att: Attestation, target_state: StateReader) -> bool:
    src = vote_source_of(target_state)
    return att.source_height == src.height and att.source_hash == src.block_hash
