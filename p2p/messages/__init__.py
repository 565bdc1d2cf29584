"""Wire messages of the p2p layer, one module per family, with stable numeric ids (PROTOCOL §7, STYLE §4).

Owns: the registry of message ids and their size limits, and the id-prefixed encoding of one message
(`encode_message` / `decode_message`): a big-endian u16 id followed by the canonical codec encoding.
Ids are never reused: 1-19 status, 20-39 sync, 40-59 blob, 60-79 gossip payloads.
Must not: do I/O (p2p.framing reads and writes frames) or validate chain semantics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, TypeVar

from chain.codec import decode, encode
from chain.errors import ErrorCode

T = TypeVar("T")

ID_BYTES: Final = 2


@dataclass(frozen=True, slots=True)
class MessageSpec:
    type_id: int
    cls: type[Any]
    max_bytes: int  # of the encoded body, id excluded


REGISTRY: dict[int, MessageSpec] = {}
_BY_CLASS: dict[type[Any], MessageSpec] = {}


def register(type_id: int, cls: type[T], max_bytes: int) -> type[T]:
    if type_id in REGISTRY or cls in _BY_CLASS:
        raise ValueError(f"message id {type_id} or class {cls.__name__} registered twice")
    spec = MessageSpec(type_id, cls, max_bytes)
    REGISTRY[type_id] = spec
    _BY_CLASS[cls] = spec
    return cls


def encode_message(msg: Any) -> bytes:
    spec = _BY_CLASS[type(msg)]
    body = encode(msg)
    if len(body) > spec.max_bytes:
        raise ValueError(f"{type(msg).__name__} of {len(body)} bytes is over its limit {spec.max_bytes}")
    return spec.type_id.to_bytes(ID_BYTES, "big") + body


def decode_message(data: bytes, *expected: type[Any]) -> Any | ErrorCode:
    """Decode an id-prefixed message that must be one of `expected`. Never raises."""
    if len(data) < ID_BYTES:
        return ErrorCode.MALFORMED
    spec = REGISTRY.get(int.from_bytes(data[:ID_BYTES], "big"))
    if spec is None or spec.cls not in expected:
        return ErrorCode.BAD_MESSAGE
    body = data[ID_BYTES:]
    if len(body) > spec.max_bytes:
        return ErrorCode.TOO_LARGE
    return decode(spec.cls, body, max_bytes=spec.max_bytes)


def max_frame(*classes: type[Any]) -> int:
    """Largest id-prefixed frame any of `classes` may produce (the read limit of a frame)."""
    return ID_BYTES + max(_BY_CLASS[c].max_bytes for c in classes)
