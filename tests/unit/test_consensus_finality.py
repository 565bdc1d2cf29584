"""Justification, 2-chain finality, the honest voting rule and the proposer/attester duties
(chain.consensus.finality, chain.consensus.duties; PROTOCOL §4.3-§4.5 as refined in docs/consensus.md)."""

from __future__ import annotations

import dataclasses

from chain.codec import encode
from chain.consensus.duties import attestation_for, proposal_duty, should_propose
from chain.consensus.election import earliest_time_ms, eligible_validators, leader_ranks
from chain.consensus.finality import certifies_parent, finalized_by, may_attest, vote_source
from chain.consensus.forkchoice import choose_head
from chain.hashing import H
from chain.header import Attestation, Header
from chain.state import keys
from chain.state.model import Checkpoint
from chain.types import BlockHash, Height, PubKey, TimestampMs
from tests.sim.world import KEYS, PARAMS, STAKE, genesis_like, validator_state

P = PARAMS
N = 4
STATE = validator_state(P, [(k.pubkey, STAKE) for k in KEYS[:N]])
WEIGHTS: dict[PubKey, int] = dict(eligible_validators(STATE, 1))
GENESIS = genesis_like(P, STATE)


def weights_of(_: BlockHash) -> dict[PubKey, int]:
    return WEIGHTS


def votes(block: Header, signers: range) -> tuple[Attestation, ...]:
    return tuple(
        Attestation(
            P.chain_id, block.height, block.hash, Height(0), BlockHash(bytes(32)), KEYS[i].pubkey
        ).signed(KEYS[i])
        for i in signers
    )


def child(parent: Header, cert: tuple[Attestation, ...] = (), salt: int = 0) -> Header:
    return dataclasses.replace(
        parent,
        height=Height(parent.height + 1),
        prev_hash=parent.hash,
        timestamp_ms=TimestampMs(parent.timestamp_ms + 1000 + salt),
        parent_certificate=cert,
    )


def test_certifies_parent_needs_threshold() -> None:
    b1 = child(GENESIS)
    assert certifies_parent(P, child(b1, votes(b1, range(3))), WEIGHTS)  # 3/4 >= 2/3
    assert not certifies_parent(P, child(b1, votes(b1, range(2))), WEIGHTS)


def test_vote_source_is_the_highest_certified_ancestor() -> None:
    b1 = child(GENESIS)
    b2 = child(b1, votes(b1, range(3)))  # proves b1 justified
    b3 = child(b2, votes(b2, range(1)))  # weak certificate for b2
    b4 = child(b3)
    headers = {h.hash: h for h in (GENESIS, b1, b2, b3, b4)}
    assert vote_source(P, headers, b4.hash, weights_of, GENESIS.hash) == b1.hash
    assert vote_source(P, headers, b2.hash, weights_of, GENESIS.hash) == b1.hash
    assert vote_source(P, headers, b1.hash, weights_of, GENESIS.hash) == GENESIS.hash
    # the last final block is a justified floor
    assert vote_source(P, headers, b4.hash, weights_of, b3.hash) == b3.hash


def test_two_chain_finality() -> None:
    b1 = child(GENESIS)
    b2 = child(b1, votes(b1, range(3)))
    b3 = child(b2, votes(b2, range(3)))
    headers = {h.hash: h for h in (GENESIS, b1, b2, b3)}
    strong = {b2.hash: 3 * STAKE}
    weak = {b2.hash: 2 * STAKE}
    assert finalized_by(P, headers, b2.hash, lambda h: strong.get(h, 0), weights_of) == b1.hash
    assert finalized_by(P, headers, b2.hash, lambda h: weak.get(h, 0), weights_of) is None
    # a child that does not carry a threshold certificate for its parent finalises nothing
    b2_weak = child(b1, votes(b1, range(2)), salt=1)
    headers[b2_weak.hash] = b2_weak
    assert finalized_by(P, headers, b2_weak.hash, lambda h: 4 * STAKE, weights_of) is None
    assert finalized_by(P, headers, b1.hash, lambda h: 4 * STAKE, weights_of) is None  # genesis


def test_four_of_six_equal_stakes_justify_and_finalise() -> None:
    """Exactly 2/3 meets the threshold (PROTOCOL §4.4 "at least 2/3", compared as 3w >= 2 total):
    v1 compared permille (4/6 = 666 < 667) and the 4 side of a 4/2 split never finalised."""
    six = dict(eligible_validators(validator_state(P, [(k.pubkey, STAKE) for k in KEYS[:6]]), 1))
    b1 = child(GENESIS)
    b2 = child(b1, votes(b1, range(4)))
    headers = {h.hash: h for h in (GENESIS, b1, b2)}
    assert certifies_parent(P, b2, six)
    assert finalized_by(P, headers, b2.hash, lambda h: 4 * STAKE, lambda _: six) == b1.hash
    b2_three = child(b1, votes(b1, range(3)), salt=1)
    headers[b2_three.hash] = b2_three
    assert not certifies_parent(P, b2_three, six)
    assert finalized_by(P, headers, b2_three.hash, lambda h: 4 * STAKE, lambda _: six) is None
    assert finalized_by(P, headers, b2.hash, lambda h: 3 * STAKE, lambda _: six) is None


def test_may_attest_forbids_double_and_surround_votes() -> None:
    assert may_attest(target_height=5, source_height=3, last_height=4, last_source_height=3)
    assert not may_attest(5, 3, 5, 3)  # same height: double vote
    assert not may_attest(4, 3, 5, 3)  # lower height
    assert not may_attest(7, 2, 5, 3)  # lower source than before: (2,7) would surround (3,5)
    assert may_attest(7, 4, 5, 3)


def test_fork_choice_prefers_the_chain_proving_a_higher_source() -> None:
    b1 = child(GENESIS)
    strong = child(b1, votes(b1, range(3)))  # proves b1 justified
    weak = child(b1, votes(b1, range(1)), salt=1)
    weak2 = child(weak)  # longer, and more attested, but proves nothing
    headers = {h.hash: h for h in (GENESIS, b1, strong, weak, weak2)}
    weight = {weak.hash: 3}

    def src(h: BlockHash) -> int:
        return headers[vote_source(P, headers, h, weights_of, GENESIS.hash)].height

    assert choose_head(headers, GENESIS.hash, lambda h: weight.get(h, 0)) == weak2.hash
    assert choose_head(headers, GENESIS.hash, lambda h: weight.get(h, 0), src) == strong.hash


def test_attestation_for_follows_the_voting_rule() -> None:
    b1 = child(GENESIS)
    me = KEYS[0].pubkey
    att = attestation_for(P, b1, STATE, STATE, me, last_height=0, last_source_height=0)
    assert att == Attestation(P.chain_id, b1.height, b1.hash, Height(0), BlockHash(bytes(32)), me)
    assert attestation_for(P, b1, STATE, STATE, me, last_height=1, last_source_height=0) is None
    assert attestation_for(P, b1, STATE, STATE, KEYS[6].pubkey, last_height=0, last_source_height=0) is None
    assert attestation_for(P, GENESIS, STATE, STATE, me, last_height=0, last_source_height=0) is None


def test_attestation_signs_the_source_its_chain_proves_justified() -> None:
    """Finding 3: the vote carries the source read from the head's state; a lower source than the
    validator's last one is refused (no surround vote)."""
    b5 = child(GENESIS)
    src = Checkpoint(Height(3), BlockHash(H(b"justified")))
    head_state = STATE.copy()
    head_state.apply({keys.JUSTIFIED: encode(src)}, Height(5))
    att = attestation_for(P, b5, STATE, head_state, KEYS[0].pubkey, last_height=0, last_source_height=0)
    assert att is not None
    assert (att.source_height, att.source_hash) == (3, src.block_hash)
    assert (
        attestation_for(P, b5, STATE, head_state, KEYS[0].pubkey, last_height=0, last_source_height=4) is None
    )


def test_proposal_duty_and_backup_timing() -> None:
    y = b"\x07" * 100
    ranks = leader_ranks(y, eligible_validators(STATE, 1))
    for r, pk in enumerate(ranks):
        duty = proposal_duty(P, GENESIS, STATE, y, pk)
        assert duty is not None
        assert duty.rank == r
        assert duty.not_before_ms == earliest_time_ms(P, GENESIS.timestamp_ms, r)
    assert proposal_duty(P, GENESIS, STATE, y, KEYS[6].pubkey) is None
    backup = proposal_duty(P, GENESIS, STATE, y, ranks[1])
    assert backup is not None
    assert not should_propose(backup, backup.not_before_ms - 1, [])  # too early
    assert should_propose(backup, backup.not_before_ms, [])  # the leader is silent
    assert not should_propose(backup, backup.not_before_ms, [0])  # the leader's block is known
    assert should_propose(backup, backup.not_before_ms, [2])
    # mutant-found (issue 10): a rank whose own block is already known must not propose again
    assert not should_propose(backup, backup.not_before_ms, [backup.rank])
    assert not should_propose(backup, backup.not_before_ms + 10_000, [2, backup.rank])
