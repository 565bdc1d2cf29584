"""Golden vectors of leader election (tests/vectors/consensus_ranks.json, PROTOCOL §4.2-§4.3): the same
inputs give the same rank order on every run and platform."""

from __future__ import annotations

import json
import pathlib
import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from chain import vrf
from chain.consensus.election import (
    genesis_seed,
    leader_ranks,
    neg_ln_u_fixed,
    next_seed,
    vdf_challenge,
    vrf_alpha,
)
from chain.crypto import SecretKey
from chain.types import ChainId, PubKey

VECTORS: dict[str, Any] = json.loads(
    (pathlib.Path(__file__).parent.parent / "vectors" / "consensus_ranks.json").read_text()
)


def test_rank_vectors() -> None:
    assert len(VECTORS["ranks"]) >= 6
    for case in VECTORS["ranks"]:
        eligible = [(PubKey(bytes.fromhex(v["pubkey"])), v["weight"]) for v in case["validators"]]
        order = leader_ranks(bytes.fromhex(case["vdf_output"]), eligible)
        assert [pk.hex() for pk in order] == case["expected_order"]


def test_vdf_challenge_vectors() -> None:
    for case in VECTORS["vdf_challenge"]:
        got = vdf_challenge(
            ChainId(case["chain_id"]),
            bytes.fromhex(case["parent_seed"]),
            bytes.fromhex(case["parent_vdf_output"]),
            case["height"],
        )
        assert got.hex() == case["challenge"]


def test_seed_chain_vectors() -> None:
    """Two blocks of the VRF seed chain: alpha, the proposer's proof (deterministic, RFC 9381),
    beta and the seed each block must carry."""
    doc = VECTORS["seed_chain"]
    chain_id = ChainId(doc["chain_id"])
    seed = genesis_seed(bytes.fromhex(doc["genesis_hash"]))
    assert seed.hex() == doc["genesis_seed"]
    for i, case in enumerate(doc["blocks"]):
        assert seed.hex() == case["parent_seed"]
        alpha = vrf_alpha(chain_id, seed, case["height"])
        assert alpha.hex() == case["alpha"]
        key = SecretKey.from_label(f"seed-vector-{i}")
        assert key.pubkey.hex() == case["proposer"]
        assert vrf.prove(key.seed, alpha).hex() == case["vrf_proof"]
        beta = vrf.verify(key.pubkey, alpha, bytes.fromhex(case["vrf_proof"]))
        assert beta is not None
        assert beta.hex() == case["beta"]
        seed = next_seed(seed, beta)
        assert seed.hex() == case["seed"]


def test_fixed_point_ln_vectors() -> None:
    for case in VECTORS["neg_ln_u_fixed"]:
        assert neg_ln_u_fixed(int(case["n"])) == int(case["neg_ln_u_fixed"])


@given(
    y=st.binary(min_size=1, max_size=100),
    weights=st.lists(st.integers(min_value=1, max_value=10**15), min_size=1, max_size=12),
    shuffle_seed=st.integers(min_value=0, max_value=2**32),
)
def test_ranks_are_a_permutation_independent_of_input_order(
    y: bytes, weights: list[int], shuffle_seed: int
) -> None:
    eligible = [(PubKey(i.to_bytes(32, "big")), w) for i, w in enumerate(weights)]
    order = leader_ranks(y, eligible)
    assert sorted(order) == sorted(pk for pk, _ in eligible)
    shuffled = list(eligible)
    random.Random(shuffle_seed).shuffle(shuffled)
    assert leader_ranks(y, shuffled) == order
