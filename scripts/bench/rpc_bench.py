#!/usr/bin/env python3
"""RPC HTTP layer benchmark: our h11 server (`linguachaind.rpc.http`) against hypercorn on trio.

Owns: nothing the node uses. Must not: be imported by the project.

    .venv/bin/python scripts/bench/rpc_bench.py                  # ~1 min; slowloris 1 byte / 10 s
    .venv/bin/python scripts/bench/rpc_bench.py --quick          # ~20 s; slowloris 1 byte / 2 s

Each server runs in its own process with the same `RpcDispatcher` (one cheap method, the cookie
credentials, a metrics callback) and the settings the node uses (request deadline 30 s, keep-alive
5 s; hypercorn: `read_timeout` 30 s, `keep_alive_timeout` 5 s). Both are measured in the same run
by the same client, and reported side by side with the ratio hypercorn / h11:

- requests/s for a small authenticated JSON-RPC call over 4 keep-alive connections;
- memory (RSS) per idle connection, from 50 idle connections;
- HEAD / and HEAD /metrics: status, body bytes sent (must be 0) and whether the server still answers;
- slowloris: a POST whose body arrives 1 byte per interval; a head sent 1 byte per interval;
  how long the server keeps each (the window is 4.5 intervals);
- 200 idle connections, then one honest call: answered, and how fast;
- 64 slow connections plus 50 more: what the 50 get at accept, and whether an honest call is answered.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

AUTH = "Basic " + base64.b64encode(b"__cookie__:benchpassword").decode()
CALL = b'{"jsonrpc":"2.0","id":1,"method":"getblock","params":[7]}'


# -- the servers (child processes) ----------------------------------------------------------------


def _dispatcher() -> Any:
    from linguachaind.rpc.server import Credentials, Method, Param, RpcDispatcher

    async def getblock(block: str | int) -> dict[str, Any]:
        return {"height": block, "hash": "00" * 32}

    methods = [Method("getblock", getblock, (Param("block", (str, int)),))]
    return RpcDispatcher(methods, [Credentials("__cookie__", "benchpassword")], metrics=lambda: b"m 1\n" * 20)


def _asgi_app(dispatcher: Any, max_body: int) -> Any:
    from linguachaind.rpc.http import Request

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if len(body) > max_body:
                resp = dispatcher.too_large()
                break
            if not msg.get("more_body"):
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
                resp = await dispatcher.handle(Request(scope["method"], scope["path"], headers, body))
                break
        await send(
            {
                "type": "http.response.start",
                "status": resp.status,
                "headers": [
                    (b"content-type", resp.content_type.encode()),
                    (b"content-length", str(len(resp.body)).encode()),
                ]
                + [(k.encode(), v.encode()) for k, v in resp.extra_headers],
            }
        )
        await send({"type": "http.response.body", "body": resp.body})

    return app


def serve(impl: str, port_file: Path) -> None:
    dispatcher = _dispatcher()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            if impl == "h11":
                from linguachaind.rpc.http import HttpServer

                srv = HttpServer(dispatcher.handle, dispatcher.too_large, port=0, read_timeout_s=30.0)
                port = await nursery.start(srv.run)
            else:
                from hypercorn.config import Config
                from hypercorn.trio import serve as hserve

                config = Config()
                config.bind = ["127.0.0.1:0"]
                config.read_timeout = 30
                config.keep_alive_timeout = 5
                config.accesslog = None
                app = _asgi_app(dispatcher, 8 * 1024 * 1024)

                async def run_hypercorn(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                    await hserve(app, config, task_status=task_status, mode="asgi")

                binds = await nursery.start(run_hypercorn)
                port = int(binds[0].rsplit(":", 1)[1])
            await trio.Path(port_file).write_text(str(port))

    trio.run(main)


# -- the client ------------------------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _post(body: bytes) -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Length: %d\r\n\r\n"
        % (AUTH.encode(), len(body))
        + body
    )


async def _response(stream: trio.SocketStream, buf: bytearray) -> tuple[int, int]:
    """(status, body length) of one response; leftover bytes stay in buf."""
    while b"\r\n\r\n" not in buf:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError
        rest += chunk
    buf[:] = rest[length:]
    return int(head.split()[1]), length


async def _honest_call(port: int, timeout: float = 5.0) -> float | None:
    """Seconds for one fresh authenticated call, None if not answered 200 within timeout."""
    start = time.perf_counter()
    status = 0
    with trio.move_on_after(timeout):
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(_post(CALL))
                status, _ = await _response(stream, bytearray())
        except (OSError, EOFError, trio.BrokenResourceError):
            status = 0
    return time.perf_counter() - start if status == 200 else None


async def bench_rps(port: int, total: int) -> float:
    per = total // 4

    async def one() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            buf = bytearray()
            for _ in range(per):
                await stream.send_all(_post(CALL))
                status, _ = await _response(stream, buf)
                assert status == 200

    start = time.perf_counter()
    async with trio.open_nursery() as n:
        for _ in range(4):
            n.start_soon(one)
    return per * 4 / (time.perf_counter() - start)


async def bench_idle_memory(port: int, pid: int, count: int = 50) -> float:
    before = _rss_kib(pid)
    streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(count)]
    await trio.sleep(1.0)  # let the server accept and set up all of them
    after = _rss_kib(pid)
    for s in streams:
        await s.aclose()
    return (after - before) / count


async def bench_head(port: int, target: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"status": None, "body_bytes": None}
    with trio.move_on_after(3):
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(b"HEAD " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                data = b""
                with trio.move_on_after(0.5):
                    while chunk := await stream.receive_some(65536):
                        data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                out = {"status": int(head.split()[1]) if head else None, "body_bytes": len(body)}
        except (OSError, trio.BrokenResourceError):
            pass
    out["alive_after"] = await _honest_call(port) is not None
    return out


async def bench_slowloris(port: int, interval: float, part: str) -> float | None:
    """Seconds until the server closes a request sent 1 byte per interval; None if still open."""
    raw = _post(CALL.ljust(100))
    head, _, body = raw.partition(b"\r\n\r\n")
    prefix, drip = (head + b"\r\n\r\n", body) if part == "body" else (b"", raw)
    start = time.perf_counter()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        try:
            await stream.send_all(prefix)
            for byte in drip:
                await stream.send_all(bytes([byte]))
                with trio.move_on_after(interval):
                    if await stream.receive_some(1024) == b"":
                        return time.perf_counter() - start
                if time.perf_counter() - start > 4.5 * interval:
                    return None
        except (OSError, trio.BrokenResourceError):
            return time.perf_counter() - start
    return None


async def _hold(port: int, streams: list[trio.SocketStream], partial: bytes) -> None:
    s = await trio.open_tcp_stream("127.0.0.1", port)
    if partial:
        await s.send_all(partial)
    streams.append(s)


async def bench_idle_flood(port: int, count: int = 200) -> float | None:
    streams: list[trio.SocketStream] = []
    for _ in range(count):
        await _hold(port, streams, b"")
    await trio.sleep(0.5)
    answered = await _honest_call(port)
    for s in streams:
        await s.aclose()
    return answered


async def bench_over_limit(port: int) -> dict[str, Any]:
    streams: list[trio.SocketStream] = []
    for _ in range(64):
        await _hold(port, streams, b"POST / HTTP/1.1\r\nHost: x\r\n")
    outcomes = {"503": 0, "closed": 0, "waiting": 0}

    async def extra() -> None:
        try:
            s = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            outcomes["closed"] += 1
            return
        async with s:
            try:
                await s.send_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
                got: list[bytes] = []
                with trio.move_on_after(1.0):
                    got.append(await s.receive_some(1024))
            except (OSError, trio.BrokenResourceError):
                got = [b""]
            if not got:
                outcomes["waiting"] += 1
            else:
                outcomes["503" if got[0].startswith(b"HTTP/1.1 503") else "closed"] += 1

    async with trio.open_nursery() as n:
        for _ in range(50):
            n.start_soon(extra)
    answered = await _honest_call(port)
    held_closed = 0
    for s in streams:
        with trio.move_on_after(0.01):
            try:
                held_closed += await s.receive_some(1024) == b""
            except (OSError, trio.BrokenResourceError):
                held_closed += 1
        await s.aclose()
    call_s = None if answered is None else round(answered, 4)
    return {"extra_50": outcomes, "of_64_held_closed": held_closed, "honest_call_s": call_s}


def _start(impl: str, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file = tmp / f"{impl}.port"
    proc = subprocess.Popen(
        [sys.executable, __file__, "serve", "--impl", impl, "--port-file", str(port_file)],
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text()):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{impl} server did not start")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


async def measure(impls: dict[str, tuple[int, int]], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {name: {} for name in impls}
    for _ in range(3):  # alternate, best of 3: a busy shared box slows whichever runs at a bad moment
        for name, (port, _) in impls.items():
            rps = await bench_rps(port, args.requests)
            out[name]["requests_per_s"] = round(max(out[name].get("requests_per_s", 0.0), rps), 1)
    for name, (port, pid) in impls.items():  # one at a time: the throughput figures share 2 cores
        out[name]["rss_kib_per_idle_connection"] = round(await bench_idle_memory(port, pid), 1)
        out[name]["head /"] = await bench_head(port, b"/")
        out[name]["head /metrics"] = await bench_head(port, b"/metrics")
        answered = await bench_idle_flood(port)
        out[name]["200_idle_then_call_s"] = None if answered is None else round(answered, 4)
        out[name]["over_limit"] = await bench_over_limit(port)

    async def slow(name: str, port: int, part: str) -> None:
        held = await bench_slowloris(port, args.interval, part)
        out[name][f"slowloris_{part}_closed_after_s"] = None if held is None else round(held, 1)

    async with trio.open_nursery() as n:  # all four in parallel: they mostly wait
        for name, (port, _) in impls.items():
            for part in ("head", "body"):
                n.start_soon(slow, name, port, part)
    for name, (_, pid) in impls.items():
        out[name]["alive_at_end"] = await _honest_call(impls[name][0]) is not None
        out[name]["rss_mib_at_end"] = round(_rss_kib(pid) / 1024, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    sv = sub.add_parser("serve")
    sv.add_argument("--impl", choices=("h11", "hypercorn"), required=True)
    sv.add_argument("--port-file", type=Path, required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--interval", type=float, default=10.0, help="slowloris: seconds between bytes")
    args = ap.parse_args()
    if args.cmd == "serve":
        serve(args.impl, args.port_file)
        return
    if args.quick:
        args.requests, args.interval = 1000, 2.0
    with tempfile.TemporaryDirectory() as tmp:
        procs = {impl: _start(impl, Path(tmp)) for impl in ("h11", "hypercorn")}
        try:
            impls = {impl: (port, proc.pid) for impl, (proc, port) in procs.items()}
            result = trio.run(measure, impls, args)
        finally:
            for proc, _ in procs.values():
                proc.kill()
                proc.wait()
    h, y = result["h11"], result["hypercorn"]
    result["ratio_hypercorn_to_h11"] = {
        "requests_per_s": round(y["requests_per_s"] / h["requests_per_s"], 2),
        "rss_per_idle_connection": round(
            y["rss_kib_per_idle_connection"] / max(h["rss_kib_per_idle_connection"], 0.1), 2
        ),
    }
    result["settings"] = {
        "requests": args.requests,
        "slowloris_interval_s": args.interval,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
