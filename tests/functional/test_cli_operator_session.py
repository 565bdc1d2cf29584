"""Functional: one single-node `linguachaind start` and the operator habits around it (issue 16).

Owns: the single-node devnet's `accounts.json`, `wallet send` refusing an amount the wallet cannot
pay with balance versus amount plus fee, the raw `rpc` pass-through, `--json` after the command,
`waitforheight`, `stop` from the CLI, and a second daemon on a taken RPC port failing with one line
naming the port and the flag. Must not: depend on more than one node.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from chain.address import decode_address
from chain.codec import encode
from chain.crypto import SecretKey
from chain.tx import Transfer, make_tx
from chain.types import Amount, ChainId
from linguachain_cli.rpc import RpcCallError
from tests.functional.framework import PYTHON, REPO, TestNode, reap_all

pytestmark = pytest.mark.functional


def _cli(datadir: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "LINGUACHAIN_PASSPHRASE": "operator-test"}
    env.pop("LINGUACHAIN_WALLET_DIR", None)
    return subprocess.run(
        [PYTHON, "-m", "linguachain_cli.main", "--datadir", str(datadir), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )


def test_single_node_operator_session(tmp_path: Path) -> None:
    node = TestNode(0, tmp_path / "node0")
    node.datadir.mkdir()
    try:
        node.start()
        accounts = json.loads((node.datadir / "accounts.json").read_text())
        assert accounts[0]["name"] == "dev0"
        assert (node.datadir / "accounts.json").stat().st_mode & 0o077 == 0
        d = node.datadir
        assert _cli(d, tmp_path, "wallet", "import", "--name", "dev0", "--secret-key-hex",
                    accounts[0]["secret_key_hex"]).returncode == 0  # fmt: skip
        assert _cli(d, tmp_path, "wallet", "create", "--name", "empty").returncode == 0
        dev0 = accounts[0]["address"]

        broke = _cli(d, tmp_path, "wallet", "send", "--from", "empty", dev0, "2.5")
        assert broke.returncode == 1
        assert broke.stderr.startswith("error: insufficient balance (INSUFFICIENT_BALANCE): ")
        assert (
            "has 0.00000000 LC, needs 2.50010000 LC = amount 2.50000000 LC + fee 0.00010000 LC"
            in broke.stderr
        )
        assert len(broke.stderr.splitlines()) == 1

        sent = _cli(d, tmp_path, "wallet", "send", "--from", "dev0", "empty", "1", "--wait", "60", "--json")
        assert sent.returncode == 0, sent.stderr
        height = json.loads(sent.stdout)["height"]
        block_hash = _cli(d, tmp_path, "rpc", "getblockhash", str(height))
        assert block_hash.returncode == 0, block_hash.stderr
        assert block_hash.stdout.strip() == json.loads(sent.stdout)["block_hash"]
        named = _cli(d, tmp_path, "rpc", "--named", "getblock", f"block={height}", "verbosity=0")
        assert json.loads(named.stdout)["hash"] == block_hash.stdout.strip()
        waited = _cli(d, tmp_path, "waitforheight", str(height + 1), "--final", "--json")
        assert json.loads(waited.stdout)["final_height"] >= height + 1

        # The node's own answer carries the figures too (a tx the CLI did not build).
        key = SecretKey.generate()
        payload = Transfer(decode_address(dev0), Amount(100), b"")
        tx = make_tx(key, ChainId(node.getnodeinfo()["chain_id"]), 0, 10_000, payload)
        with pytest.raises(RpcCallError) as refused:
            node.sendrawtransaction(encode(tx).hex())
        assert refused.value.data["reason"] == "INSUFFICIENT_BALANCE"
        assert {k: refused.value.data[k] for k in ("balance", "amount", "fee", "needed")} == {
            "balance": 0, "amount": 100, "fee": 10_000, "needed": 10_100
        }  # fmt: skip
        assert "balance 0 < amount 100 + fee 10000" in refused.value.message
        assert node.getblockchaininfo()["sync_progress"] == 1.0  # alone: nothing to catch up with

        clash = node.datadir.parent / "node1"
        other = subprocess.run(
            [PYTHON, "-m", "linguachaind", "start", "--datadir", str(clash), "--quiet",
             "--rpc-port", str(node.rpc.port)],
            capture_output=True, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip
        assert other.returncode == 1
        err = other.stderr.strip().splitlines()[-1]
        assert err == (
            f"error: port {node.rpc.port} on 127.0.0.1 is already in use; it is the RPC port: "
            "choose another with --rpc-port P (or rpc_port in linguachain.toml)"
        )
        assert "Traceback" not in other.stderr

        stopped = _cli(d, tmp_path, "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip() == "linguachaind stopping"
        assert node.stop_node() == 0
    finally:
        reap_all()
