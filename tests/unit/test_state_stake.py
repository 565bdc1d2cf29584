"""Stake, unbonding and slashing in the state transition (PROTOCOL §3.1, §4.3, §5.3)."""

from __future__ import annotations

import dataclasses

import pytest

from chain.block import Block, TxBody, body_root
from chain.consensus.election import eligible_validators, leader_ranks
from chain.crypto import SecretKey
from chain.errors import ErrorCode
from chain.evidence import DoubleProposal, Evidence, EvidenceKind
from chain.header import BlockKind, kind_for_height
from chain.params import DEVNET
from chain.state.model import RewardReason
from chain.state.transition import BlockEffects, BlockError, apply_block
from chain.tx import SlashEvidence, Stake, Transfer, Unstake
from chain.types import COIN, Amount, Height, TimestampMs
from tests.support.chainbuilders import VALIDATOR_STAKE, MemChain, dev_genesis, make_block

MATURITY = 5
UNBONDING = 6


@pytest.fixture
def chain() -> MemChain:
    params = DEVNET.with_overrides({"stake_maturity_blocks": MATURITY, "unbonding_blocks": UNBONDING})
    return MemChain(*dev_genesis(n_validators=2, params=params))


def failed(outcome: BlockEffects | BlockError) -> ErrorCode | None:
    assert isinstance(outcome, BlockError)
    return outcome.inner


def test_stake_creates_validator_and_matures(chain: MemChain) -> None:
    new = SecretKey.from_label("newvalidator").pubkey
    small = chain.tx("alice", Stake(new, Amount(chain.params.min_stake - 1)))
    assert failed(chain.try_txs([small])) == ErrorCode.STAKE_TOO_SMALL
    block, _ = chain.add_txs([chain.tx("alice", Stake(new, Amount(chain.params.min_stake)))])
    h = block.header.height
    record = chain.state.validator(new)
    assert record is not None
    assert record.stake_total == chain.params.min_stake
    assert record.reputation == chain.params.reputation_start
    stake = chain.state.stake(chain.account("alice"), new)
    assert stake is not None
    assert stake.mature_height == h + MATURITY
    assert chain.state.eligible_stake(new, Height(h + MATURITY - 1)) == 0
    assert chain.state.eligible_stake(new, Height(h + MATURITY)) == chain.params.min_stake
    # below min_stake after adding a small deposit elsewhere: still counts only the validator's total
    chain.add_txs([chain.tx("bob", Stake(new, Amount(1)))])  # an existing validator takes any amount
    assert chain.state.validator(new).stake_total == chain.params.min_stake + 1  # type: ignore[union-attr]


def test_unstake_before_maturity_fails_then_unbonds_and_releases(chain: MemChain) -> None:
    v1 = chain.keys["validator1"].pubkey  # blocks come from validator0
    block, _ = chain.add_txs([chain.tx("alice", Stake(v1, Amount(20 * COIN)))])
    staked_at = block.header.height
    early = chain.tx("alice", Unstake(v1, Amount(COIN)))
    assert failed(chain.try_txs([early])) == ErrorCode.UNSTAKE_TOO_LARGE
    while chain.height + 1 < staked_at + MATURITY:
        chain.add()
    chain.skip_to(BlockKind.TX)
    assert chain.height + 1 >= staked_at + MATURITY
    too_much = chain.tx("alice", Unstake(v1, Amount(21 * COIN)))
    assert failed(chain.try_txs([too_much])) == ErrorCode.UNSTAKE_TOO_LARGE
    nobody = chain.tx("bob", Unstake(v1, Amount(COIN)))
    assert failed(chain.try_txs([nobody])) == ErrorCode.UNKNOWN_STAKE
    before = chain.balance("alice")
    total_before = chain.state.validator(v1).stake_total  # type: ignore[union-attr]
    block, _ = chain.add_txs([chain.tx("alice", Unstake(v1, Amount(8 * COIN)))])
    h = block.header.height
    assert chain.balance("alice") == before - chain.params.min_fee
    stake = chain.state.stake(chain.account("alice"), v1)
    assert stake is not None
    assert stake.amount == 12 * COIN
    assert [(e.amount, e.release_height) for e in stake.unbonding] == [(8 * COIN, h + UNBONDING + 1)]
    assert chain.state.validator(v1).stake_total == total_before - 8 * COIN  # type: ignore[union-attr]
    while chain.height < h + UNBONDING:
        chain.add()
        assert chain.balance("alice") == before - chain.params.min_fee
    _, effects = chain.add()
    assert chain.balance("alice") == before - chain.params.min_fee + 8 * COIN
    released = [r for r in effects.rewards if r.reason == RewardReason.UNBONDED]
    assert [(r.account, r.amount) for r in released] == [(chain.account("alice"), 8 * COIN)]
    assert chain.state.stake(chain.account("alice"), v1).unbonding == ()  # type: ignore[union-attr]
    # rolling back across the release restores the unbonding entry
    chain.rollback()
    assert len(chain.state.stake(chain.account("alice"), v1).unbonding) == 1  # type: ignore[union-attr]


def double_proposal(chain: MemChain, name: str, height: int) -> Evidence:
    key = chain.keys[name]
    base = chain.blocks[height].header
    a = dataclasses.replace(base, proposer=key.pubkey, body_root=body_root(TxBody())).signed(key)
    b = dataclasses.replace(a, timestamp_ms=TimestampMs(a.timestamp_ms + 1)).signed(key)
    return Evidence(EvidenceKind.DOUBLE_PROPOSAL, DoubleProposal(a, b))


def test_slash_burns_pays_reporter_jails_and_is_accepted_once(chain: MemChain) -> None:
    v1 = chain.keys["validator1"].pubkey
    chain.add_txs([chain.tx("alice", Stake(v1, Amount(300 * COIN)))])  # owners: staker1 100, alice 300
    evidence = double_proposal(chain, "validator1", 1)
    bob_before = chain.balance("bob")
    block, effects = chain.add_txs([chain.tx("bob", SlashEvidence(evidence))])
    h = block.header.height
    p = chain.params
    total = 400 * COIN * p.slash_double_proposal_permille // 1000
    share = total * p.slash_reporter_share_permille // 1000
    assert chain.balance("bob") == bob_before - p.min_fee + share
    record = chain.state.validator(v1)
    assert record is not None
    assert record.stake_total == 400 * COIN - total
    assert record.jailed_until == h + p.jail_blocks
    assert record.reputation == p.reputation_min
    assert chain.state.eligible_stake(v1, Height(h + 1)) == 0
    burns = {r.account: r.amount for r in effects.rewards if r.reason == RewardReason.SLASH_BURN}
    assert burns == {chain.account("staker1"): -total // 4, chain.account("alice"): -total * 3 // 4}
    reporter = [r for r in effects.rewards if r.reason == RewardReason.SLASH_REPORTER]
    assert [(r.account, r.amount) for r in reporter] == [(chain.account("bob"), share)]
    again = chain.tx("alice", SlashEvidence(evidence))
    assert failed(chain.try_txs([again])) == ErrorCode.DUPLICATE_EVIDENCE
    jailed = chain.tx("alice", Stake(v1, Amount(COIN)))
    assert failed(chain.try_txs([jailed])) == ErrorCode.VALIDATOR_JAILED
    # the other validator is untouched
    assert chain.state.validator(chain.keys["validator0"].pubkey).stake_total == VALIDATOR_STAKE  # type: ignore[union-attr]


def test_slash_reaches_unbonding_stake(chain: MemChain) -> None:
    v1 = chain.keys["validator1"].pubkey
    # staker1 holds no coins; its genesis stake is mature at height 0, so it can unstake at once
    outcome = chain.try_txs([chain.tx("staker1", Unstake(v1, Amount(40 * COIN)))])
    assert failed(outcome) == ErrorCode.INSUFFICIENT_BALANCE  # the fee must be paid
    chain.add_txs([chain.tx("alice", Transfer(chain.account("staker1"), Amount(COIN)))])
    chain.add_txs([chain.tx("staker1", Unstake(v1, Amount(40 * COIN)))])
    evidence = double_proposal(chain, "validator1", 1)
    chain.add_txs([chain.tx("bob", SlashEvidence(evidence))])
    stake = chain.state.stake(chain.account("staker1"), v1)
    assert stake is not None
    permille = chain.params.slash_double_proposal_permille
    assert stake.amount == 60 * COIN - 60 * COIN * permille // 1000
    assert [e.amount for e in stake.unbonding] == [40 * COIN - 40 * COIN * permille // 1000]


def test_evidence_in_the_last_block_of_the_window_reaches_stake_unstaked_at_the_fault(
    chain: MemChain,
) -> None:
    """Finding 7 (issue 10): a validator that equivocates at height u and unstakes in the same block
    was burned by evidence in block u+3 but not in block u+U (the release ran before the block's
    txs). Release is at u + U + 1 now: evidence in block u+U still burns the unbonding stake."""
    v1 = chain.keys["validator1"].pubkey
    chain.add_txs([chain.tx("alice", Transfer(chain.account("staker1"), Amount(COIN)))])
    chain.skip_to(BlockKind.TX)
    block, _ = chain.add_txs([chain.tx("staker1", Unstake(v1, Amount(VALIDATOR_STAKE)))])
    u = block.header.height
    evidence = double_proposal(chain, "validator1", u)  # the fault is at the unstake's height
    while chain.height < u + UNBONDING - 1:
        chain.add()
    assert kind_for_height(chain.height + 1) == BlockKind.TX
    block, effects = chain.add_txs([chain.tx("bob", SlashEvidence(evidence))])
    assert block.header.height == u + UNBONDING
    burns = [r.amount for r in effects.rewards if r.reason == RewardReason.SLASH_BURN]
    total = VALIDATOR_STAKE * chain.params.slash_double_proposal_permille // 1000
    assert burns == [-total]
    released = [r for r in effects.rewards if r.reason == RewardReason.UNBONDED]
    assert released == []
    _, effects = chain.add()  # u + U + 1: what is left comes back
    released = [r for r in effects.rewards if r.reason == RewardReason.UNBONDED]
    assert [r.amount for r in released] == [VALIDATOR_STAKE - total]


def test_rank_r_block_penalises_the_validators_ranked_before_it(chain: MemChain) -> None:
    p = chain.params
    eligible = eligible_validators(chain.state, chain.height + 1)
    leader, backup = leader_ranks(b"vdf-y", eligible)
    name = next(n for n in ("validator0", "validator1") if chain.keys[n].pubkey == backup)
    draft = make_block(
        chain.tip, TxBody(), chain.keys[name], bytes(32), chain.tip.timestamp_ms + 1, pow_bits=0
    )
    header = dataclasses.replace(draft.header, rank=1, vdf_output=b"vdf-y").signed(chain.keys[name])
    effects = apply_block(p, chain.state, Block(header, draft.body))
    assert isinstance(effects, BlockEffects)
    chain.state.apply(effects.writes, Height(1))
    assert chain.state.validator(leader).reputation == p.reputation_start - p.reputation_miss_penalty  # type: ignore[union-attr]
    assert chain.state.validator(backup).reputation == p.reputation_start + p.reputation_propose_bonus  # type: ignore[union-attr]
