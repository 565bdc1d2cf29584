"""Functional (issue 12): a real daemon under the requests that used to stop or starve it, and a fuzz
target over raw HTTP bytes and JSON-RPC bodies.

Owns: against one real `linguachaind` process: `HEAD /` and `HEAD /metrics` (curl -I) answer headers
only and the node lives; JSON nested 1,500 deep and a 4,400-digit integer answer PARSE_ERROR; "²" and
4,000-digit strings as `block`/`target` answer INVALID_PARAMS from the real methods, and so does
`setmocktime` past 2100 (2^63 used to stop the producer); 200 idle and 64 slow connections do not
keep an authenticated call or the CLI out; then hypothesis sends random bytes and random JSON-RPC
requests (authenticated; every method but `stop`, `setmocktime` and `addpeer`) for a fixed budget
(60 + 60 examples; 2,000 + 2,000 with `LC_SLOW=1`, about 15 minutes). Throughout, the process stays
up and its RSS grows by less than 100 MiB. Must not: depend on block production.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.functional.framework import LinguaChainTestFramework, TestNode, wait_until

pytestmark = pytest.mark.functional

SLOW = os.environ.get("LC_SLOW") == "1"
EXAMPLES = 2_000 if SLOW else 60
SKIP_METHODS = {"stop", "setmocktime", "addpeer"}  # they stop, re-time or dial: not the property tested


def _endpoint(node: TestNode) -> tuple[int, str]:
    port = int((node.datadir / ".rpcport").read_text())
    cookie = (node.datadir / ".cookie").read_text().strip()
    return port, "Basic " + base64.b64encode(cookie.encode()).decode()


def _exchange(port: int, raw: bytes, *, timeout: float = 5.0, expect_reply: bool = True) -> bytes:
    """Send raw bytes, read until the server closes or has sent one whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                if expect_reply:
                    raise
                return data
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = next(
                    (int(v) for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n"))
                     if k.strip().lower() == b"content-length"),
                    0,
                )  # fmt: skip
                if head.startswith(b"HTTP/1.1") and (raw.startswith(b"HEAD") or len(body) >= length):
                    return data


def _post(port: int, auth: str, body: bytes) -> tuple[int, Any]:
    raw = (
        b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % (auth.encode(), len(body))
        + body
    )
    data = _exchange(port, raw)
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload) if payload else None


def _call(port: int, auth: str, method: str, params: Any) -> Any:
    doc = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return _post(port, auth, json.dumps(doc).encode())[1]


class RpcAbuseTest(LinguaChainTestFramework):
    def set_test_params(self) -> None:
        self.num_nodes = 1

    def run_test(self) -> None:
        node = self.nodes[0]
        assert node.process is not None
        self.proc = psutil.Process(node.process.pid)
        self.rss0 = self.proc.memory_info().rss
        port, auth = _endpoint(node)
        self.check_head(node, port)
        self.check_parse_and_params(node, port, auth)
        self.check_flood(node, port)
        self.fuzz(node, port, auth)
        self.assert_alive(node)

    def assert_alive(self, node: TestNode) -> None:
        assert node.running, f"the daemon died:\n{node.stderr_tail()}"
        assert node.getblockchaininfo()["network"] == "devnet"
        growth = (self.proc.memory_info().rss - self.rss0) / 2**20
        assert growth < 100, f"RSS grew by {growth:.0f} MiB"

    def check_head(self, node: TestNode, port: int) -> None:
        for target, status in ((b"/", b"405"), (b"/metrics", b"200")):
            data = _exchange(port, b"HEAD " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.split()[1] == status
            assert body == b""
        self.assert_alive(node)

    def check_parse_and_params(self, node: TestNode, port: int, auth: str) -> None:
        for body in (b"[" * 1500 + b"]" * 1500, b'{"id":' + b"7" * 4400 + b"}"):
            status, reply = _post(port, auth, body)
            assert (status, reply["error"]["code"]) == (200, -32700)
        for method in ("getblock", "getblockheader", "explainrewards"):
            for value in ("²", "7" * 4000, 2**64):
                reply = _call(port, auth, method, [value])
                assert reply["error"]["code"] == -32602, (method, value, reply)
        assert node.getblockheader(0)["height"] == 0
        for stamp in (2**63 - 1, 4_102_444_800_001, -1):  # 2^63 used to stop the producer
            assert _call(port, auth, "setmocktime", [stamp])["error"]["code"] == -32602
        assert _call(port, auth, "setmocktime", [0])["result"] == 0
        self.assert_alive(node)

    def check_flood(self, node: TestNode, port: int) -> None:
        held: list[socket.socket] = []
        try:
            for i in range(264):  # 200 idle, 64 with a request head begun and never finished
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                if i >= 200:
                    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
                held.append(s)
            assert node.getblockchaininfo()["height"] >= 0  # the operator's RPC gets through
            assert node.cli("status")["node"]["peer_id"]  # and the CLI
        finally:
            for s in held:
                s.close()
        wait_until(lambda: node.getnodeinfo()["ready"], timeout=10, what="RPC after the flood")

    def fuzz(self, node: TestNode, port: int, auth: str) -> None:
        listed = node.help()
        names = {m["method"] if isinstance(m, dict) else str(m) for m in listed}
        methods = sorted(names - SKIP_METHODS)
        budget = settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )

        @budget
        @given(st.binary(max_size=2048))
        def raw_bytes(data: bytes) -> None:
            _exchange(port, data, timeout=0.3, expect_reply=False)

        json_values = st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
            lambda inner: (
                st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
            ),
            max_leaves=12,
        )

        @budget
        @given(st.sampled_from(methods), json_values, st.one_of(st.integers(), st.text(max_size=8)))
        def json_bodies(method: str, params: Any, req_id: Any) -> None:
            doc = {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}
            status, reply = _post(port, auth, json.dumps(doc).encode())
            assert status in (200, 413)
            if reply is not None and "error" in reply:
                assert reply["error"]["code"] != -32603, f"INTERNAL_ERROR for {doc}: {reply}"

        raw_bytes()
        self.assert_alive(node)
        json_bodies()
        self.assert_alive(node)


@pytest.mark.timeout(2400 if SLOW else 600)
def test_rpc_abuse(tmp_path: Path) -> None:
    RpcAbuseTest().main(tmp_path)
