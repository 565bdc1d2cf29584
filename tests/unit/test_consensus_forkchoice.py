"""Fork choice and finality bookkeeping (PROTOCOL §4.4, §4.5) on hand-built header trees."""

from __future__ import annotations

import dataclasses
import random

from chain.consensus.forkchoice import advance_final, choose_head, descends_from
from chain.header import Header
from chain.types import BlockHash, Height, TimestampMs
from tests.sim.world import PARAMS, genesis_like, validator_state

GENESIS = genesis_like(PARAMS, validator_state(PARAMS, []))


def child(parent: Header, rank: int = 0, salt: int = 0) -> Header:
    return dataclasses.replace(
        parent,
        height=Height(parent.height + 1),
        prev_hash=parent.hash,
        rank=rank,
        timestamp_ms=TimestampMs(parent.timestamp_ms + 1000 + salt),
    )


def tree(*headers: Header) -> dict[BlockHash, Header]:
    return {h.hash: h for h in (GENESIS, *headers)}


def no_votes(_: bytes) -> int:
    return 0


def test_longer_chain_wins_without_votes() -> None:
    a1 = child(GENESIS)
    a2 = child(a1)
    b1 = child(GENESIS, rank=1)
    assert choose_head(tree(a1, a2, b1), GENESIS.hash, no_votes) == a2.hash


def test_attested_weight_on_first_differing_block_beats_height() -> None:
    a1 = child(GENESIS)
    a2 = child(a1)
    a3 = child(a2)
    b1 = child(GENESIS, rank=1)
    weights = {b1.hash: 10, a1.hash: 5}
    assert choose_head(tree(a1, a2, a3, b1), GENESIS.hash, lambda h: weights.get(h, 0)) == b1.hash


def test_lower_rank_sum_then_lower_hash() -> None:
    a1 = child(GENESIS, rank=0)
    b1 = child(GENESIS, rank=2)
    assert choose_head(tree(a1, b1), GENESIS.hash, no_votes) == a1.hash
    c1 = child(GENESIS, rank=0, salt=1)
    want = min(a1.hash, c1.hash)
    assert choose_head(tree(a1, c1), GENESIS.hash, no_votes) == want


def test_rank_sum_counts_the_whole_branch() -> None:
    a1, b1 = child(GENESIS, rank=0), child(GENESIS, rank=1)
    a2, b2 = child(a1, rank=3), child(b1, rank=0)
    assert choose_head(tree(a1, b1, a2, b2), GENESIS.hash, no_votes) == b2.hash


def test_head_always_descends_from_final() -> None:
    a1, b1 = child(GENESIS), child(GENESIS, rank=1)
    b2, b3 = child(b1), child(child(b1))
    headers = tree(a1, b1, b2, b3)
    assert choose_head(headers, GENESIS.hash, no_votes) == b3.hash
    assert choose_head(headers, a1.hash, no_votes) == a1.hash  # a1 final: the longer b branch is out


def test_choice_is_independent_of_insertion_order() -> None:
    rng = random.Random(3)
    blocks = [GENESIS]
    for _ in range(40):
        blocks.append(child(rng.choice(blocks), rank=rng.randint(0, 3), salt=rng.randint(0, 9)))
    weights = {b.hash: rng.randint(0, 3) for b in blocks}
    expected = choose_head({b.hash: b for b in blocks}, GENESIS.hash, lambda h: weights[h])
    for _ in range(5):
        rng.shuffle(blocks)
        assert choose_head({b.hash: b for b in blocks}, GENESIS.hash, lambda h: weights[h]) == expected


def test_descends_and_advance_final() -> None:
    a1, b1 = child(GENESIS), child(GENESIS, rank=1)
    a2 = child(a1)
    headers = tree(a1, a2, b1)
    assert descends_from(headers, a2.hash, GENESIS.hash)
    assert descends_from(headers, a2.hash, a2.hash)
    assert not descends_from(headers, a2.hash, b1.hash)
    assert advance_final(headers, GENESIS.hash, a2.hash) == a2.hash
    assert advance_final(headers, a1.hash, b1.hash) == a1.hash  # conflicting: ignored
    assert advance_final(headers, a2.hash, a1.hash) == a2.hash  # never backwards
    # mutant-found (issue 10): a conflicting candidate HIGHER than the final block is ignored too
    # (only the ancestry check catches it; the height check alone would accept it)
    b2 = child(b1)
    b3 = child(b2)
    headers = tree(a1, a2, b1, b2, b3)
    assert advance_final(headers, a1.hash, b3.hash) == a1.hash
    assert advance_final(headers, a2.hash, b3.hash) == a2.hash
