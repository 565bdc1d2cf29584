"""Unit tests of the datadir: lock, private key files, cookie, init (linguachaind.datadir, main)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from chain.errors import ConfigError
from chain.genesis import load_genesis
from linguachaind.datadir import (
    DatadirLock,
    DatadirLockedError,
    Layout,
    load_or_create_seed,
    write_cookie,
    write_private,
)
from linguachaind.devgenesis import dev_accounts, dev_validator_key, devnet_genesis_doc
from linguachaind.main import init_datadir


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    with DatadirLock(layout):
        with pytest.raises(DatadirLockedError, match=f"pid {os.getpid()}"):
            DatadirLock(layout).acquire()
        code = (
            "import sys; from pathlib import Path; from linguachaind.datadir import *\n"
            "try:\n    DatadirLock(Layout(Path(sys.argv[1]))).acquire()\nexcept DatadirLockedError as e:\n"
            "    print(e); sys.exit(3)\n"
        )
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
        assert proc.returncode == 3
        assert "in use by another linguachaind" in proc.stdout
    DatadirLock(layout).acquire()  # released: free again


def test_private_files_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "validator.key"
    seed = load_or_create_seed(path)
    assert _mode(path) == 0o600
    assert load_or_create_seed(path) == seed
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_or_create_seed(path)
    write_private(tmp_path / "x", b"data")
    assert (tmp_path / "x").read_bytes() == b"data"
    assert not list(tmp_path.glob(".x.tmp*"))


def test_cookie_is_new_each_time(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    a = write_cookie(layout)
    b = write_cookie(layout)
    assert a != b
    assert layout.cookie.read_text() == f"__cookie__:{b}"
    assert _mode(layout.cookie) == 0o600


def test_init_devnet_datadir(tmp_path: Path) -> None:
    root = init_datadir(
        network="devnet", datadir=tmp_path / "n", genesis_file=None, validators=1,
        dev_validator=None, settings={"rpc_port": 0}, force=False,
    )  # fmt: skip
    layout = Layout(root)
    assert _mode(layout.keys) == 0o700
    assert _mode(layout.validator_key) == 0o600
    assert bytes.fromhex(layout.validator_key.read_text().strip()) == dev_validator_key(0).seed
    genesis = load_genesis(layout.genesis)
    assert genesis.validators[0].validator == dev_validator_key(0).pubkey
    with pytest.raises(ConfigError, match="already initialised"):
        init_datadir(
            network="devnet", datadir=root, genesis_file=None, validators=1,
            dev_validator=None, settings={}, force=False,
        )  # fmt: skip
    with pytest.raises(ConfigError, match="needs the network's genesis file"):
        init_datadir(
            network="testnet", datadir=tmp_path / "t", genesis_file=None, validators=1,
            dev_validator=None, settings={}, force=False,
        )  # fmt: skip


def test_shared_genesis_and_accounts(tmp_path: Path) -> None:
    doc = devnet_genesis_doc(3, 2, timestamp_ms=1_700_000_000_000)
    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc))
    roots = [
        init_datadir(
            network="devnet",
            datadir=tmp_path / f"n{i}",
            genesis_file=path,
            validators=3,
            dev_validator=i,
            settings={},
            force=False,
        )
        for i in range(3)
    ]
    ids = {load_genesis(Layout(r).genesis).id for r in roots}
    assert len(ids) == 1
    accounts = dev_accounts(2, 3)
    assert [a["name"] for a in accounts] == ["dev0", "dev1", "validator0", "validator1", "validator2"]
    assert {a["address"] for a in accounts[:2]} == {x["address"] for x in doc["allocations"][:2]}
    assert all(len(a["secret_key_hex"]) == 64 for a in accounts)
