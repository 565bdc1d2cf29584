"""linguachaind.slashing_protection: one signature per height and kind, across restarts (PROTOCOL §5.3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chain.crypto import SecretKey
from chain.hashing import H
from linguachaind.slashing_protection import SlashingProtection, SlashingProtectionError

KEY = SecretKey.from_label("sp-validator").pubkey
A, B = H(b"block a"), H(b"block b")


def test_a_second_proposal_at_a_height_is_refused(tmp_path: Path) -> None:
    with SlashingProtection.open(tmp_path / "sp", KEY) as sp:
        assert sp.record_proposal(5, A)
        assert sp.record_proposal(5, A)  # the same header again: same signature, allowed
        assert not sp.record_proposal(5, B)
        assert sp.record_proposal(6, B)
        assert sp.proposed(5) == A


def test_a_second_attestation_at_a_height_is_refused(tmp_path: Path) -> None:
    with SlashingProtection.open(tmp_path / "sp", KEY) as sp:
        assert 7 not in sp
        assert sp.record_attestation(7, A)
        assert 7 in sp
        assert not sp.record_attestation(7, B)
        assert sp.record_attestation(7, A)
        assert sp.record_proposal(7, B)  # proposals and attestations are separate duties


def test_records_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "sp"
    with SlashingProtection.open(path, KEY) as sp:
        assert sp.record_proposal(10, A)
        assert sp.record_attestation(10, A)
    with SlashingProtection.open(path, KEY) as sp:
        assert not sp.record_proposal(10, B)
        assert not sp.record_attestation(10, B)
        assert 10 in sp
        assert sp.record_proposal(10, A)
        assert sp.record_proposal(11, B)


def test_pruned_heights_stay_refused_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "sp"
    with SlashingProtection.open(path, KEY, keep_heights=10) as sp:
        for h in range(1, 31):
            assert sp.record_attestation(h, A)
        assert sp.watermark == 20
        assert sp.attested(15) is None  # pruned
        assert 15 in sp
        assert not sp.record_attestation(15, B)
    with SlashingProtection.open(path, KEY, keep_heights=10) as sp:
        assert sp.watermark == 20
        assert not sp.record_proposal(20, B)
        assert sp.record_proposal(21, B)


def test_a_database_of_another_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sp"
    SlashingProtection.open(path, KEY).close()
    with pytest.raises(SlashingProtectionError, match="protects validator"):
        SlashingProtection.open(path, SecretKey.from_label("other").pubkey)


def test_votes_never_go_back_in_height_or_source_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "sp"
    with SlashingProtection.open(path, KEY) as sp:
        assert sp.last_vote() == (0, 0)
        assert sp.record_attestation(5, A, source_height=3)
        assert not sp.record_attestation(4, B, source_height=3)  # a lower height: refused
        assert not sp.record_attestation(6, B, source_height=2)  # a lower source: would surround
    with SlashingProtection.open(path, KEY) as sp:
        assert sp.last_vote() == (5, 3)
        assert not sp.record_attestation(6, B, source_height=2)
        assert sp.record_attestation(6, B, source_height=5)
        assert sp.last_vote() == (6, 5)
