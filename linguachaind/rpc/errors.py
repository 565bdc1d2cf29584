"""Stable JSON-RPC error codes and the one error shape (documented in docs/rpc.md).

Owns: `RpcErrorCode` (numbers never change or get reused), `RpcError` raised by method handlers, and
`error_object`. Must not: know any method.

Shape: `{"jsonrpc": "2.0", "id": ..., "error": {"code": int, "message": str, "data": {...}?}}`.
For a rejected object `data` carries the chain's `ErrorCode`: `{"reason": "NONCE_TOO_LOW",
"reason_code": 40, "transient": false}`.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from chain.errors import ErrorCode, LinguaChainError


class RpcErrorCode(IntEnum):
    # JSON-RPC 2.0 standard codes.
    PARSE_ERROR = -32700  # body is not JSON
    INVALID_REQUEST = -32600  # JSON, but not a JSON-RPC 2.0 request object
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602  # wrong count, name or type of parameters
    INTERNAL_ERROR = -32603  # a bug: logged with its traceback in debug.log
    # Server-defined codes (-32000..-32099).
    UNAUTHORIZED = -32001  # missing or wrong cookie / user:password (HTTP 401)
    REQUEST_TOO_LARGE = -32002  # body above rpc_max_request_bytes (HTTP 413)
    NOT_AVAILABLE_YET = -32003  # method known, its back-end arrives with a later issue
    NOT_ALLOWED = -32004  # e.g. a devnet-only method on another network
    NOT_FOUND = -32005  # block, tx, account, blob or peer not found
    REJECTED = -32006  # object refused by validation or mempool policy; data.reason says why
    WARMING_UP = -32007  # node still opening its stores; retry
    SHUTTING_DOWN = -32008  # stop in progress


class RpcError(LinguaChainError):
    """Raised by a method handler to answer with a specific error code."""

    def __init__(self, code: RpcErrorCode, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def rejected(reason: ErrorCode, what: str = "rejected") -> RpcError:
    return RpcError(
        RpcErrorCode.REJECTED,
        f"{what}: {reason.name}",
        {"reason": reason.name, "reason_code": int(reason), "transient": reason.is_transient},
    )


def not_available(method: str, backend: str) -> RpcError:
    return RpcError(
        RpcErrorCode.NOT_AVAILABLE_YET,
        f"{method} is not available yet on this node (needs the {backend})",
        {"method": method, "backend": backend},
    )


def error_object(code: RpcErrorCode, message: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": int(code), "message": message}
    if data is not None:
        err["data"] = data
    return err
