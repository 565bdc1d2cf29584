"""The evidence reporter's vote index (linguachaind/services/vote_index.py, PROTOCOL §5.3): its
O(log n) surround lookup finds what a scan of every kept vote finds (random vote sequences against
the scan), the cap drops the lowest heights, pruning leaves the evidence window, and the reporter
turns a surround it sees into verified SURROUND_VOTE evidence on the real chain service."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from chain.consensus.slashing import evidence_key, verify_evidence
from chain.crypto import SecretKey
from chain.errors import ErrorCode
from chain.evidence import EvidenceKind
from chain.hashing import H
from chain.header import Attestation
from chain.params import DEVNET
from chain.types import BlockHash, Height, PubKey
from linguachaind.services.vote_index import VoteIndex
from tests.unit.test_services_evidence import close, evidence_of, grow, open_net

KEYS = [SecretKey.from_label(f"vote-index-{i}").pubkey for i in range(3)]


def vote(validator: PubKey, source: int, target: int) -> Attestation:
    block = BlockHash(H(b"block" + target.to_bytes(8, "big") + validator))
    src = BlockHash(H(b"block" + source.to_bytes(8, "big")))
    return Attestation(DEVNET.chain_id, Height(target), block, Height(source), src, validator)


def nests(outer: Attestation, inner: Attestation) -> bool:
    return outer.source_height < inner.source_height and inner.height < outer.height


spans = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 25), st.integers(1, 12)).map(
        lambda t: (t[0], t[1], t[1] + t[2])  # validator, source, target > source
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(spans)
def test_the_index_finds_what_a_scan_of_every_kept_vote_finds(votes: list[tuple[int, int, int]]) -> None:
    """Exact for every validator not yet caught surrounding; a reported pair always nests."""
    index = VoteIndex(limit=10_000)
    kept: dict[tuple[int, PubKey], Attestation] = {}
    caught: set[PubKey] = set()
    for i, source, target in votes:
        att = vote(KEYS[i], source, target)
        found = index.surrounding(att)
        scan = [
            old
            for (_, pk), old in kept.items()
            if pk == att.validator and (nests(old, att) or nests(att, old))
        ]
        if found is not None:
            outer, inner = found
            assert att in found
            assert outer.validator == inner.validator == att.validator
            assert nests(outer, inner)
        if att.validator not in caught:
            assert (found is not None) == bool(scan)
        if scan:
            caught.add(att.validator)
        if (target, att.validator) not in kept:
            kept[(target, att.validator)] = att
        index.add(att)
        assert len(index) == len(kept)


def test_the_cap_drops_the_lowest_heights_and_pruning_leaves_the_window() -> None:
    index = VoteIndex(limit=5)
    for h in range(1, 9):
        assert index.add(vote(KEYS[0], h - 1, h))
    assert not index.add(vote(KEYS[0], 0, 8))  # its slot is taken: the first vote stays
    assert len(index) == 5
    assert index.get((3, KEYS[0])) is None
    assert index.get((4, KEYS[0])) is not None
    assert index.surrounding(vote(KEYS[0], 0, 9)) is not None  # (0, 9) contains (3..7, 4..8)
    assert index.surrounding(vote(KEYS[0], 1, 3)) is None  # (1, 3) nests only in dropped votes
    index.prune(6)
    assert len(index) == 2
    assert index.surrounding(vote(KEYS[0], 7, 10)) is None  # beside (6, 7) and (7, 8), not around
    index.prune(100)
    assert len(index) == 0


def test_the_reporter_turns_a_surround_into_verified_evidence(tmp_path: Path) -> None:
    n = open_net(tmp_path, ("alice", "bob", "validator0", "validator1"))
    try:
        grow(n, 3)
        cheat = n.cheat.key
        tip = n.chain.tip_header()
        one, two = n.chain.store.hash_at(1), n.chain.store.hash_at(2)
        assert one is not None
        assert two is not None
        inner = Attestation(
            DEVNET.chain_id,
            Height(2),
            two,
            Height(1),
            one,
            cheat.pubkey,
        ).signed(cheat)
        outer = Attestation(
            DEVNET.chain_id, tip.height, BlockHash(tip.hash), Height(0), BlockHash(bytes(32)), cheat.pubkey
        ).signed(cheat)
        n.reporter.saw_attestation(inner, verified=False)
        assert n.reporter.submitted == []
        n.reporter.saw_attestation(outer, verified=False)
        assert len(n.reporter.submitted) == 1
        proof = evidence_of(n.reporter.submitted[0]).evidence
        assert proof.kind is EvidenceKind.SURROUND_VOTE
        found = verify_evidence(DEVNET, n.chain.reader(), proof)
        assert found == (
            cheat.pubkey,
            evidence_key(EvidenceKind.SURROUND_VOTE, cheat.pubkey, int(tip.height)),
        )
        n.reporter.saw_attestation(outer, verified=False)  # the same fault again: reported once
        assert len(n.reporter.submitted) == 1
        assert not isinstance(found, ErrorCode)
    finally:
        close(n)
