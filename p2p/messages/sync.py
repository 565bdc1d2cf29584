"""Sync family: headers and blocks by height range (PROTOCOL §7.3 `/lc/<chain_id>/sync/1`).

Owns: ids 20-39 and the bounds of one request (count) and one response (count and bytes). Headers and
blocks travel as their canonical encodings (bytes), exactly as the chain store holds them, so serving
never re-encodes. Must not: decode or validate the blocks (the syncer hands them to a `BlockSink`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final

from chain.codec import U16, ByteLen, MaxItems
from chain.types import Height
from p2p.messages import register

MAX_HEADERS: Final = 512
MAX_BLOCKS: Final = 128
MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024 - 64 * 1024  # below the codec's 4 MiB parse limit
MAX_ITEM_BYTES: Final = 3 * 1024 * 1024

RawItem = Annotated[bytes, ByteLen(1, MAX_ITEM_BYTES)]


@dataclass(frozen=True, slots=True)
class GetHeaders:
    start: Height
    count: U16


@dataclass(frozen=True, slots=True)
class Headers:
    start: Height
    headers: Annotated[tuple[RawItem, ...], MaxItems(MAX_HEADERS)]


@dataclass(frozen=True, slots=True)
class GetBlocks:
    start: Height
    count: U16


@dataclass(frozen=True, slots=True)
class Blocks:
    """Consecutive blocks from `start`; fewer than asked when the peer has no more or the byte bound
    is reached (never zero when the peer has `start`)."""

    start: Height
    blocks: Annotated[tuple[RawItem, ...], MaxItems(MAX_BLOCKS)]


register(20, GetHeaders, 64)
register(21, Headers, MAX_RESPONSE_BYTES)
register(22, GetBlocks, 64)
register(23, Blocks, MAX_RESPONSE_BYTES)
