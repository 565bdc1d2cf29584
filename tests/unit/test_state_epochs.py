"""Per-epoch validator sets in state (chain/state/epochs.py, PROTOCOL §4.4): vote weights are bonded
stake of a set taken at a checkpoint the chain proves final, and change only at epoch boundaries."""

from __future__ import annotations

import dataclasses
import itertools

from chain.consensus.validators import (
    bonded_members,
    churn_budget,
    epoch_of,
    is_checkpoint,
    leader_weights,
    limit_churn,
    vote_weights,
)
from chain.crypto import account_id
from chain.hashing import H
from chain.state import keys
from chain.state.epochs import advance_sets
from chain.state.model import SetMember, StakeRecord, Unbonding, ValidatorRecord
from chain.state.view import MemoryState, StateOverlay
from chain.types import Amount, BlockHash, Height, PubKey
from tests.sim.world import KEYS, PARAMS, STAKE, equal_stakes, validator_state
from tests.support.chainbuilders import certified_header

P = dataclasses.replace(PARAMS, epoch_blocks=Height(3))  # checkpoints at heights 1, 4, 7, ...
NEW = KEYS[7].pubkey


def _run(
    heights: int, signers: list[PubKey], *, stake_new_at: int = 2, n: int = 4, new_stake: int = STAKE
) -> list[MemoryState]:
    """States after blocks 0..heights, each block certifying its parent with `signers`; at height
    `stake_new_at` a new validator bonds stake and validator 0's reputation jumps to the maximum."""
    state = validator_state(P, equal_stakes(n))
    states = [state]
    prev = BlockHash(H(b"genesis"))
    for h in range(1, heights + 1):
        header = certified_header(P, h, prev, signers if h >= 2 else [])
        ov = StateOverlay(state)
        advance_sets(P, state, ov, header)
        if h == stake_new_at:
            owner = account_id(NEW)
            ov.set_stake(owner, NEW, StakeRecord(owner, NEW, Amount(new_stake), Height(0)))
            ov.set_validator(ValidatorRecord(NEW, Amount(new_stake), 1000, Height(0), Height(0)))
            rec = ov.validator(KEYS[0].pubkey)
            assert rec is not None
            ov.set_validator(dataclasses.replace(rec, reputation=P.reputation_max))
        nxt = state.copy()
        nxt.apply(ov.writes, Height(h))
        states.append(nxt)
        state, prev = nxt, BlockHash(H(h.to_bytes(4, "big")))
        prev = header.hash
    return states


def test_epochs_and_checkpoints() -> None:
    assert [epoch_of(P, h) for h in range(8)] == [0, 0, 0, 0, 1, 1, 1, 2]
    assert [h for h in range(11) if is_checkpoint(P, h)] == [0, 1, 4, 7, 10]


def test_vote_weight_is_stake_only_and_ignores_reputation() -> None:
    """Finding 1: reputation moved (validator 0 at the maximum) but votes still weigh stake."""
    states = _run(9, [k.pubkey for k in KEYS[:3]])
    for h in range(1, 10):
        weights = dict(vote_weights(states[h - 1], h))
        assert weights[KEYS[0].pubkey] == STAKE
        assert set(weights.values()) == {STAKE}


def test_new_stake_counts_only_from_the_epoch_after_a_final_checkpoint() -> None:
    """Staked at height 2: checkpoint 4 is justified by block 5 and final by block 6 (its child
    justified), so the set taken at 4 rules epoch 2 (heights 7-9), not before."""
    states = _run(9, [k.pubkey for k in KEYS[:3]])
    for h in range(1, 7):
        assert NEW not in dict(vote_weights(states[h - 1], h)), h
    for h in (7, 8, 9):
        assert dict(vote_weights(states[h - 1], h))[NEW] == STAKE, h
    final = states[6].validator_set(keys.FINAL_SET)
    assert final is not None
    assert final.checkpoint_height == 4
    # the leader order uses the checkpoint's reputation too (fixed for the epoch)
    assert dict(leader_weights(states[6], 7))[KEYS[0].pubkey] == STAKE * P.reputation_max // 1000


def test_without_threshold_certificates_the_set_never_changes() -> None:
    """2 of 4 signers (no 2/3): no checkpoint is ever justified, the genesis set stays."""
    states = _run(12, [k.pubkey for k in KEYS[:2]])
    for h in range(1, 13):
        assert NEW not in dict(vote_weights(states[h - 1], h))
    assert states[-1].validator_set(keys.PENDING_SET) is None
    final = states[-1].validator_set(keys.FINAL_SET)
    assert final is not None
    assert final.checkpoint_height == 0


def test_four_of_six_equal_stakes_justify_and_finalise_checkpoints() -> None:
    """Exactly 2/3 is enough (PROTOCOL §4.4 "at least 2/3"): v1 compared permille, 4/6 = 666 < 667,
    so the 4 side of a 4/2 split never justified a checkpoint and the set never changed."""
    states = _run(9, [k.pubkey for k in KEYS[:4]], n=6, stake_new_at=99)
    assert states[-1].justified().height == 8
    final = states[-1].validator_set(keys.FINAL_SET)
    assert final is not None
    assert final.checkpoint_height == 7  # checkpoint 7 justified by block 8, its child by block 9


def test_three_of_six_equal_stakes_justify_nothing() -> None:
    states = _run(9, [k.pubkey for k in KEYS[:3]], n=6, stake_new_at=99)
    assert states[-1].justified().height == 0
    assert states[-1].validator_set(keys.PENDING_SET) is None


def test_a_large_new_stake_enters_by_at_most_the_churn_budget_per_set_change() -> None:
    """Churn limit (issue 10): NEW stakes as much as the 4 others together (staked at height 2).
    Without a limit the whole 4 x STAKE counted from epoch 2; now each set change moves by at most
    `churn_budget` of the previous set's stake, and the rest waits for the next final checkpoint."""
    states = _run(24, [k.pubkey for k in KEYS[:3]] + [NEW], new_stake=4 * STAKE)
    sets = [dict(vote_weights(states[h - 1], h)) for h in range(1, 25, 3)]  # first height of each epoch
    assert NEW not in sets[0]
    assert NEW not in sets[1]  # checkpoint 4 is final only from block 6: epoch 2 (height 7) on
    grew = False
    for before, after in itertools.pairwise(sets[1:]):  # from checkpoint 4 on, the stake exists
        budget = churn_budget(P, sum(before.values()))
        entered = after.get(NEW, 0) - before.get(NEW, 0)
        assert 0 <= entered <= budget
        assert entered == min(budget, 4 * STAKE - before.get(NEW, 0))
        grew |= entered > 0
    assert grew
    assert sets[2][NEW] == churn_budget(P, 4 * STAKE) < 4 * STAKE
    assert sets[-1][NEW] == 4 * STAKE  # all of it, a few epochs later


def _exits(changes: dict[int, str]) -> tuple[MemoryState, tuple[SetMember, ...]]:
    """Five equal validators (the set taken at genesis); then validator i unstakes ("unstaked":
    its stake unbonding, still slashable), is jailed, or has its unbonding released ("released")."""
    params = dataclasses.replace(P, churn_limit_permille=100)  # 10% of 5 x STAKE: half a stake
    state = validator_state(params, equal_stakes(5))
    previous = bonded_members(state, 1)
    ov = StateOverlay(state)
    for i, what in changes.items():
        pk = KEYS[i].pubkey
        owner = account_id(pk)
        rec = ov.validator(pk)
        assert rec is not None
        if what == "jailed":
            ov.set_validator(dataclasses.replace(rec, jailed_until=Height(100)))
            continue
        left = (Unbonding(Amount(STAKE), Height(100)),) if what == "unstaked" else ()
        ov.set_stake(owner, pk, StakeRecord(owner, pk, Amount(0), Height(0), left))
        ov.set_validator(dataclasses.replace(rec, stake_total=Amount(0)))
    nxt = state.copy()
    nxt.apply(ov.writes, Height(1))
    return nxt, previous


def test_exits_wait_for_the_churn_budget_but_jailed_and_released_stake_leave_at_once() -> None:
    state, previous = _exits({3: "unstaked", 4: "unstaked"})
    taken = {m.pubkey: int(m.stake) for m in limit_churn(state, 2, previous, bonded_members(state, 2))}
    budget = churn_budget(state.params, 5 * STAKE)
    assert budget == STAKE // 2
    assert taken[KEYS[3].pubkey] == taken[KEYS[4].pubkey] == STAKE - budget // 2  # pro rata, still in
    assert sum(taken.values()) == 5 * STAKE - budget
    state, previous = _exits({3: "jailed", 4: "released"})
    taken = {m.pubkey: int(m.stake) for m in limit_churn(state, 2, previous, bonded_members(state, 2))}
    assert KEYS[3].pubkey not in taken  # jailed: never delayed
    assert KEYS[4].pubkey not in taken  # no slashable stake left: no vote weight
    assert set(taken.values()) == {STAKE}
