"""A JSON-RPC 2.0 client on the standard library only (`http.client`), for the CLI and functional tests.

Owns: finding a node (an `--rpc` URL, or a datadir's `.rpcport` and `.cookie`), HTTP Basic auth,
one request per call with a timeout, and turning every failure into `RpcCallError` (an error answer
from the node, with its stable code) or `RpcConnectionError` (no node there). Must not: import trio,
click or anything heavy: `linguachain-cli --help` imports this module's dependencies only.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import socket
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any, Final

DEFAULT_PORTS: Final = {"mainnet": 9332, "testnet": 19332, "devnet": 29332}


class RpcConnectionError(Exception):
    """Raised when no node answers at the address (not running, wrong port, refused)."""


class RpcCallError(Exception):
    """Raised when the node answers with a JSON-RPC error; `code` is stable (docs/rpc.md)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


class RpcClient:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 29332,
        *,
        user: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        cookie_file: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.timeout = timeout
        self.cookie_file = cookie_file  # re-read when auth fails: the daemon rewrites it at every start
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 30.0) -> RpcClient:
        parsed = urllib.parse.urlparse(url if "://" in url else f"http://{url}")
        if parsed.scheme != "http":
            raise RpcConnectionError(f"unsupported RPC URL {url!r} (expected http://host:port)")
        return cls(
            parsed.hostname or "127.0.0.1",
            parsed.port or 29332,
            user=urllib.parse.unquote(parsed.username) if parsed.username else None,
            password=urllib.parse.unquote(parsed.password) if parsed.password else None,
            timeout=timeout,
        )

    @classmethod
    def from_datadir(cls, datadir: Path, *, timeout: float = 30.0) -> RpcClient:
        """The node of `datadir`: port from `.rpcport` (or its config), auth from `.cookie`."""
        datadir = datadir.expanduser()
        port = read_port(datadir)
        client = cls("127.0.0.1", port, timeout=timeout, cookie_file=datadir / ".cookie")
        client._load_cookie()
        return client

    def _load_cookie(self) -> None:
        if self.cookie_file is None:
            return
        try:
            text = self.cookie_file.read_text().strip()
        except FileNotFoundError:
            raise RpcConnectionError(
                f"no cookie at {self.cookie_file}: is linguachaind running on {self.cookie_file.parent}?"
            ) from None
        except PermissionError:
            raise RpcConnectionError(f"cannot read {self.cookie_file} (permission denied)") from None
        self.user, _, self.password = text.partition(":")

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.user is not None and self.password is not None:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return headers

    def post(self, body: bytes) -> tuple[int, bytes]:
        """One raw HTTP POST; (status, body). Used by tests to send malformed requests."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("POST", "/", body=body, headers=self._headers())
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (ConnectionRefusedError, socket.gaierror) as exc:
            raise RpcConnectionError(
                f"no linguachaind answers at {self.url} ({exc.strerror or exc})"
            ) from None
        except TimeoutError:
            raise RpcConnectionError(
                f"linguachaind at {self.url} did not answer within {self.timeout:g} s"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise RpcConnectionError(f"connection to {self.url} failed: {exc}") from None
        finally:
            conn.close()

    def call(self, method: str, *params: Any, **named: Any) -> Any:
        """Call `method` with positional or named params; the result, or `RpcCallError`."""
        if params and named:
            raise ValueError("use positional or named params, not both")
        payload = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": named or list(params)}
        body = json.dumps(payload).encode()
        status, raw = self.post(body)
        if status == 401 and self.cookie_file is not None:
            self._load_cookie()  # the daemon restarted and wrote a new cookie
            status, raw = self.post(body)
        try:
            doc = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RpcConnectionError(
                f"{self.url} answered HTTP {status} with a body that is not JSON"
            ) from None
        if not isinstance(doc, dict):
            raise RpcConnectionError(f"{self.url} answered HTTP {status} without a JSON-RPC response")
        err = doc.get("error")
        if err is not None:
            raise RpcCallError(int(err.get("code", 0)), str(err.get("message", "")), err.get("data"))
        return doc.get("result")

    def __getattr__(self, name: str) -> Any:
        """`client.getblockchaininfo()` == `client.call("getblockchaininfo")` (Bitcoin Core style)."""
        if name.startswith("_"):
            raise AttributeError(name)

        def method(*params: Any, **named: Any) -> Any:
            return self.call(name, *params, **named)

        return method


def read_port(datadir: Path) -> int:
    """The RPC port of the daemon on `datadir`: `.rpcport` while it runs, else its config, else default."""
    try:
        text = (datadir / ".rpcport").read_text().strip()
        if text.isdigit():
            return int(text)
    except FileNotFoundError:
        pass
    network = "devnet"
    try:
        with (datadir / "linguachain.toml").open("rb") as fh:
            doc = tomllib.load(fh)
        port = doc.get("rpc_port")
        if isinstance(port, int) and port > 0:
            return port
        network = str(doc.get("network", network))
    except (FileNotFoundError, tomllib.TOMLDecodeError):
        pass
    return DEFAULT_PORTS.get(network, 29332)
