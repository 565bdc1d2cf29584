"""Functional: the `scripts/devnet` contract (`up`, `start-node`, `down`, accounts.json, pid files).

Owns: checking the commands that scripts and tests outside this repository rely on. Runs the Python
behind `scripts/devnet` (`python -m linguachaind.devnet_tool`) so the bootstrap step is skipped.
Must not: depend on block production.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from linguachain_cli.rpc import RpcClient
from tests.functional.framework import PYTHON, REPO, reap_all

pytestmark = pytest.mark.functional


def _devnet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "linguachaind.devnet_tool", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=180,
    )


def test_up_start_node_down(tmp_path: Path) -> None:
    root = tmp_path / "dn"
    try:
        up = _devnet("up", "--nodes", "2", "--dir", str(root))
        assert up.returncode == 0, up.stderr
        for k in range(2):
            assert f"linguachain-cli --datadir {root / f'node{k}'}" in up.stdout
            assert (root / f"node{k}" / "linguachaind.pid").exists()
        accounts = json.loads((root / "accounts.json").read_text())
        assert {"name", "address", "secret_key_hex"} <= set(accounts[0])
        assert accounts[0]["address"].startswith("rlc1")
        infos = [RpcClient.from_datadir(root / f"node{k}").getnodeinfo() for k in range(2)]
        assert len({i["genesis_hash"] for i in infos}) == 1
        assert infos[0]["validator_pubkey"] != infos[1]["validator_pubkey"]
        port = RpcClient.from_datadir(root / "node1").port

        stop = _devnet("stop-node", "--dir", str(root), "--node", "1")
        assert stop.returncode == 0, stop.stderr
        assert not (root / "node1" / "linguachaind.pid").exists()
        again = _devnet("start-node", "--dir", str(root), "--node", "1")
        assert again.returncode == 0, again.stderr
        assert RpcClient.from_datadir(root / "node1").port == port  # original flags: same port
        assert (
            RpcClient.from_datadir(root / "node1").getnodeinfo()["validator_pubkey"]
            == infos[1]["validator_pubkey"]
        )
        # `up` on a running devnet is idempotent.
        assert _devnet("up", "--nodes", "2", "--dir", str(root)).returncode == 0
    finally:
        down = _devnet("down", "--dir", str(root))
        reap_all()
    assert down.returncode == 0, down.stderr
    assert "stopped 2 node(s)" in down.stdout
    for k in range(2):
        assert not (root / f"node{k}" / "linguachaind.pid").exists()
