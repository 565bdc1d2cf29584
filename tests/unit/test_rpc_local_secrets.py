"""Issue 12 findings 4-6 (local side): file modes, private temp files, init on the right network,
config limits, the wallet keystore under concurrent creation and damage, the p2p key's mode.

Each test does what an attacker on the same machine or an operator's mistake would, on real files.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from pathlib import Path

import pytest

from chain.crypto import SecretKey
from chain.errors import ConfigError, LinguaChainError
from linguachain_cli.keystore import Keystore, KeystoreError
from linguachaind.config import CONFIG_FILE, build_config
from linguachaind.datadir import Layout, ensure_dirs, write_private
from linguachaind.main import init_datadir
from p2p.host import load_or_create_key


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def loose_umask() -> object:
    old = os.umask(0)  # the worst case: files are created 0666 unless the code says otherwise
    yield None
    os.umask(old)


# -- finding 4: the datadir and the config file --------------------------------------------------


def test_init_makes_datadir_0700_and_config_0600(tmp_path: Path, loose_umask: object) -> None:
    root = init_datadir(
        network="devnet", datadir=tmp_path / "dd", genesis_file=None, validators=1,
        dev_validator=None, settings={}, force=False,
    )  # fmt: skip
    assert _mode(root) == 0o700
    assert _mode(root / CONFIG_FILE) == 0o600
    assert _mode(root / "keys") == 0o700
    assert _mode(root / "keys" / "validator.key") == 0o600
    assert _mode(root / "keys" / "p2p.key") == 0o600


def test_an_existing_open_datadir_is_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "dd"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    with caplog.at_level(logging.WARNING):
        ensure_dirs(Layout(root))
    assert _mode(root) == 0o700
    assert "accessible to other users" in caplog.text


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_readable_config_holding_a_password_is_refused(tmp_path: Path, mode: int) -> None:
    d = tmp_path / "dd"
    d.mkdir()
    cfg = d / CONFIG_FILE
    cfg.write_text('network = "devnet"\nrpc_user = "op"\nrpc_password = "secret-password"\n')
    os.chmod(cfg, mode)
    with pytest.raises(ConfigError, match="chmod 600"):
        build_config({"datadir": str(d)}, {})
    os.chmod(cfg, 0o600)
    assert build_config({"datadir": str(d)}, {}).rpc_password == "secret-password"


def test_a_readable_config_without_a_password_is_fine(tmp_path: Path) -> None:
    d = tmp_path / "dd"
    d.mkdir()
    (d / CONFIG_FILE).write_text('network = "devnet"\nrpc_port = 1234\n')
    os.chmod(d / CONFIG_FILE, 0o644)
    assert build_config({"datadir": str(d)}, {}).rpc_port == 1234


# -- finding 5: --dev-validator only on devnet ----------------------------------------------------


@pytest.mark.parametrize("network", ["testnet", "mainnet"])
def test_dev_validator_is_refused_off_devnet(tmp_path: Path, network: str) -> None:
    with pytest.raises(ConfigError, match="only for devnet"):
        init_datadir(
            network=network, datadir=tmp_path / "dd", genesis_file=None, validators=1,
            dev_validator=3, settings={}, force=False,
        )  # fmt: skip
    assert not (tmp_path / "dd" / "keys").exists()  # refused before anything was written


# -- finding 6: config limits, private temp files, keys, keystore --------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "1e9"])
def test_rpc_read_timeout_must_be_finite_and_sane(tmp_path: Path, value: str) -> None:
    d = tmp_path / "dd"
    d.mkdir()
    (d / CONFIG_FILE).write_text('network = "devnet"\n')
    with pytest.raises(ConfigError, match="rpc_read_timeout_s"):
        build_config({"datadir": str(d)}, {"LINGUACHAIN_RPC_READ_TIMEOUT_S": value})


def test_write_private_ignores_a_planted_temp_file(tmp_path: Path, loose_umask: object) -> None:
    target = tmp_path / "validator.key"
    for name in (f".{target.name}.tmp{os.getpid()}", f".{target.name}.tmp"):  # the old fixed names
        planted = tmp_path / name
        planted.write_text("planted")
        os.chmod(planted, 0o666)
    write_private(target, b"secret")
    assert _mode(target) == 0o600
    assert target.read_bytes() == b"secret"
    with pytest.raises(FileExistsError):
        write_private(target, b"other", exclusive=True)
    assert target.read_bytes() == b"secret"


def test_p2p_key_readable_by_others_is_refused(tmp_path: Path, loose_umask: object) -> None:
    keys = tmp_path / "keys"
    load_or_create_key(keys)
    path = keys / "p2p.key"
    assert _mode(path) == 0o600
    os.chmod(path, 0o644)
    with pytest.raises(LinguaChainError, match="chmod 600"):
        load_or_create_key(keys)
    os.chmod(path, 0o600)
    load_or_create_key(keys)


def test_wallet_file_is_0600_despite_a_leftover_temp_file(tmp_path: Path, loose_umask: object) -> None:
    ks = Keystore(tmp_path, "devnet")
    ks.dir.mkdir(parents=True)
    leftover = ks.dir / f".alice.json.tmp{os.getpid()}"
    leftover.write_text("{}")
    os.chmod(leftover, 0o644)
    entry = ks.add("alice", SecretKey.from_label("a"), "pass phrase")
    assert _mode(entry.path) == 0o600


def test_two_concurrent_wallet_creates_never_overwrite(tmp_path: Path) -> None:
    ks = Keystore(tmp_path, "devnet")
    keys = [SecretKey.from_label(f"k{i}") for i in range(2)]
    start = threading.Barrier(2)
    outcome: list[str] = []
    refusals: list[str] = []

    def create(key: SecretKey) -> None:
        start.wait()
        try:
            ks.add("same", key, "pass phrase")
            outcome.append(key.pubkey.hex())
        except KeystoreError as exc:
            refusals.append(str(exc))

    threads = [threading.Thread(target=create, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcome) == 1  # exactly one create succeeded
    assert len(refusals) == 1
    assert "already exists" in refusals[0]
    assert ks.unlock("same", "pass phrase").pubkey.hex() == outcome[0]  # and its key is the one stored
    assert [p.name for p in ks.dir.iterdir()] == ["same.json"]  # no temp file left behind


def test_empty_passphrase_is_refused(tmp_path: Path) -> None:
    ks = Keystore(tmp_path, "devnet")
    with pytest.raises(KeystoreError, match="empty passphrase"):
        ks.add("alice", SecretKey.from_label("a"), "")
    ks.add("alice", SecretKey.from_label("a"), "x")
    with pytest.raises(KeystoreError, match="empty passphrase"):
        ks.unlock("alice", "")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("salt", "00"),
        ("salt", "zz" * 16),
        ("ciphertext", "ab"),
        ("opslimit", "many"),
        ("opslimit", 0),
        ("memlimit", [1]),
        ("memlimit", 2**62),
        ("pubkey", None),
    ],
)
def test_a_damaged_wallet_is_reported_as_damaged(tmp_path: Path, field: str, value: object) -> None:
    ks = Keystore(tmp_path, "devnet")
    entry = ks.add("alice", SecretKey.from_label("a"), "right")
    doc = json.loads(entry.path.read_text())
    doc[field] = value
    entry.path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="damaged"):
        ks.unlock("alice", "right")


def test_altered_ciphertext_names_both_causes(tmp_path: Path) -> None:
    ks = Keystore(tmp_path, "devnet")
    entry = ks.add("alice", SecretKey.from_label("a"), "right")
    doc = json.loads(entry.path.read_text())
    last = "00" if doc["ciphertext"][-2:] != "00" else "11"
    doc["ciphertext"] = doc["ciphertext"][:-2] + last
    entry.path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match=r"wrong passphrase .*altered"):
        ks.unlock("alice", "right")
