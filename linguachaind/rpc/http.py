"""A small HTTP/1.1 server on trio and h11: what the JSON-RPC server and `/metrics` need, no more.

Owns: accepting connections on 127.0.0.1 and the connection limit (decided at accept: a new
connection takes a free slot, else the slot of the oldest connection that is neither trusted nor
inside the handler, else it is answered 503 and closed), parsing requests with h11, the request body
limit (413), one deadline per whole request (head and body; the head alone has a shorter one), the
keep-alive idle timeout, the write deadline, HEAD (headers only) and writing responses. A connection
that fails in any way is logged and closed; nothing a client sends can end the server. Must not: know
JSON-RPC or authenticate (the handler does, and marks an authenticated response `trusted`, which protects that
connection from eviction: the operator's CLI still gets through a flood). Decided against hypercorn
in docs/security.md (measured by scripts/bench/rpc_bench.py).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import h11
import trio

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio-typing's stubs (pulled in by libp2p) shadow trio's own

log = logging.getLogger(__name__)

MAX_HEADER_BYTES: Final = 16 * 1024
RECV_CHUNK: Final = 64 * 1024
MAX_CONNECTIONS: Final = 64
KEEPALIVE_IDLE_S: Final = 5.0  # an idle connection (before a request's first byte) is closed after this
HEAD_TIMEOUT_S: Final = 10.0  # the request line and headers must be complete this long after the cycle began
WRITE_TIMEOUT_S: Final = 10.0  # a client that does not read its response is dropped after this
BUSY_WRITE_S: Final = 1.0  # how long the 503 for a connection over the limit may take to write
BUSY_BODY: Final = b"too many RPC connections; retry\n"
STALL_S: Final = 0.25  # a connection silent this long is evicted before ones still sending


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    trusted: bool = False  # the request was authenticated: its connection is never evicted


@dataclass(frozen=True, slots=True)
class HttpStats:
    open: int
    accepted: int
    refused: int  # answered 503 at accept: every slot trusted or busy
    evicted: int  # closed to make room for a new connection
    timeouts: int  # request deadline, idle timeout or write deadline
    failed: int  # closed after an unexpected error (logged with its traceback)
    requests_served: int


Handler = Callable[[Request], Awaitable[Response]]
# Answer for a body over the limit; the handler builds it so the error shape stays in one place.
TooLargeHandler = Callable[[], Response]


class _ClientGone(Exception):
    """Raised when the client closed, timed out or sent garbage: drop the connection quietly."""


@dataclass(slots=True, eq=False)
class _Slot:
    scope: trio.CancelScope
    last_read: float  # trio time of the last bytes received (accept time before any)
    trusted: bool = False
    busy: bool = False  # inside the handler: the request was read in full, the answer is ours to give

    def stalled(self, now: float) -> bool:
        return now - self.last_read >= STALL_S


def _check_seconds(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number of seconds, got {value!r}")


class HttpServer:
    def __init__(
        self,
        handler: Handler,
        too_large: TooLargeHandler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body: int = 8 * 1024 * 1024,
        read_timeout_s: float = 30.0,
        keepalive_s: float = KEEPALIVE_IDLE_S,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        _check_seconds("read_timeout_s", read_timeout_s)
        _check_seconds("keepalive_s", keepalive_s)
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._handler = handler
        self._too_large = too_large
        self.host = host
        self.port = port
        self.max_body = max_body
        self.read_timeout_s = read_timeout_s
        self.keepalive_s = keepalive_s
        self.max_connections = max_connections
        self._slots: dict[int, _Slot] = {}  # insertion order = age: the oldest first
        self._ids = itertools.count()
        self._accepted = self._refused = self._evicted = self._timeouts = self._failed = 0
        self.requests_served = 0

    def statistics(self) -> HttpStats:
        return HttpStats(
            open=len(self._slots),
            accepted=self._accepted,
            refused=self._refused,
            evicted=self._evicted,
            timeouts=self._timeouts,
            failed=self._failed,
            requests_served=self.requests_served,
        )

    async def run(self, *, task_status: TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; `task_status.started(port)` once bound."""
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        log.info("RPC listening on http://%s:%d", self.host, self.port)
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._serve_stream, listeners, handler_nursery=nursery)

    # -- admission -------------------------------------------------------------------------------

    def _admit(self) -> tuple[int, _Slot] | None:
        """A slot for a new connection; when all are taken, the slot of the oldest untrusted one.

        Trusted (authenticated before) and busy (inside the handler) connections are never evicted.
        Among the others, one silent for `STALL_S` goes first (idle, slowloris), then the oldest: a
        new connection that sends its request at once is evicted last, so it gets through a flood.
        """
        self._accepted += 1
        if len(self._slots) >= self.max_connections:
            now = trio.current_time()
            open_ = [(k, s) for k, s in self._slots.items() if not (s.trusted or s.busy)]
            stalled = [k for k, s in open_ if s.stalled(now)]
            victim = stalled[0] if stalled else (open_[0][0] if open_ else None)
            if victim is None:
                return None
            self._slots.pop(victim).scope.cancel()
            self._evicted += 1
        key = next(self._ids)
        slot = _Slot(trio.CancelScope(), trio.current_time())
        self._slots[key] = slot
        return key, slot

    async def _serve_stream(self, stream: trio.SocketStream) -> None:
        async with stream:
            admitted = self._admit()
            if admitted is None:
                self._refused += 1
                await self._send_busy(stream)
                return
            key, slot = admitted
            try:
                with slot.scope:
                    await self._serve_connection(stream, slot)
            except (_ClientGone, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                log.debug("RPC connection closed: %s", exc)
            except trio.TooSlowError:
                self._timeouts += 1
                log.debug("RPC connection dropped: client too slow to read its response")
            except Exception:
                self._failed += 1
                log.warning("RPC connection failed and was closed; the server keeps serving", exc_info=True)
            finally:
                self._slots.pop(key, None)

    async def _send_busy(self, stream: trio.SocketStream) -> None:
        head = (
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nretry-after: 1\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(BUSY_BODY)
        )
        with (
            trio.move_on_after(BUSY_WRITE_S),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            await stream.send_all(head + BUSY_BODY)

    # -- one connection --------------------------------------------------------------------------

    async def _serve_connection(self, stream: trio.SocketStream, slot: _Slot) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        while True:
            request = await self._read_request(conn, stream, slot)
            if request is None:
                return
            if isinstance(request, Response):  # refused before the body was read in full
                await self._send(conn, stream, request, head=False, close=True)
                return
            slot.busy = True
            try:
                response = await self._handler(request)
            finally:
                slot.busy = False
            slot.trusted = slot.trusted or response.trusted
            self.requests_served += 1
            await self._send(conn, stream, response, head=request.method == "HEAD", close=False)
            if conn.our_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _read_request(
        self, conn: h11.Connection, stream: trio.SocketStream, slot: _Slot
    ) -> Request | Response | None:
        """The next whole request, under one deadline; None when the client left or went idle."""
        start = trio.current_time()
        deadline = start + self.read_timeout_s
        idle_deadline = min(deadline, start + self.keepalive_s)
        head_deadline = min(deadline, start + HEAD_TIMEOUT_S)
        started = bool(conn.trailing_data[0])  # a pipelined request already began
        head: h11.Request | None = None
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                event = conn.next_event()
            except (h11.RemoteProtocolError, ValueError) as exc:  # ValueError: a 5,000-digit length
                raise _ClientGone(f"bad request: {exc}") from None
            if event is h11.NEED_DATA:
                limit = idle_deadline if not started else head_deadline if head is None else deadline
                with trio.move_on_at(limit) as scope:
                    data = await stream.receive_some(RECV_CHUNK)
                if scope.cancelled_caught:
                    if started:
                        self._timeouts += 1
                        raise _ClientGone("request deadline passed")
                    return None  # idle keep-alive connection: close quietly
                if data:
                    started = True
                    slot.last_read = trio.current_time()
                conn.receive_data(data)  # b"" signals EOF to h11
            elif isinstance(event, h11.ConnectionClosed):
                if head is not None:
                    raise _ClientGone("connection closed mid-request")
                return None
            elif isinstance(event, h11.Request):
                head = event
                declared = dict(event.headers).get(b"content-length")
                if declared is not None and int(declared) > self.max_body:
                    return self._too_large()
                if conn.they_are_waiting_for_100_continue:  # curl, for bodies over 1 KiB
                    with trio.fail_after(WRITE_TIMEOUT_S):
                        await stream.send_all(
                            conn.send(h11.InformationalResponse(status_code=100, headers=[]))
                        )
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.max_body:
                    return self._too_large()
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                return Request(
                    method=head.method.decode("ascii", "replace"),
                    target=head.target.decode("ascii", "replace"),
                    headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers},
                    body=b"".join(chunks),
                )
            else:
                raise _ClientGone(f"unexpected {type(event).__name__}")

    async def _send(
        self, conn: h11.Connection, stream: trio.SocketStream, resp: Response, *, head: bool, close: bool
    ) -> None:
        headers = [
            ("content-type", resp.content_type),
            ("content-length", str(len(resp.body))),
            ("server", "linguachaind"),
            *resp.extra_headers,
        ]
        if close:
            headers.append(("connection", "close"))
        out = conn.send(h11.Response(status_code=resp.status, headers=headers)) or b""
        if not head:  # HEAD: the same headers, no body (h11 refuses one)
            out += conn.send(h11.Data(data=resp.body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        with trio.fail_after(WRITE_TIMEOUT_S):
            await stream.send_all(out)
