"""Issue 12 findings 1-3: no request, connection or flood can stop or starve the RPC server.

In-process: the real `HttpServer` and `RpcDispatcher` on a loopback port, driven by raw sockets so a
test can send exactly what an attacker would (HEAD, slow bytes, deep JSON, huge numerals, floods).
Each test first does the abuse, then checks that an honest authenticated call is still answered.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import trio
import trio.testing

from linguachaind.rpc.http import HttpServer, Request, Response
from linguachaind.rpc.server import Credentials, Method, Param, RpcDispatcher

AUTH = "Basic " + base64.b64encode(b"__cookie__:pw").decode()
GATE = trio.Event()


async def _height(block: str | int) -> dict[str, Any]:
    return {"height": int(block) if isinstance(block, int) or block.isdigit() else -1}


async def _target(target: str | int) -> dict[str, Any]:
    return await _height(target)


async def _wait_gate() -> str:
    await GATE.wait()
    return "released"


METHODS = [
    Method("getblock", _height, (Param("block", (str, int)),)),
    Method("explainrewards", _target, (Param("target", (str, int)),)),
    Method("wait", _wait_gate),
]


def _server(**kw: Any) -> HttpServer:
    d = RpcDispatcher(METHODS, [Credentials("__cookie__", "pw")], metrics=lambda: b"m 1\n")
    args: dict[str, Any] = {"port": 0, "max_body": 64 * 1024, "read_timeout_s": 1.0, "keepalive_s": 0.5}
    args.update(kw)
    return HttpServer(d.handle, d.too_large, **args)


def _post(body: bytes, auth: str | None = AUTH) -> bytes:
    head = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    if auth:
        head += f"Authorization: {auth}\r\n"
    return head.encode() + b"\r\n" + body


async def _read_response(stream: trio.SocketStream, *, head_only: bool = False) -> tuple[int, bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError(data)
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while not head_only and len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError(data)
        body += chunk
    return int(head.split()[1]), head, body


async def _exchange(port: int, raw: bytes, *, head_only: bool = False) -> tuple[int, bytes, bytes]:
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(raw)
            return await _read_response(stream, head_only=head_only)


async def _call(port: int, doc: Any) -> Any:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    _, _, body = await _exchange(port, _post(raw))
    return json.loads(body)


async def _assert_alive(port: int) -> None:
    r = await _call(port, {"jsonrpc": "2.0", "id": 1, "method": "getblock", "params": [7]})
    assert r["result"] == {"height": 7}


async def _wait_closed(stream: trio.SocketStream, within_s: float) -> None:
    with trio.fail_after(within_s):
        while await stream.receive_some(1024):
            pass


# -- finding 1: HEAD and any failing connection ---------------------------------------------------


@pytest.mark.parametrize("target", [b"/", b"/metrics"])
async def test_head_gets_headers_only_and_server_lives(nursery: trio.Nursery, target: bytes) -> None:
    srv = _server()
    await nursery.start(srv.run)
    raw = b"HEAD " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
        async with stream:
            await stream.send_all(raw)
            status, _, body = await _read_response(stream, head_only=True)
            assert body == b""  # nothing after the headers, though content-length names the GET body size
            await stream.send_all(raw)  # keep-alive still works after a HEAD
            status2, _, body2 = await _read_response(stream, head_only=True)
    assert status == status2 == (200 if target == b"/metrics" else 405)
    assert body2 == b""
    await _assert_alive(srv.port)


async def test_a_failing_connection_is_closed_and_logged_not_fatal(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: Request) -> Response:
        if request.target == "/boom":
            raise RuntimeError("handler bug")
        return Response(200, b"{}")

    srv = HttpServer(broken, lambda: Response(413, b""), port=0, read_timeout_s=1.0)
    await nursery.start(srv.run)
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
        async with stream:
            await stream.send_all(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
            await _wait_closed(stream, 5)
    status, _, _ = await _exchange(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200
    assert srv.statistics().failed == 1
    assert "RPC connection failed" in caplog.text


async def test_garbage_and_huge_content_length_do_not_stop_the_server(nursery: trio.Nursery) -> None:
    srv = _server()
    await nursery.start(srv.run)
    for raw in (
        b"\x00\xff garbage\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
    ):
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
            async with stream:
                await stream.send_all(raw)
                await _wait_closed(stream, 5)
    await _assert_alive(srv.port)


# -- finding 2: parse errors and odd numerals -------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1500 + b"]" * 1500,
        b'{"a":' * 1500 + b"1" + b"}" * 1500,
        b"1" * 4400,
        b'{"id":' + b"7" * 4400 + b"}",
    ],
    ids=["deep-array", "deep-object", "huge-int", "huge-int-in-object"],
)
async def test_deep_json_and_huge_integers_answer_parse_error(nursery: trio.Nursery, body: bytes) -> None:
    srv = _server()
    await nursery.start(srv.run)
    r = await _call(srv.port, body)
    assert r["error"]["code"] == -32700
    await _assert_alive(srv.port)


async def test_moderately_deep_json_is_a_parse_error_too(nursery: trio.Nursery) -> None:
    srv = _server()
    await nursery.start(srv.run)
    doc = {"jsonrpc": "2.0", "id": 1, "method": "getblock", "params": [json.loads("[" * 40 + "]" * 40)]}
    r = await _call(srv.port, doc)
    assert r["error"]["code"] == -32700


@pytest.mark.parametrize("method", ["getblock", "explainrewards"])
@pytest.mark.parametrize("value", ["²", "١٢", "7" * 4000, "9" * 20, 2**64, -(2**63) - 1])
async def test_odd_numerals_answer_invalid_params(nursery: trio.Nursery, method: str, value: Any) -> None:
    srv = _server()
    await nursery.start(srv.run)
    r = await _call(srv.port, {"jsonrpc": "2.0", "id": 1, "method": method, "params": [value]})
    assert r["error"]["code"] == -32602
    r = await _call(srv.port, {"jsonrpc": "2.0", "id": 2, "method": method, "params": ["12"]})
    assert r["result"] == {"height": 12}


async def test_huge_integer_id_is_an_invalid_request(nursery: trio.Nursery) -> None:
    srv = _server()
    await nursery.start(srv.run)
    r = await _call(srv.port, {"jsonrpc": "2.0", "id": 2**70, "method": "getblock", "params": [1]})
    assert r["error"]["code"] == -32600


# -- finding 3: deadlines, the connection limit, the operator under a flood ------------------------


async def test_slowloris_is_dropped_at_the_whole_request_deadline(nursery: trio.Nursery) -> None:
    srv = _server(read_timeout_s=1.0)
    await nursery.start(srv.run)
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    async with stream:
        raw = _post(b'{"jsonrpc":"2.0","id":1,"method":"getblock","params":[1]}')
        start = trio.current_time()
        closed = False
        for byte in raw:  # one byte every 0.15 s: each read is quick, the whole request is not
            try:
                await stream.send_all(bytes([byte]))
            except trio.BrokenResourceError:
                closed = True
                break
            with trio.move_on_after(0.15):
                if await stream.receive_some(1024) == b"":
                    closed = True
                    break
        elapsed = trio.current_time() - start
    assert closed, "the server kept a slow request past its deadline"
    assert elapsed < 4.0  # the deadline is 1 s; sending all of it at this pace would take 20 s
    assert srv.statistics().timeouts >= 1
    await _assert_alive(srv.port)


async def test_idle_keepalive_connection_is_closed(nursery: trio.Nursery) -> None:
    srv = _server(keepalive_s=0.3, read_timeout_s=5.0)
    await nursery.start(srv.run)
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    async with stream:
        await stream.send_all(_post(b'{"jsonrpc":"2.0","id":1,"method":"getblock","params":[1]}'))
        await _read_response(stream)
        start = trio.current_time()
        await _wait_closed(stream, 3)
        assert trio.current_time() - start < 2.0  # well before the 5 s request deadline


async def test_over_the_limit_the_oldest_idle_connection_makes_room(nursery: trio.Nursery) -> None:
    srv = _server(max_connections=4, keepalive_s=30.0, read_timeout_s=30.0)
    await nursery.start(srv.run)
    idle = [await trio.open_tcp_stream("127.0.0.1", srv.port) for _ in range(4)]
    await trio.testing.wait_all_tasks_blocked()
    await _assert_alive(srv.port)  # a fifth connection, served at once
    await _wait_closed(idle[0], 3)  # the oldest idle one was closed to make room
    assert srv.statistics().evicted >= 1
    for s in idle:
        await s.aclose()


async def test_all_slots_busy_or_trusted_answers_503_at_accept(nursery: trio.Nursery) -> None:
    global GATE
    GATE = trio.Event()
    srv = _server(max_connections=2, keepalive_s=30.0, read_timeout_s=30.0)
    await nursery.start(srv.run)
    waiting = [await trio.open_tcp_stream("127.0.0.1", srv.port) for _ in range(2)]
    for s in waiting:
        await s.send_all(_post(b'{"jsonrpc":"2.0","id":1,"method":"wait"}'))
    await trio.testing.wait_all_tasks_blocked()
    status, head, _ = await _exchange(srv.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 503
    assert b"retry-after" in head.lower()
    assert srv.statistics().refused == 1
    GATE.set()
    for s in waiting:
        _, _, body = await _read_response(s)
        assert json.loads(body)["result"] == "released"
        await s.aclose()
    await _assert_alive(srv.port)


async def test_operator_gets_through_a_flood_of_slow_and_idle_connections(nursery: trio.Nursery) -> None:
    """200 idle and 64 slowloris connections, each reopened when closed, against 32 slots."""
    srv = _server(max_connections=32, keepalive_s=2.0, read_timeout_s=10.0)
    await nursery.start(srv.run)
    stop = trio.Event()

    async def flooder(slow: bool) -> None:
        while not stop.is_set():
            try:
                s = await trio.open_tcp_stream("127.0.0.1", srv.port)
                async with s:
                    for byte in b"POST / HTTP/1.1\r\nHost: x\r\n" if slow else b"":
                        await s.send_all(bytes([byte]))
                        with trio.move_on_after(0.5):
                            if await s.receive_some(100) == b"":
                                break
                    await s.receive_some(100)  # idle until the server closes it
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # closed or reset by the server: reconnect

    async with trio.open_nursery() as flood:
        for n in range(264):
            flood.start_soon(flooder, n < 64)
        for _ in range(10):
            with trio.fail_after(3):
                await _assert_alive(srv.port)
        stop.set()
        flood.cancel_scope.cancel()
    assert srv.statistics().evicted > 0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -1.0])
def test_non_finite_or_non_positive_timeouts_are_refused(value: float) -> None:
    with pytest.raises(ValueError, match="read_timeout_s"):
        _server(read_timeout_s=value)


async def test_expect_100_continue_is_answered(nursery: trio.Nursery) -> None:
    srv = _server()
    await nursery.start(srv.run)
    body = b'{"jsonrpc":"2.0","id":1,"method":"getblock","params":[3]}'
    head = (
        f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\nContent-Length: {len(body)}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
        async with stream:
            await stream.send_all(head)
            interim = await stream.receive_some(1024)
            assert interim.startswith(b"HTTP/1.1 100 ")
            await stream.send_all(body)
            status, _, reply = await _read_response(stream)
    assert status == 200
    assert json.loads(reply)["result"] == {"height": 3}
