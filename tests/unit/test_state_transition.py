"""The state transition (PROTOCOL §3.1, §3.5, §5.1): tx rules, block rewards, undo and rollback."""

from __future__ import annotations

import dataclasses

import pytest

from chain.block import TxBody
from chain.crypto import DOMAIN_TX, SecretKey, account_id
from chain.errors import ErrorCode
from chain.header import BlockKind
from chain.params import DEVNET
from chain.signed import sign_object
from chain.state.genesis import genesis_block, genesis_memory_state, genesis_state
from chain.state.model import EMPTY_ACCOUNT, RewardReason
from chain.state.transition import BlockEffects, BlockError, apply_block, apply_tx
from chain.state.view import StateOverlay
from chain.tx import Stake, Transfer, make_tx
from chain.types import COIN, MAX_AMOUNT, AccountId, Amount, ChainId, Height
from tests.support.chainbuilders import VALIDATOR_STAKE, MemChain, dev_genesis, make_block

FEE = DEVNET.min_fee


@pytest.fixture
def chain() -> MemChain:
    return MemChain(*dev_genesis())


def failed(outcome: BlockEffects | BlockError) -> ErrorCode | None:
    """The inner tx code of a failed block (asserting the block-level code)."""
    assert isinstance(outcome, BlockError), "the block should have been invalid"
    assert outcome.code == ErrorCode.INVALID_TX_IN_BLOCK
    return outcome.inner


def to(c: MemChain, name: str, amount: int) -> Transfer:
    return Transfer(c.account(name), Amount(amount))


def test_genesis_state_is_deterministic_and_funded() -> None:
    genesis, keys = dev_genesis()
    writes, root = genesis_state(genesis)
    assert genesis_state(genesis) == (writes, root)
    state = genesis_memory_state(genesis)
    assert state.state_root == root == genesis_block(genesis).header.state_root
    assert state.account(account_id(keys["alice"].pubkey)).balance == 1_000 * COIN
    v = state.validator(keys["validator0"].pubkey)
    assert v is not None
    assert v.stake_total == VALIDATOR_STAKE
    assert v.reputation == DEVNET.reputation_start
    assert state.eligible_stake(keys["validator0"].pubkey, Height(1)) == VALIDATOR_STAKE


def test_transfer_moves_coins_and_pays_fee_and_reward_to_stakers(chain: MemChain) -> None:
    alice0, bob0 = chain.balance("alice"), chain.balance("bob")
    block, effects = chain.add_txs([chain.tx("alice", to(chain, "bob", 5 * COIN), fee=FEE * 3)])
    assert chain.balance("alice") == alice0 - 5 * COIN - 3 * FEE
    assert chain.balance("bob") == bob0 + 5 * COIN
    assert chain.nonce("alice") == 1
    assert chain.balance("staker0") == DEVNET.reward_tx + 3 * FEE
    reasons = {(r.reason, r.amount, r.account) for r in effects.rewards}
    assert reasons == {
        (RewardReason.TX_PROPOSER, DEVNET.reward_tx, chain.account("staker0")),
        (RewardReason.TX_FEES, 3 * FEE, chain.account("staker0")),
    }
    assert all(bytes(r.ref) == bytes(block.hash) and r.height == 1 for r in effects.rewards)
    v = chain.state.validator(chain.keys["validator0"].pubkey)
    assert v is not None
    assert v.reputation == DEVNET.reputation_start + DEVNET.reputation_propose_bonus
    assert v.last_proposed == 1


def test_double_spend_in_one_block_is_rejected(chain: MemChain) -> None:
    balance = chain.balance("alice")
    spend = balance * 3 // 4
    first = chain.tx("alice", to(chain, "bob", spend), nonce=0)
    again = chain.tx("alice", to(chain, "staker0", spend), nonce=1)
    assert failed(chain.try_txs([first, again])) == ErrorCode.INSUFFICIENT_BALANCE
    same_nonce = chain.tx("alice", to(chain, "staker0", 1), nonce=0)
    assert failed(chain.try_txs([first, same_nonce])) == ErrorCode.NONCE_TOO_LOW
    chain.add_txs([first])  # alone it is fine


def test_replayed_tx_is_rejected_in_a_later_block(chain: MemChain) -> None:
    tx = chain.tx("alice", to(chain, "bob", COIN))
    chain.add_txs([tx])
    assert failed(chain.try_txs([tx])) == ErrorCode.NONCE_TOO_LOW
    future = chain.tx("alice", to(chain, "bob", COIN), nonce=5)
    assert failed(chain.try_txs([future])) == ErrorCode.NONCE_TOO_HIGH


def test_wrong_chain_id_is_rejected(chain: MemChain) -> None:
    tx = make_tx(chain.keys["alice"], ChainId("lc-testnet-1"), 0, FEE, to(chain, "bob", COIN))
    assert failed(chain.try_txs([tx])) == ErrorCode.WRONG_CHAIN


def test_signature_from_another_key_is_rejected(chain: MemChain) -> None:
    honest = chain.tx("alice", to(chain, "bob", COIN))
    forged = sign_object(honest, chain.keys["bob"], DOMAIN_TX)  # sender stays alice
    assert forged.sender == chain.keys["alice"].pubkey
    assert failed(chain.try_txs([forged])) == ErrorCode.BAD_SIGNATURE
    tampered = dataclasses.replace(honest, fee=Amount(FEE + 1))  # alice's signature, other content
    assert failed(chain.try_txs([tampered])) == ErrorCode.BAD_SIGNATURE


def test_receiver_overflow_is_rejected() -> None:
    genesis, keys = dev_genesis(funded=("alice", "bob"), amount=10 * COIN)
    rich = SecretKey.from_label("rich")
    allocations = (
        *genesis.allocations,
        dataclasses.replace(
            genesis.allocations[0], account=account_id(rich.pubkey), amount=Amount(MAX_AMOUNT - COIN)
        ),
    )
    genesis = dataclasses.replace(genesis, allocations=tuple(sorted(allocations, key=lambda a: a.account)))
    keys["rich"] = rich
    c = MemChain(genesis, keys)
    assert failed(c.try_txs([c.tx("alice", to(c, "rich", 2 * COIN))])) == ErrorCode.OVERFLOW
    c.add_txs([c.tx("alice", to(c, "rich", COIN))])  # exactly to the limit is fine
    assert c.balance("rich") == MAX_AMOUNT


def test_stateless_tx_rules(chain: MemChain) -> None:
    assert failed(chain.try_txs([chain.tx("alice", to(chain, "bob", 0))])) == ErrorCode.ZERO_AMOUNT
    assert failed(chain.try_txs([chain.tx("alice", to(chain, "alice", 1))])) == ErrorCode.SELF_TRANSFER
    assert (
        failed(chain.try_txs([chain.tx("alice", to(chain, "bob", 1), fee=FEE - 1)])) == ErrorCode.FEE_TOO_LOW
    )
    broke = chain.tx("staker0", to(chain, "bob", 1))  # staker0 has no balance
    assert failed(chain.try_txs([broke])) == ErrorCode.INSUFFICIENT_BALANCE


def test_failed_tx_leaves_the_overlay_unchanged(chain: MemChain) -> None:
    ov = StateOverlay(chain.state)
    good = chain.tx("alice", to(chain, "bob", COIN))
    assert apply_tx(chain.params, ov, good, Height(1)) is None
    before = (dict(ov.writes), ov.fees, list(ov.rewards))
    bad = chain.tx("alice", to(chain, "bob", 10**6 * COIN), nonce=1)
    assert apply_tx(chain.params, ov, bad, Height(1)) == ErrorCode.INSUFFICIENT_BALANCE
    assert (ov.writes, ov.fees, ov.rewards) == before
    assert chain.state.account(chain.account("alice")).nonce == 0  # the base is never modified


def test_block_rules_height_kind_and_proposer(chain: MemChain) -> None:
    stranger = SecretKey.from_label("stranger")
    block = make_block(chain.tip, TxBody(), stranger, bytes(32), chain.tip.timestamp_ms + 1, pow_bits=0)
    assert apply_block(chain.params, chain.state, block) == ErrorCode.NOT_ELIGIBLE
    chain.add()
    assert apply_block(chain.params, chain.state, block) == ErrorCode.BAD_HEIGHT


def test_fees_and_rewards_split_pro_rata_among_stakers(chain: MemChain) -> None:
    v0 = chain.keys["validator0"].pubkey
    # alice adds stake to validator0: owners staker0 (100 LC) and alice (300 LC) share 1:3
    chain.add_txs([chain.tx("alice", Stake(v0, Amount(300 * COIN)))])
    chain.skip_to(BlockKind.TX)
    staker0, alice = chain.balance("staker0"), chain.balance("alice")
    _, effects = chain.add_txs([chain.tx("bob", to(chain, "staker0", 1), fee=4 * FEE + 3)])
    total = chain.params.reward_tx + 4 * FEE + 3
    got_staker = chain.balance("staker0") - staker0 - 1
    got_alice = chain.balance("alice") - alice
    assert got_staker + got_alice == total
    assert got_staker == chain.params.reward_tx // 4 + (4 * FEE + 3) // 4
    assert {r.account for r in effects.rewards} == {chain.account("alice"), chain.account("staker0")}


def test_rollback_then_reapply_gives_identical_state_root(chain: MemChain) -> None:
    genesis_root = chain.state.state_root
    genesis_data = dict(chain.state.data)
    v0 = chain.keys["validator0"].pubkey
    chain.add_txs(
        [chain.tx("alice", to(chain, "bob", 7 * COIN)), chain.tx("bob", Stake(v0, Amount(20 * COIN)))]
    )
    chain.add_txs([chain.tx("bob", to(chain, "alice", 3 * COIN))])
    blocks = chain.blocks[1:]
    roots = [e.state_root for e in chain.effects]
    while chain.height:
        chain.rollback()
    assert chain.state.state_root == genesis_root
    assert chain.state.data == genesis_data
    for block, root in zip(blocks, roots, strict=True):
        effects = apply_block(chain.params, chain.state, block)
        assert isinstance(effects, BlockEffects)
        assert effects.state_root == root == block.header.state_root
        chain.state.apply(effects.writes, Height(block.header.height))
        chain.blocks.append(block)
        chain.effects.append(effects)
    assert chain.state.state_root == roots[-1]


def test_empty_account_is_deleted_but_nonce_is_kept(chain: MemChain) -> None:
    everything = chain.balance("alice") - FEE
    chain.add_txs([chain.tx("alice", Transfer(AccountId(b"\x07" * 20), Amount(everything)))])
    acct = chain.state.account(chain.account("alice"))
    assert acct.balance == 0
    assert acct.nonce == 1
    assert acct != EMPTY_ACCOUNT
