"""What the RPC methods need from the node's components, as small Protocols.

Owns: `ChainBackend`, `MempoolBackend`, `PeerBackend`, `ProducerBackend` and the value types they
return. The node (`linguachaind.node`) adapts the real store, mempool and p2p service to them; the
RPC methods and their unit tests see only these. Must not: import trio, plyvel or libp2p.
A back-end that is not wired yet is `None` in `RpcContext`: its methods answer NOT_AVAILABLE_YET.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from chain.block import Block
from chain.errors import ErrorCode
from chain.header import Header
from chain.state.model import RewardRecord, StateReader
from chain.tx import Tx
from chain.types import AccountId, BlockHash, Height, TxId


@dataclass(frozen=True, slots=True)
class TxLocation:
    tx: Tx
    block_hash: BlockHash
    height: Height


class ChainBackend(Protocol):
    def tip_header(self) -> Header: ...

    def final_height(self) -> int: ...

    def block_at(self, height: int) -> Block | None: ...

    def block_by_hash(self, block_hash: bytes) -> Block | None: ...

    def find_tx(self, txid: bytes) -> TxLocation | None: ...

    def reader(self) -> StateReader: ...

    def rewards_for(self, account: AccountId) -> list[RewardRecord]: ...

    def rewards_at(self, height: int) -> list[RewardRecord]: ...

    def txs_of(self, account: AccountId, limit: int) -> list[TxLocation] | None:
        """Txs sent or received by `account`, newest first; None when the store keeps no such index."""
        ...


class MempoolBackend(Protocol):
    async def submit(self, raw: bytes) -> TxId | ErrorCode:
        """Admit (and relay) an encoded tx; its id or why it was refused."""
        ...

    def info(self) -> dict[str, Any]: ...

    def txids(self) -> list[TxId]: ...

    def get(self, txid: bytes) -> Tx | None: ...

    def pending_nonce(self, account: AccountId) -> int | None:
        """The next nonce counting txs of `account` already in the pool (None: pool has none)."""
        ...


@dataclass(frozen=True, slots=True)
class PeerView:
    peer_id: str
    addrs: list[str]
    height: int
    score: float
    extra: dict[str, Any] = field(default_factory=dict)


class PeerBackend(Protocol):
    @property
    def peer_id(self) -> str: ...

    def listen_addrs(self) -> list[str]: ...

    def peers(self) -> list[PeerView]: ...

    async def add_peer(self, addr: str) -> None: ...

    async def disconnect_peer(self, peer_id: str) -> bool: ...

    def gossip_stats(self) -> dict[str, int]:
        """The gossip layer's counters (`p2p.gossip.GossipStats`)."""
        ...


class ProducerBackend(Protocol):
    def statistics(self) -> dict[str, Any]: ...

    async def generate(self, n: int) -> list[str]:
        """Devnet: produce `n` blocks now; their hashes."""
        ...
