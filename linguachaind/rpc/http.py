"""A small HTTP/1.1 server on trio and h11: what the JSON-RPC server and `/metrics` need, no more.

Owns: accepting connections on 127.0.0.1, parsing requests with h11, the request body limit (413
before the body is read when Content-Length says so, and while reading otherwise), read deadlines
(a slow or silent client is dropped), keep-alive, and writing responses. Must not: know JSON-RPC
(the handler does) or authenticate (the handler does).
"""

from __future__ import annotations

import contextlib
import logging
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


Handler = Callable[[Request], Awaitable[Response]]
# Answer for a body over the limit; the handler builds it so the error shape stays in one place.
TooLargeHandler = Callable[[], Response]


class _ClientGone(Exception):
    """Raised when the client closed, timed out or sent garbage: drop the connection quietly."""


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
    ) -> None:
        self._handler = handler
        self._too_large = too_large
        self.host = host
        self.port = port
        self.max_body = max_body
        self.read_timeout_s = read_timeout_s
        self._limiter = trio.CapacityLimiter(MAX_CONNECTIONS)
        self.requests_served = 0

    async def run(self, *, task_status: TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; `task_status.started(port)` once bound."""
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        log.info("RPC listening on http://%s:%d", self.host, self.port)
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._serve_stream, listeners, handler_nursery=nursery)

    async def _serve_stream(self, stream: trio.SocketStream) -> None:
        async with self._limiter, stream:
            with contextlib.suppress(_ClientGone, trio.BrokenResourceError, trio.ClosedResourceError):
                await self._serve_connection(stream)

    async def _next_event(self, conn: h11.Connection, stream: trio.SocketStream) -> object:
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise _ClientGone(str(exc)) from None
            if event is not h11.NEED_DATA:
                return event
            with trio.move_on_after(self.read_timeout_s) as scope:
                data = await stream.receive_some(RECV_CHUNK)
            if scope.cancelled_caught:
                raise _ClientGone("read timeout")
            conn.receive_data(data)  # b"" signals EOF to h11

    async def _send(
        self, conn: h11.Connection, stream: trio.SocketStream, resp: Response, close: bool
    ) -> None:
        headers = [
            ("content-type", resp.content_type),
            ("content-length", str(len(resp.body))),
            ("server", "linguachaind"),
            *resp.extra_headers,
        ]
        if close:
            headers.append(("connection", "close"))
        out = conn.send(h11.Response(status_code=resp.status, headers=headers))
        assert out is not None
        body = conn.send(h11.Data(data=resp.body))
        end = conn.send(h11.EndOfMessage())
        await stream.send_all(out + (body or b"") + (end or b""))

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        while True:
            event = await self._next_event(conn, stream)
            if isinstance(event, h11.ConnectionClosed):
                return
            if not isinstance(event, h11.Request):
                raise _ClientGone(f"unexpected {type(event).__name__}")
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body:
                await self._send(conn, stream, self._too_large(), close=True)
                return
            chunks: list[bytes] = []
            size = 0
            while True:
                part = await self._next_event(conn, stream)
                if isinstance(part, h11.Data):
                    size += len(part.data)
                    if size > self.max_body:
                        await self._send(conn, stream, self._too_large(), close=True)
                        return
                    chunks.append(bytes(part.data))
                elif isinstance(part, h11.EndOfMessage):
                    break
                else:
                    raise _ClientGone("connection closed mid-request")
            request = Request(
                method=event.method.decode("ascii", "replace"),
                target=event.target.decode("ascii", "replace"),
                headers=headers,
                body=b"".join(chunks),
            )
            response = await self._handler(request)
            self.requests_served += 1
            await self._send(conn, stream, response, close=False)
            if conn.our_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return
