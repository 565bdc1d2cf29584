"""JSON-RPC 2.0 dispatch on top of `HttpServer`: auth, parsing, parameter checks, one error shape.

Owns: the method registry (`Method`, `Param`), HTTP Basic auth against the cookie or the configured
user/password (constant-time compare), parse/validate/dispatch with the stable codes of
`rpc.errors`, batches, and routing `/metrics`. Must not: implement methods (`rpc.methods` does) or
hold node state. A handler bug answers INTERNAL_ERROR, is logged with its traceback, and the server
keeps serving. Parsing never raises: any body that is not JSON within the limits (nesting 32, Python's
4,300-digit integers) is PARSE_ERROR; integers beyond 64 bits and non-ASCII or over-long numerals in
parameters are INVALID_PARAMS. An authenticated request's response is marked `trusted` for the HTTP
layer's connection limit.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from linguachaind.rpc.errors import RpcError, RpcErrorCode, error_object
from linguachaind.rpc.http import Request, Response

log = logging.getLogger(__name__)

MAX_BATCH: Final = 100
MAX_DEPTH: Final = 32  # JSON nesting; JSON-RPC requests need 3 or 4 levels
INT_MIN: Final = -(2**63)  # every integer a method or an id takes fits in 64 bits
INT_MAX: Final = 2**64 - 1
_NO_DEFAULT: Final = object()


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    types: tuple[type, ...]
    default: Any = _NO_DEFAULT
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    fn: Callable[..., Awaitable[Any]]
    params: tuple[Param, ...] = ()
    help: str = ""
    devnet_only: bool = False


def _type_names(types: tuple[type, ...]) -> str:
    names = {int: "integer", str: "string", bool: "boolean", list: "array", dict: "object", float: "number"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def bind_params(method: Method, params: Any) -> dict[str, Any]:
    """Positional (array) or named (object) params -> keyword arguments, type-checked."""
    spec = method.params
    given: dict[str, Any] = {}
    if params is None:
        params = []
    if isinstance(params, list):
        if len(params) > len(spec):
            raise RpcError(
                RpcErrorCode.INVALID_PARAMS,
                f"{method.name} takes at most {len(spec)} parameters, got {len(params)}",
            )
        given = {p.name: v for p, v in zip(spec, params, strict=False)}
    elif isinstance(params, dict):
        known = {p.name for p in spec}
        for key in params:
            if key not in known:
                raise RpcError(RpcErrorCode.INVALID_PARAMS, f"{method.name} has no parameter {key!r}")
        given = dict(params)
    else:
        raise RpcError(RpcErrorCode.INVALID_PARAMS, "params must be an array or an object")
    out: dict[str, Any] = {}
    for p in spec:
        if p.name not in given or (given[p.name] is None and not p.required):
            if p.required:
                raise RpcError(RpcErrorCode.INVALID_PARAMS, f"{method.name}: missing parameter {p.name!r}")
            out[p.name] = p.default
            continue
        value = given[p.name]
        ok = isinstance(value, p.types) and not (isinstance(value, bool) and bool not in p.types)
        if not ok:
            raise RpcError(
                RpcErrorCode.INVALID_PARAMS,
                f"{method.name}: parameter {p.name!r} must be {_type_names(p.types)}, "
                f"got {type(value).__name__}",
            )
        _check_numeral(method.name, p, value)
        out[p.name] = value
    return out


def _check_numeral(method: str, p: Param, value: Any) -> None:
    """Integers fit in 64 bits; where a string may stand for an integer, a numeral is plain ASCII.

    Methods read a string of digits as a height (`getblock "12"`): `str.isdigit` also accepts "²" and
    4,000-digit strings, which `int()` refuses or turns into heights no store can hold.
    """
    if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
        raise RpcError(RpcErrorCode.INVALID_PARAMS, f"{method}: parameter {p.name!r} is out of range")
    numeral = int in p.types and isinstance(value, str) and value.isdigit()
    if numeral and not (value.isascii() and len(value) <= 19 and int(value) <= INT_MAX):
        raise RpcError(
            RpcErrorCode.INVALID_PARAMS,
            f"{method}: parameter {p.name!r} is not a valid number: use ASCII digits, at most 19",
        )


def _depth(doc: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return deepest


def parse_json(body: bytes) -> Any:
    """The request body as JSON, or RpcError(PARSE_ERROR): never another exception.

    Deep nesting (RecursionError in the parser) and integer literals over 4,300 digits (ValueError from
    Python's int limit) are parse errors like any other malformed body.
    """
    try:
        doc = json.loads(body)
    except RecursionError:
        raise RpcError(RpcErrorCode.PARSE_ERROR, f"parse error: nested deeper than {MAX_DEPTH}") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise RpcError(RpcErrorCode.PARSE_ERROR, f"parse error: {exc}") from None
    if _depth(doc) > MAX_DEPTH:
        raise RpcError(RpcErrorCode.PARSE_ERROR, f"parse error: nested deeper than {MAX_DEPTH}")
    return doc


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    password: str

    def matches(self, header: str | None) -> bool:
        if not header or not header.lower().startswith("basic "):
            return False
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = raw.partition(":")
        if not sep:
            return False
        ok_user = hmac.compare_digest(user.encode(), self.user.encode())
        ok_pw = hmac.compare_digest(password.encode(), self.password.encode())
        return ok_user and ok_pw


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _error_response(
    req_id: Any, code: RpcErrorCode, message: str, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "error": error_object(code, message, data)}


Observer = Callable[[str, int, float], None]  # method, error code (0 = ok), seconds


class RpcDispatcher:
    """Turns HTTP requests into method calls. `credentials` is a list: cookie and/or configured user."""

    def __init__(
        self,
        methods: Sequence[Method],
        credentials: Sequence[Credentials],
        *,
        metrics: Callable[[], bytes] | None = None,
        observe: Observer | None = None,
        allow_devnet_only: bool = False,
    ) -> None:
        self.methods = {m.name: m for m in methods}
        self.credentials = list(credentials)
        self._metrics = metrics
        self._observe = observe
        self._allow_devnet_only = allow_devnet_only

    def too_large(self) -> Response:
        body = _json(_error_response(None, RpcErrorCode.REQUEST_TOO_LARGE, "request body too large"))
        return Response(413, body)

    async def handle(self, request: Request) -> Response:
        if request.target.split("?")[0] == "/metrics" and request.method in ("GET", "HEAD"):
            if self._metrics is None:
                return Response(404, b"no metrics\n", "text/plain")
            return Response(200, self._metrics(), "text/plain; version=0.0.4; charset=utf-8")
        if request.method != "POST":
            body = _json(_error_response(None, RpcErrorCode.INVALID_REQUEST, "use POST for JSON-RPC"))
            return Response(405, body, extra_headers=[("allow", "POST")])
        if not any(c.matches(request.headers.get("authorization")) for c in self.credentials):
            log.warning("RPC request refused: missing or wrong credentials")
            body = _json(
                _error_response(
                    None,
                    RpcErrorCode.UNAUTHORIZED,
                    "authorization required: use the cookie in <datadir>/.cookie or rpc_user/rpc_password",
                )
            )
            return Response(401, body, extra_headers=[("www-authenticate", 'Basic realm="linguachaind"')])
        try:
            doc = parse_json(request.body)
        except RpcError as exc:
            return Response(200, _json(_error_response(None, exc.code, exc.message)), trusted=True)
        if isinstance(doc, list):
            if not doc:
                return Response(
                    200,
                    _json(_error_response(None, RpcErrorCode.INVALID_REQUEST, "empty batch")),
                    trusted=True,
                )
            if len(doc) > MAX_BATCH:
                msg = f"batch of {len(doc)} requests exceeds {MAX_BATCH}"
                return Response(
                    200, _json(_error_response(None, RpcErrorCode.INVALID_REQUEST, msg)), trusted=True
                )
            replies = [r for r in [await self.call(item) for item in doc] if r is not None]
            return Response(200, _json(replies), trusted=True)
        reply = await self.call(doc)
        return Response(200, _json(reply) if reply is not None else b"", trusted=True)

    async def call(self, doc: Any) -> dict[str, Any] | None:
        """One request object -> one response object (None for a notification)."""
        if not isinstance(doc, dict):
            return _error_response(None, RpcErrorCode.INVALID_REQUEST, "a request must be a JSON object")
        req_id = doc.get("id")
        if (
            (req_id is not None and not isinstance(req_id, str | int))
            or isinstance(req_id, bool)
            or (isinstance(req_id, int) and not INT_MIN <= req_id <= INT_MAX)
        ):
            return _error_response(
                None, RpcErrorCode.INVALID_REQUEST, "id must be a string, an integer or null"
            )
        if doc.get("jsonrpc") != "2.0":
            return _error_response(req_id, RpcErrorCode.INVALID_REQUEST, 'the request needs "jsonrpc": "2.0"')
        name = doc.get("method")
        if not isinstance(name, str):
            return _error_response(req_id, RpcErrorCode.INVALID_REQUEST, "method must be a string")
        start = time.perf_counter()
        code = 0
        try:
            method = self.methods.get(name)
            if method is None:
                raise RpcError(RpcErrorCode.METHOD_NOT_FOUND, f"method not found: {name}")
            if method.devnet_only and not self._allow_devnet_only:
                raise RpcError(RpcErrorCode.NOT_ALLOWED, f"{name} is only allowed on devnet")
            kwargs = bind_params(method, doc.get("params"))
            result = await method.fn(**kwargs)
        except RpcError as exc:
            code = int(exc.code)
            reply = _error_response(req_id, exc.code, exc.message, exc.data)
        except Exception:
            log.exception("RPC method %s failed", name)
            code = int(RpcErrorCode.INTERNAL_ERROR)
            reply = _error_response(
                req_id, RpcErrorCode.INTERNAL_ERROR, f"internal error in {name} (see debug.log)"
            )
        else:
            reply = {"jsonrpc": "2.0", "id": req_id, "result": result}
        if self._observe is not None:
            self._observe(name if name in self.methods else "<unknown>", code, time.perf_counter() - start)
        if "id" not in doc:
            return None  # a notification gets no answer (JSON-RPC 2.0 §4.1)
        return reply
