"""Functional: the RPC surface of a real daemon: auth, error codes, robustness, datadir lock, restarts.

Owns: the acceptance checks "RPC without the cookie is refused", "malformed JSON, unknown methods,
wrong parameter types and oversized requests each get their error code and the daemon keeps
serving", "a second daemon on a locked datadir fails with a clear message", and SIGTERM/SIGKILL
restarts of one node. Must not: depend on block production (tests/functional/test_devnet_*.py do).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from linguachain_cli.rpc import RpcCallError, RpcClient
from tests.functional.framework import PYTHON, REPO, LinguaChainTestFramework

pytestmark = pytest.mark.functional

MAX_BODY = 64 * 1024


class RpcRobustnessTest(LinguaChainTestFramework):
    def set_test_params(self) -> None:
        self.num_nodes = 1
        self.extra_args = [[]]

    def setup_network(self) -> None:
        self.setup_nodes_with_small_limit()

    def setup_nodes_with_small_limit(self) -> None:
        super().setup_nodes()
        # A small body limit (set in the config file) keeps the oversized request cheap.
        node = self.nodes[0]
        node.stop_node()
        with (node.datadir / "linguachain.toml").open("a") as fh:
            fh.write(
                f'rpc_max_request_bytes = {MAX_BODY}\nrpc_user = "alice"\nrpc_password = "correct-horse"\n'
            )
        node.start()

    def run_test(self) -> None:
        node = self.nodes[0]
        port = node.rpc.port
        self.check_auth(node.datadir, port)
        self.check_error_codes(node.rpc)
        self.check_lock(node.datadir)
        self.check_restarts()

    def check_auth(self, datadir: Path, port: int) -> None:
        cookie = datadir / ".cookie"
        assert cookie.stat().st_mode & 0o777 == 0o600
        anonymous = RpcClient("127.0.0.1", port)
        status, body = anonymous.post(b'{"jsonrpc":"2.0","id":1,"method":"getnodeinfo"}')
        assert status == 401
        assert json.loads(body)["error"]["code"] == -32001
        wrong = RpcClient("127.0.0.1", port, user="__cookie__", password="0" * 64)
        with pytest.raises(RpcCallError) as exc:
            wrong.getnodeinfo()
        assert exc.value.code == -32001
        configured = RpcClient("127.0.0.1", port, user="alice", password="correct-horse")
        assert configured.getnodeinfo()["network"] == "devnet"
        # The CLI with a URL that carries user:password, and an RPC error as one line.
        cli = [PYTHON, "-m", "linguachain_cli.main", "--rpc", f"http://alice:correct-horse@127.0.0.1:{port}"]
        out = subprocess.run([*cli, "--json", "status"], capture_output=True, text=True, cwd=REPO, timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["node"]["network"] == "devnet"
        bad = subprocess.run(
            [*cli, "chain", "block", "999999"], capture_output=True, text=True, cwd=REPO, timeout=60
        )
        assert bad.returncode == 1
        assert bad.stderr.startswith("error: no block at height 999999")
        assert "(code -32005)" in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1

    def check_error_codes(self, rpc: RpcClient) -> None:
        def code_of(body: bytes) -> tuple[int, int]:
            status, raw = rpc.post(body)
            return status, json.loads(raw)["error"]["code"]

        assert code_of(b'{"jsonrpc": "2.0", "id": 1, "method": ') == (200, -32700)
        assert code_of(b"[1, 2") == (200, -32700)
        assert code_of(b'"just a string"') == (200, -32600)
        assert code_of(b'{"id": 1, "method": "getnodeinfo"}') == (200, -32600)  # no "jsonrpc": "2.0"
        assert code_of(b'{"jsonrpc": "2.0", "id": 1, "method": "nosuchmethod"}') == (200, -32601)
        assert code_of(b'{"jsonrpc": "2.0", "id": 1, "method": "getblockhash", "params": ["x"]}') == (
            200,
            -32602,
        )
        assert code_of(b'{"jsonrpc": "2.0", "id": 1, "method": "getblock", "params": [true]}') == (
            200,
            -32602,
        )
        assert code_of(b'{"jsonrpc": "2.0", "id": 1, "method": "getnodeinfo", "params": [1, 2]}') == (
            200,
            -32602,
        )
        big = b'{"jsonrpc": "2.0", "id": 1, "method": "getnodeinfo", "params": ["' + b"a" * MAX_BODY + b'"]}'
        assert code_of(big) == (413, -32002)
        # A batch answers each member on its own.
        _, raw = rpc.post(
            b'[{"jsonrpc":"2.0","id":1,"method":"uptime"},{"jsonrpc":"2.0","id":2,"method":"x"}]'
        )
        replies = json.loads(raw)
        assert "result" in replies[0]
        assert replies[1]["error"]["code"] == -32601
        # ... and the daemon keeps serving.
        assert rpc.getnodeinfo()["network"] == "devnet"

    def check_lock(self, datadir: Path) -> None:
        node = self.nodes[0]
        line = node.assert_start_raises_init_error("is in use by another linguachaind")
        assert str(datadir) in line
        assert node.getnodeinfo()["network"] == "devnet"  # the running node is unaffected

    def check_restarts(self) -> None:
        node = self.nodes[0]
        pubkey = node.getnodeinfo()["validator_pubkey"]
        assert node.stop_node() == 0  # SIGTERM: ordered stop, exit code 0
        assert not (node.datadir / ".cookie").exists()
        assert "EVENT stopped" in node.debug_log_tail()
        node.start()
        assert node.getnodeinfo()["validator_pubkey"] == pubkey
        node.kill()  # SIGKILL: the kernel drops the flock, the restart must not be blocked
        node.start()
        assert node.getnodeinfo()["validator_pubkey"] == pubkey
        # The `stop` RPC stops it too.
        assert node.stop() == "linguachaind stopping"
        assert node.stop_node() == 0
        # ... and so does `linguachaind stop --datadir` (SIGTERM to the pid file, waits for the exit).
        node.start()
        out = subprocess.run(
            [PYTHON, "-m", "linguachaind", "stop", "--datadir", str(node.datadir)],
            capture_output=True, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("stopped linguachaind")
        assert node.stop_node() == 0
        again = subprocess.run(
            [PYTHON, "-m", "linguachaind", "stop", "--datadir", str(node.datadir)],
            capture_output=True, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip
        assert again.returncode == 1
        assert "no linguachaind is running" in again.stderr


def test_rpc_auth_errors_lock_restart(tmp_path: Path) -> None:
    RpcRobustnessTest().main(tmp_path)
