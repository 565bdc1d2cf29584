"""Handshake family: `Status` and the generic `ErrorReply` (PROTOCOL §7.3 `/lc/<chain_id>/status/1`).

Owns: the message types and ids 1-19. Must not: decide what a mismatch means (p2p.peers does).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag
from typing import Annotated, Final

from chain.codec import U16, U64, MaxItems, TextLen
from chain.types import BlockHash, ChainId, Height
from p2p.messages import register

MAX_PEX_ADDRS: Final = 16
Multiaddr = Annotated[str, TextLen(256)]


class Capability(IntFlag):
    """Bits of `Status.capabilities`."""

    SYNC = 1  # serves /sync/1
    BLOBS = 2  # serves /blob/1


@dataclass(frozen=True, slots=True)
class Status:
    """Sent by both sides of every new connection and polled while syncing."""

    protocol_version: U16
    chain_id: ChainId
    genesis_hash: BlockHash
    best_height: Height
    best_hash: BlockHash
    final_height: Height
    final_hash: BlockHash
    capabilities: U64
    listen_addrs: Annotated[tuple[Multiaddr, ...], MaxItems(MAX_PEX_ADDRS)]  # this node's own addrs
    known_peers: Annotated[tuple[Multiaddr, ...], MaxItems(MAX_PEX_ADDRS)]  # peer exchange (§7.1)


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A request could not be served; `code` is a `chain.errors.ErrorCode` number."""

    code: U16


STATUS_ID: Final = 1
ERROR_REPLY_ID: Final = 2

register(STATUS_ID, Status, 16 * 1024)
register(ERROR_REPLY_ID, ErrorReply, 16)
