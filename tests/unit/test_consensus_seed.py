"""The VRF seed chain against leader and key grinding (issue 10 finding 2, PROTOCOL §4.2).

Before: the VDF challenge chained only VDF outputs from the genesis, so anyone could compute every
future leader order at VDF speed and grind keys against it. Now the order at h+2 depends on the
unique VRF output of block h+1's proposer, and a key staked in block s leads no earlier than
s + (activation delay), which is longer than anyone (a proposer, or a coalition holding k < delay
consecutive slots) can see ahead.
"""

from __future__ import annotations

import dataclasses

import pytest

from chain import vrf
from chain.block import Block
from chain.consensus.election import (
    alpha_for_child,
    challenge_for_child,
    child_seed,
    eligible_validators,
    leader_ranks,
    vrf_valid,
)
from chain.consensus.validators import leader_weights
from chain.crypto import SecretKey, account_id
from chain.hashing import H
from chain.header import Header
from chain.params import DEVNET, MAINNET, TESTNET, ChainParams
from chain.state.epochs import advance_sets
from chain.state.model import Account
from chain.state.transition import BlockEffects, apply_block
from chain.state.txrules import apply_tx
from chain.state.view import MemoryState, StateOverlay
from chain.tx import Stake, make_tx
from chain.types import COIN, Amount, BlockHash, Height, PubKey
from tests.sim.world import FAKE_VDF, KEYS, PARAMS, STAKE, child_header, genesis_like, key_of, validator_state
from tests.support.chainbuilders import certified_header, empty_body


def _apply(state: MemoryState, header: Header) -> MemoryState:
    body = empty_body(header.height, state.model_version().version_id)
    effects = apply_block(PARAMS, state, Block(header, body))
    assert isinstance(effects, BlockEffects), effects
    after = state.copy()
    after.apply(effects.writes, header.height)
    return after


def _order_after(child: Header, child_state: MemoryState) -> tuple[PubKey, ...]:
    challenge = challenge_for_child(PARAMS.chain_id, child)
    y, _ = FAKE_VDF.prove(challenge, PARAMS.vdf_discriminant_bits, PARAMS.vdf_iterations)
    return tuple(leader_ranks(y, eligible_validators(child_state, child.height + 1)))


@pytest.fixture(scope="module")
def chain_at_h() -> tuple[Header, MemoryState]:
    """The chain at height h = 1: genesis and one block, 4 equal validators."""
    g_state = validator_state(PARAMS, [(k.pubkey, STAKE) for k in KEYS[:4]])
    genesis = genesis_like(PARAMS, g_state)
    b1 = child_header(PARAMS, genesis, g_state, FAKE_VDF, body=empty_body(1))
    return b1, _apply(g_state, b1)


def test_the_order_at_h_plus_2_is_not_fixed_by_the_chain_at_h(chain_at_h: tuple[Header, MemoryState]) -> None:
    """With the chain at h fixed, every validator that may propose h+1 (the leader, or a backup
    if it withholds) gives block h+1 its own seed, and with it another order at h+2: the chain at h
    does not determine it (v1 and the VDF-only rule: one order, computable by anyone at VDF speed)."""
    b1, s1 = chain_at_h
    y2, _ = FAKE_VDF.prove(
        challenge_for_child(PARAMS.chain_id, b1), PARAMS.vdf_discriminant_bits, PARAMS.vdf_iterations
    )
    proposers = leader_ranks(y2, eligible_validators(s1, 2))
    seeds, orders = set(), set()
    for rank in range(len(proposers)):
        b2 = child_header(
            PARAMS, b1, s1, FAKE_VDF, rank=rank, body=empty_body(2, s1.model_version().version_id)
        )
        assert b2.proposer == proposers[rank]
        assert vrf_valid(PARAMS.chain_id, b1, b2)
        seeds.add(b2.seed)
        orders.add(_order_after(b2, _apply(s1, b2)))
    assert len(seeds) == 4  # one seed per possible proposer
    assert len(orders) >= 2  # so the order at h+2 needs block h+1's VRF output


def test_a_proposer_cannot_choose_its_seed(chain_at_h: tuple[Header, MemoryState]) -> None:
    """The only freedom in a valid proof is its nonce, which leaves beta (and the seed) unchanged;
    any other proof bytes fail, whatever seed the header claims for them: publish or withhold."""
    b1, s1 = chain_at_h
    b2 = child_header(PARAMS, b1, s1, FAKE_VDF, body=empty_body(2, s1.model_version().version_id))
    key = key_of(b2.proposer)
    x, _ = vrf._secret_scalar(key.seed)
    alpha = alpha_for_child(PARAMS.chain_id, b1)
    h_point = vrf._encode_to_curve(bytes(key.pubkey), alpha)
    assert h_point is not None
    for nonce in range(1, 21):
        other = vrf._prove_with_nonce(x, h_point, alpha, nonce)
        assert other != b2.vrf_proof
        assert child_seed(b1, other) == b2.seed
        assert vrf_valid(PARAMS.chain_id, b1, dataclasses.replace(b2, vrf_proof=other))
    for bit in range(0, vrf.PROOF_BYTES * 8, 5):
        mutated = bytearray(b2.vrf_proof)
        mutated[bit // 8] ^= 1 << (bit % 8)
        claimed = child_seed(b1, bytes(mutated)) or b2.seed
        forged = dataclasses.replace(b2, vrf_proof=bytes(mutated), seed=claimed)
        assert not vrf_valid(PARAMS.chain_id, b1, forged), bit


# -- activation delay vs. visibility ---------------------------------------------------------------

BIG = 10**6 * COIN  # the four genesis validators keep 2/3 however many newcomers join


def _first_leading_heights(
    params: ChainParams, stake_at: dict[int, SecretKey], horizon: int
) -> dict[int, int]:
    """Stake `min_stake` for key k in block s (a real Stake tx; every block fully certified, as on
    a live chain); the first height at which each key is in the leader set, by staking height."""
    state = validator_state(params, [(k.pubkey, BIG) for k in KEYS[:4]])
    ov = StateOverlay(state)
    for key in stake_at.values():
        ov.set_account(account_id(key.pubkey), Account(Amount(params.min_stake + params.min_fee)))
    state.apply(ov.writes, Height(0))
    first: dict[int, int] = {}
    height_of = {key.pubkey: s for s, key in stake_at.items()}
    prev = BlockHash(H(b"genesis"))
    for h in range(1, horizon + 1):
        for pk, _ in leader_weights(state, h):
            if pk in height_of and height_of[pk] not in first:
                first[height_of[pk]] = h
        header = certified_header(params, h, prev, [k.pubkey for k in KEYS[:4]] if h >= 2 else [])
        ov = StateOverlay(state)
        advance_sets(params, state, ov, header)
        if h in stake_at:
            key = stake_at[h]
            tx = make_tx(key, params.chain_id, 0, params.min_fee, Stake(key.pubkey, params.min_stake))
            assert apply_tx(params, ov, tx, Height(h)) is None
        state = state.copy()
        state.apply(ov.writes, Height(h))
        prev = header.hash
    return first


@pytest.mark.parametrize(("params", "expected"), [(DEVNET, 6), (TESTNET, 59), (MAINNET, 329)])
def test_stake_activation_waits_longer_than_the_schedule_is_visible(
    params: ChainParams, expected: int
) -> None:
    """A key staked in block s first leads at s + delay, delay >= epoch_blocks + max(maturity - 1, 0)
    (the set is taken at a checkpoint, made final by its justified child, and used from the next
    epoch): devnet 6, testnet 59, mainnet 329 blocks. The order at s + j is visible before block
    s + j - 1 exists only to whoever proposes s + j - 1 (one block ahead); a coalition holding the k
    consecutive slots s .. s+k-1 sees up to s + k. So grinding a key needs k >= delay consecutive
    slots (devnet 6, testnet 59, mainnet 329); below that every order the key could rank in is
    drawn after it was fixed. Measured over every staking height of two epochs."""
    e = int(params.epoch_blocks)
    start = int(params.stake_maturity_blocks) + 1
    stake_at = {s: SecretKey.from_label(f"activation-{s}") for s in range(start, start + 2 * e)}
    first = _first_leading_heights(params, stake_at, start + 2 * e + expected + e + 2)
    assert set(first) == set(stake_at)  # every key activates (the chain is live and final)
    delays = {s: first[s] - s for s in stake_at}
    assert min(delays.values()) == expected
    assert expected == e + max(int(params.stake_maturity_blocks) - 1, 0)
    visibility_of_one_proposer = 1
    assert min(delays.values()) > visibility_of_one_proposer
    assert max(delays.values()) == expected + e - 1  # the rest of the epoch adds at most e - 1
