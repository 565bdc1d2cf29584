"""JSON views of chain objects for RPC answers (docs/rpc.md): the shape scripts rely on.

Owns: turning frozen chain dataclasses into JSON values: bytes as hex, `AccountId` fields as bech32m
addresses, enums as lower-case names, amounts as integers in base units; plus the extra `hash`/`id`
fields of blocks and txs. Must not: read the store (callers pass the objects).
"""

from __future__ import annotations

import dataclasses
from enum import IntEnum
from functools import lru_cache
from typing import Any, get_type_hints

from chain.address import encode_address
from chain.block import Block
from chain.codec import encode
from chain.header import Attestation, Header, round_for_height
from chain.tx import Tx
from chain.types import AccountId


@lru_cache(maxsize=256)
def _hints(cls: type[Any]) -> dict[str, Any]:
    return get_type_hints(cls, include_extras=False)


def to_json(value: Any, hrp: str, hint: Any = None) -> Any:
    """A JSON-able view of any codec value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hints = _hints(type(value))
        return {
            f.name: to_json(getattr(value, f.name), hrp, hints.get(f.name)) for f in dataclasses.fields(value)
        }
    if isinstance(value, IntEnum):
        return value.name.lower()
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, bytes):
        if hint is AccountId and len(value) == 20:
            return encode_address(AccountId(value), hrp)
        return value.hex()
    if isinstance(value, tuple | list):
        return [to_json(v, hrp) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v, hrp) for k, v in value.items()}
    return str(value)


def tx_json(tx: Tx, hrp: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": tx.id.hex(), "sender_address": encode_address(tx.sender_account, hrp)}
    out.update(to_json(tx, hrp))
    out["size"] = len(encode(tx))
    return out


def attestation_json(att: Attestation, hrp: str) -> dict[str, Any]:
    out: dict[str, Any] = to_json(att, hrp)
    return out


def header_json(header: Header, hrp: str) -> dict[str, Any]:
    out: dict[str, Any] = {"hash": header.hash.hex(), "round": round_for_height(header.height)}
    out.update(to_json(header, hrp))
    return out


def block_json(block: Block, hrp: str, *, final: bool | None = None, verbose: bool = True) -> dict[str, Any]:
    out = header_json(block.header, hrp)
    body = block.body
    if final is not None:
        out["final"] = final
    out["size"] = len(encode(block))
    txs = getattr(body, "txs", None)
    if txs is not None:
        out["tx_count"] = len(txs)
        out["txs"] = [tx_json(t, hrp) for t in txs] if verbose else [t.id.hex() for t in txs]
    else:
        out["body"] = to_json(body, hrp)
    return out
