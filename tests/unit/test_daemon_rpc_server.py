"""Unit tests of the RPC server in-process: HTTP parsing, auth, error codes, limits, deadlines."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import trio

from linguachaind.rpc.errors import RpcError, RpcErrorCode
from linguachaind.rpc.http import HttpServer
from linguachaind.rpc.server import Credentials, Method, Param, RpcDispatcher, bind_params

AUTH = "Basic " + base64.b64encode(b"__cookie__:pw").decode()


async def _echo(x: int, y: str = "d") -> dict[str, Any]:
    return {"x": x, "y": y}


async def _boom() -> None:
    raise ZeroDivisionError("bug")


async def _refuse() -> None:
    raise RpcError(RpcErrorCode.NOT_FOUND, "nope", {"k": 1})


METHODS = [
    Method("echo", _echo, (Param("x", (int,)), Param("y", (str,), "d"))),
    Method("boom", _boom),
    Method("refuse", _refuse),
    Method("dev", _boom, devnet_only=True),
]


async def _request(port: int, raw: bytes) -> tuple[int, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw)
        data = b""
        with trio.fail_after(5):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
                head, sep, body = data.partition(b"\r\n\r\n")
                if sep:
                    length = next(
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                    if len(body) >= length:
                        break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _post(body: bytes, auth: str | None = AUTH) -> bytes:
    headers = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    if auth:
        headers += f"Authorization: {auth}\r\n"
    return headers.encode() + b"\r\n" + body


@pytest.fixture
async def server(nursery: trio.Nursery) -> HttpServer:
    d = RpcDispatcher(METHODS, [Credentials("__cookie__", "pw")], metrics=lambda: b"m 1\n")
    srv = HttpServer(d.handle, d.too_large, port=0, max_body=2048, read_timeout_s=0.5)
    await nursery.start(srv.run)
    return srv


async def _call(srv: HttpServer, doc: Any) -> tuple[int, Any]:
    status, body = await _request(srv.port, _post(json.dumps(doc).encode()))
    return status, json.loads(body) if body else None


async def test_ok_named_and_positional(server: HttpServer) -> None:
    _, r = await _call(server, {"jsonrpc": "2.0", "id": 7, "method": "echo", "params": [1]})
    assert r == {"jsonrpc": "2.0", "id": 7, "result": {"x": 1, "y": "d"}}
    _, r = await _call(server, {"jsonrpc": "2.0", "id": "a", "method": "echo", "params": {"x": 2, "y": "z"}})
    assert r["result"] == {"x": 2, "y": "z"}


@pytest.mark.parametrize(
    ("doc", "code"),
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "nope"}, -32601),
        ({"jsonrpc": "2.0", "id": 1, "method": "echo"}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": ["1"]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": [True]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"z": 1}}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": 5}, -32602),
        ({"jsonrpc": "1.0", "id": 1, "method": "echo"}, -32600),
        ({"jsonrpc": "2.0", "id": [1], "method": "echo"}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": 5}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": "boom"}, -32603),
        ({"jsonrpc": "2.0", "id": 1, "method": "refuse"}, -32005),
        ({"jsonrpc": "2.0", "id": 1, "method": "dev"}, -32004),
        ([], -32600),
    ],
)
async def test_error_codes(server: HttpServer, doc: Any, code: int) -> None:
    status, r = await _call(server, doc)
    assert status == 200
    assert r["error"]["code"] == code
    _, ok = await _call(server, {"jsonrpc": "2.0", "id": 1, "method": "echo", "params": [1]})
    assert "result" in ok


async def test_parse_error_auth_size_and_metrics(server: HttpServer) -> None:
    status, body = await _request(server.port, _post(b"{not json"))
    assert (status, json.loads(body)["error"]["code"]) == (200, -32700)
    status, body = await _request(server.port, _post(b"{}", auth=None))
    assert (status, json.loads(body)["error"]["code"]) == (401, -32001)
    bad = "Basic " + base64.b64encode(b"__cookie__:wrong").decode()
    status, _ = await _request(server.port, _post(b"{}", auth=bad))
    assert status == 401
    status, body = await _request(server.port, _post(b"x" * 4096))
    assert (status, json.loads(body)["error"]["code"]) == (413, -32002)
    status, body = await _request(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == (200, b"m 1\n")


async def test_chunked_body_over_limit_is_refused(server: HttpServer) -> None:
    chunk = b"x" * 1500
    raw = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        + b"Authorization: " + AUTH.encode() + b"\r\n\r\n"
        + b"%x\r\n" % len(chunk) + chunk + b"\r\n" + b"%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n"
    )  # fmt: skip
    status, _ = await _request(server.port, raw)
    assert status == 413


async def test_notification_and_batch(server: HttpServer) -> None:
    status, r = await _call(server, {"jsonrpc": "2.0", "method": "echo", "params": [1]})
    assert status == 200
    assert r is None
    _, r = await _call(
        server,
        [
            {"jsonrpc": "2.0", "id": 1, "method": "echo", "params": [1]},
            {"jsonrpc": "2.0", "id": 2, "method": "x"},
        ],
    )
    assert r[0]["result"]["x"] == 1
    assert r[1]["error"]["code"] == -32601


async def test_silent_client_is_dropped(server: HttpServer) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\n")  # then nothing
        with trio.fail_after(3):
            assert await stream.receive_some(100) == b""  # server closed after its read deadline


def test_bind_params_defaults() -> None:
    m = METHODS[0]
    assert bind_params(m, [3]) == {"x": 3, "y": "d"}
    assert bind_params(m, {"x": 3, "y": None}) == {"x": 3, "y": "d"}
