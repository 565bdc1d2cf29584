"""Leader election (PROTOCOL §4.2-§4.3): pinned rank vectors, exact arithmetic, eligibility, timing."""

from __future__ import annotations

import math
import random

import pytest

from chain.consensus.election import (
    FRAC_BITS,
    earliest_time_ms,
    eligible_validators,
    genesis_seed,
    leader_ranks,
    neg_ln_u_fixed,
    next_seed,
    rank_of,
    vdf_challenge,
    vrf_alpha,
)
from chain.consensus.validators import bonded_members, vote_weights
from chain.crypto import SecretKey
from chain.hashing import H
from chain.types import ChainId
from tests.sim.world import KEYS, PARAMS, STAKE, validator_state

VECTOR_KEYS = [SecretKey.from_label(f"rank-vector-{i}") for i in range(6)]
VECTOR_WEIGHTS = [w * 10**10 * 1000 for w in (1, 2, 3, 5, 8, 13)]
VECTOR_ELIGIBLE = [(k.pubkey, w) for k, w in zip(VECTOR_KEYS, VECTOR_WEIGHTS, strict=True)]


@pytest.mark.parametrize(
    ("y", "expected"),
    [
        (H(b"vector-y-0"), [1, 4, 2, 5, 3, 0]),
        (H(b"vector-y-1"), [1, 4, 5, 3, 2, 0]),
        (b"\x00" * 100, [5, 2, 4, 3, 1, 0]),
    ],
)
def test_rank_vector_is_pinned(y: bytes, expected: list[int]) -> None:
    """Same inputs -> same order on every run and platform (indices into VECTOR_KEYS)."""
    order = leader_ranks(y, VECTOR_ELIGIBLE)
    assert [VECTOR_KEYS.index(next(k for k in VECTOR_KEYS if k.pubkey == pk)) for pk in order] == expected


def test_ranks_do_not_depend_on_input_order() -> None:
    shuffled = list(VECTOR_ELIGIBLE)
    random.Random(7).shuffle(shuffled)
    y = H(b"any")
    assert leader_ranks(y, shuffled) == leader_ranks(y, VECTOR_ELIGIBLE)


def test_ranks_are_a_permutation_and_skip_zero_weight() -> None:
    eligible = [*VECTOR_ELIGIBLE, (KEYS[0].pubkey, 0)]
    order = leader_ranks(H(b"p"), eligible)
    assert sorted(order) == sorted(k.pubkey for k in VECTOR_KEYS)
    assert rank_of(H(b"p"), eligible, KEYS[0].pubkey) is None
    assert rank_of(H(b"p"), eligible, order[2]) == 2


def test_vdf_challenge_vector() -> None:
    """§4.2: H(b"LC/vdf/1" || chain_id || parent's seed || parent's VDF output || u64_be(height))."""
    got = vdf_challenge(ChainId("lc-devnet"), b"\x22" * 32, b"\x11" * 32, 7)
    assert got == H(b"LC/vdf/1" + b"lc-devnet" + b"\x22" * 32 + b"\x11" * 32 + (7).to_bytes(8, "big"))


def test_seed_and_alpha_vectors() -> None:
    """alpha(h) = H(b"LC/vrf-alpha/1" || chain_id || seed(h-1) || u64_be(h));
    seed(h) = H(b"LC/seed/1" || seed(h-1) || beta(h)); seed(0) = H(b"LC/seed/1" || b"genesis" || hash)."""
    assert vrf_alpha(ChainId("lc-devnet"), b"\x33" * 32, 9) == H(
        b"LC/vrf-alpha/1" + b"lc-devnet" + b"\x33" * 32 + (9).to_bytes(8, "big")
    )
    assert next_seed(b"\x33" * 32, b"\x44" * 64) == H(b"LC/seed/1" + b"\x33" * 32 + b"\x44" * 64)
    assert genesis_seed(b"\x55" * 32) == H(b"LC/seed/1" + b"genesis" + b"\x55" * 32)


def test_fixed_point_ln_matches_ln2_constant_and_bounds() -> None:
    # -ln(1/2^256) = 256 ln 2; ln 2 in hex is 0.b17217f7d1cf79abc9e3b39803f2f6af40f343267298b62d8a0d...
    ln2_hex = "b17217f7d1cf79abc9e3b39803f2f6af40f343267298b62d8a"
    assert neg_ln_u_fixed(1) == int(ln2_hex, 16)
    assert neg_ln_u_fixed(1 << 256) == 0
    with pytest.raises(ValueError, match="n must be"):
        neg_ln_u_fixed(0)


def test_fixed_point_ln_agrees_with_float_log() -> None:
    rng = random.Random(1)
    for _ in range(300):
        n = rng.getrandbits(rng.randint(1, 256)) + 1
        expected = 256 * math.log(2) - math.log(n)
        assert abs(neg_ln_u_fixed(n) / 2**FRAC_BITS - expected) < 1e-9


def test_leader_frequency_follows_weight() -> None:
    """Efraimidis-Spirakis: P(rank 0) = w_i / sum(w). Weights 1:3 over 4,000 draws."""
    a, b = KEYS[0].pubkey, KEYS[1].pubkey
    eligible = [(a, 1000), (b, 3000)]
    wins_b = sum(leader_ranks(H(i.to_bytes(4, "big")), eligible)[0] == b for i in range(4000))
    assert 0.72 < wins_b / 4000 < 0.78  # 0.75 +- 4.4 sigma


def test_set_members_filter_small_jailed_and_immature_stake() -> None:
    """The set taken at a checkpoint: mature bonded stake >= min_stake, not jailed (§4.3, §4.4)."""
    p = PARAMS
    small, jailed, immature = KEYS[1].pubkey, KEYS[2].pubkey, KEYS[3].pubkey
    state = validator_state(
        p,
        [
            (KEYS[0].pubkey, STAKE),
            (small, p.min_stake - 1),
            (jailed, STAKE),
            (immature, STAKE),
            (KEYS[4].pubkey, STAKE),
        ],
        height=9,
        reputation={KEYS[4].pubkey: 1500},
        jailed_until={jailed: 11},
        mature_height={immature: 12},
    )
    got = {m.pubkey: (m.stake, m.reputation) for m in bonded_members(state, 10)}
    assert got == {KEYS[0].pubkey: (STAKE, 1000), KEYS[4].pubkey: (STAKE, 1500)}
    assert jailed in {m.pubkey for m in bonded_members(state, 11)}  # the jail is over
    assert immature in {m.pubkey for m in bonded_members(state, 12)}  # the stake is mature


def test_leader_weight_is_stake_times_reputation_and_vote_weight_is_stake() -> None:
    """Reputation orders leaders (§4.3); it never weighs a vote (§4.4)."""
    stakes = [(KEYS[0].pubkey, STAKE), (KEYS[4].pubkey, STAKE)]
    state = validator_state(PARAMS, stakes, reputation={KEYS[4].pubkey: 1500})
    assert eligible_validators(state, 1) == sorted(
        [(KEYS[0].pubkey, STAKE), (KEYS[4].pubkey, STAKE * 3 // 2)]
    )
    assert vote_weights(state, 1) == sorted(stakes)


def test_eligible_validators_caps_at_max_validators() -> None:
    import dataclasses

    p = dataclasses.replace(PARAMS, max_validators=2)
    stakes = [(k.pubkey, STAKE + i) for i, k in enumerate(KEYS[:4])]
    got = eligible_validators(validator_state(p, stakes), 1)
    assert {pk for pk, _ in got} == {KEYS[2].pubkey, KEYS[3].pubkey}


def test_earliest_time_uses_slot_and_rank_delay() -> None:
    p = PARAMS
    assert earliest_time_ms(p, 1000, 0) == 1000 + p.slot_ms
    assert earliest_time_ms(p, 1000, 3) == 1000 + p.slot_ms + 3 * p.rank_delay_ms


def test_no_proposer_controlled_field_changes_the_next_leader_order() -> None:
    """Finding 2 (issue 10): v1's challenge was H(prev_hash), so re-mining only the pow_nonce of a
    block gave 200 valid variants of which 61 kept the proposer at rank 0 for the next height. Now
    200 variants of block 2 (pow_nonce, timestamp, certificate subset, and with it the justified
    checkpoint in the state, and the VRF proof's nonce: the seed depends only on its unique output)
    give one and the same leader order for height 3."""
    import dataclasses
    import itertools

    from chain import vrf
    from chain.block import Block, TxBody
    from chain.consensus.election import alpha_for_child, challenge_for_child, vrf_valid
    from chain.signed import solve_pow
    from chain.state.transition import BlockEffects, apply_block
    from tests.sim.world import FAKE_VDF, attest, child_header, genesis_like, key_of
    from tests.support.chainbuilders import empty_body

    params = PARAMS
    g_state = validator_state(params, [(k.pubkey, STAKE) for k in KEYS[:4]])
    genesis = genesis_like(params, g_state)
    b1 = child_header(params, genesis, g_state, FAKE_VDF)
    s1 = apply_block(params, g_state, Block(b1, TxBody()))
    assert isinstance(s1, BlockEffects)
    state1 = g_state.copy()
    state1.apply(s1.writes, b1.height)
    votes = [attest(params, b1, k) for k in KEYS[:4]]
    body2 = empty_body(2, state1.model_version().version_id)
    subsets = [c for r in (1, 2, 3, 4) for c in itertools.combinations(votes, r)]
    b2_proposer = child_header(params, b1, state1, FAKE_VDF, sign=False).proposer
    x, _ = vrf._secret_scalar(key_of(b2_proposer).seed)
    alpha = alpha_for_child(params.chain_id, b1)
    h_point = vrf._encode_to_curve(bytes(b2_proposer), alpha)
    assert h_point is not None
    orders, challenges, headers = set(), set(), set()
    for i in range(200):
        cert = tuple(sorted(subsets[i % len(subsets)], key=lambda a: a.validator))
        draft = child_header(
            params, b1, state1, FAKE_VDF, body=body2, certificate=cert, delay_ms=i % 37, sign=False
        )
        proof = vrf._prove_with_nonce(x, h_point, alpha, i + 1) if i % 2 else draft.vrf_proof
        draft = dataclasses.replace(draft, vrf_proof=proof)
        nonce = solve_pow(draft.pow_preimage(), params.pow_bits_header, start=i * 10_000)
        variant = dataclasses.replace(draft, pow_nonce=nonce).signed(key_of(draft.proposer))
        assert vrf_valid(params.chain_id, b1, variant)
        effects = apply_block(params, state1, Block(variant, body2))
        assert isinstance(effects, BlockEffects)
        after = state1.copy()
        after.apply(effects.writes, variant.height)
        challenge = challenge_for_child(params.chain_id, variant)
        y, _ = FAKE_VDF.prove(challenge, params.vdf_discriminant_bits, params.vdf_iterations)
        orders.add(tuple(leader_ranks(y, eligible_validators(after, variant.height + 1))))
        challenges.add(challenge)
        headers.add(variant.hash)
    assert len(headers) == 200  # 200 distinct valid-looking variants
    assert len(challenges) == 1
    assert len(orders) == 1
