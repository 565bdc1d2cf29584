"""Unit tests of the CLI's encrypted keystore and amount parsing (linguachain_cli.keystore, .output)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from chain.address import address_of
from chain.crypto import SecretKey
from linguachain_cli.keystore import Keystore, KeystoreError
from linguachain_cli.output import AmountError, format_lc, parse_lc


def test_add_unlock_list(tmp_path: Path) -> None:
    ks = Keystore(tmp_path, "devnet")
    key = SecretKey.from_label("k")
    entry = ks.add("alice", key, "pass phrase")
    assert entry.address == address_of(key.pubkey, "rlc")
    assert stat.S_IMODE(entry.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ks.dir.stat().st_mode) == 0o700
    raw = entry.path.read_text()
    assert key.seed.hex() not in raw  # the seed is only stored encrypted
    doc = json.loads(raw)
    assert doc["kdf"] == "argon2id"
    assert doc["version"] == 1
    assert ks.unlock("alice", "pass phrase").pubkey == key.pubkey
    assert [e.name for e in ks.list()] == ["alice"]
    assert Keystore(tmp_path, "testnet").list() == []  # wallets are per network


def test_errors(tmp_path: Path) -> None:
    ks = Keystore(tmp_path, "devnet")
    ks.add("alice", SecretKey.from_label("k"), "right")
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        ks.unlock("alice", "wrong")
    with pytest.raises(KeystoreError, match="already exists"):
        ks.add("alice", SecretKey.from_label("k2"), "x")
    with pytest.raises(KeystoreError, match="no wallet named 'bob'"):
        ks.get("bob")
    with pytest.raises(KeystoreError, match="invalid wallet name"):
        ks.get("../etc/passwd")
    path = ks.dir / "alice.json"
    doc = json.loads(path.read_text())
    doc["pubkey"] = SecretKey.from_label("other").pubkey.hex()
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="damaged"):
        ks.unlock("alice", "right")


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("1", 100_000_000),
        ("1.5", 150_000_000),
        ("0.00000001", 1),
        ("1_000", 100_000_000_000),
        (" 2 ", 200_000_000),
    ],
)
def test_parse_lc(text: str, units: int) -> None:
    assert parse_lc(text) == units


@pytest.mark.parametrize("text", ["0", "-1", "1.000000001", "abc", "nan", "inf", "1e30"])
def test_parse_lc_rejects(text: str) -> None:
    with pytest.raises(AmountError):
        parse_lc(text)


def test_format_lc() -> None:
    assert format_lc(0) == "0.00000000 LC"
    assert format_lc(150_000_001) == "1.50000001 LC"
    assert format_lc(-5) == "-0.00000005 LC"
