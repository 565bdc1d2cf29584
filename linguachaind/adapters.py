"""Adapters that present the real components to the RPC methods (`linguachaind.backends`).

Owns: `StoreChain` (BlockStore -> ChainBackend), `PoolAdapter` (Mempool -> MempoolBackend, with relay
to the network after admission), `PeersAdapter` (P2PService -> PeerBackend). Must not: add logic the
components lack; each method is a thin translation.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from chain.block import Block, TxBody
from chain.errors import ErrorCode
from chain.header import Header
from chain.state.model import RewardRecord, StateReader
from chain.store.blockstore import BlockStore
from chain.tx import Tx
from chain.types import AccountId, Height, TxId
from linguachaind.backends import PeerView, TxLocation
from mempool.config import PoolKind
from mempool.mempool import Mempool

log = logging.getLogger(__name__)


class StoreChain:
    def __init__(self, store: BlockStore) -> None:
        self.store = store

    def tip_header(self) -> Header:
        header = self.store.get_header(self.store.tip[0])
        assert header is not None, "the store checks its tip at open"
        return header

    def final_height(self) -> int:
        return int(self.store.final_height)

    def block_at(self, height: int) -> Block | None:
        return self.store.get_block_at(height)

    def block_by_hash(self, block_hash: bytes) -> Block | None:
        return self.store.get_block(block_hash)

    def find_tx(self, txid: bytes) -> TxLocation | None:
        found = self.store.find_tx(txid)
        if found is None:
            return None
        block_hash, pos = found
        block = self.store.get_block(block_hash)
        if block is None or not isinstance(block.body, TxBody) or pos >= len(block.body.txs):
            return None
        return TxLocation(block.body.txs[pos], block_hash, Height(block.header.height))

    def reader(self) -> StateReader:
        return self.store.reader()

    def rewards_for(self, account: AccountId) -> list[RewardRecord]:
        return self.store.rewards_for(account)

    def rewards_at(self, height: int) -> list[RewardRecord]:
        return self.store.rewards_at(height)

    def txs_of(self, account: AccountId, limit: int) -> list[TxLocation] | None:
        return None


class PoolAdapter:
    """RPC view of the mempool; `relay` gossips an admitted tx (set once p2p runs)."""

    def __init__(self, pool: Mempool, now_ms: Callable[[], int]) -> None:
        self.pool = pool
        self._now_ms = now_ms
        self.relay: Callable[[bytes], Awaitable[Any]] | None = None

    async def submit(self, raw: bytes) -> TxId | ErrorCode:
        result = self.pool.add_raw(raw, self._now_ms())
        if isinstance(result, ErrorCode):
            return result
        if self.relay is not None:
            try:
                await self.relay(raw)
            except Exception:
                log.warning("relaying tx %s failed; it stays in the mempool", result.hex(), exc_info=True)
        return result

    def info(self) -> dict[str, Any]:
        stats = self.pool.statistics(self._now_ms())
        out: dict[str, Any] = {
            "size": stats.count,
            "bytes": stats.bytes,
            "senders": stats.senders,
            "oldest_age_ms": stats.oldest_age_ms,
            "future_held": stats.future_held,
            "accepted_total": stats.accepted_total,
            "rejected_total": stats.rejected_total,
            "evicted_total": stats.evicted_total,
            "expired_total": stats.expired_total,
            "min_fee": self.pool.params.min_fee,
        }
        for p in stats.pools:
            out[PoolKind(p.kind).name.lower()] = {
                "count": p.count,
                "bytes": p.bytes,
                "max_count": p.max_count,
                "max_bytes": p.max_bytes,
                "min_fee_rate": p.min_fee_rate,
                "min_fee_rate_to_enter": p.min_fee_rate_to_enter,
            }
        return out

    def txids(self) -> list[TxId]:
        return self.pool.ids()

    def get(self, txid: bytes) -> Tx | None:
        return self.pool.get(TxId(txid))

    def pending_nonce(self, account: AccountId) -> int | None:
        return self.pool.next_nonce(account)


class PeersAdapter:
    def __init__(self, service: Any) -> None:
        self.service = service

    @property
    def peer_id(self) -> str:
        return str(self.service.peer_id)

    def listen_addrs(self) -> list[str]:
        return list(self.service.listen_addrs())

    def peers(self) -> list[PeerView]:
        return [
            PeerView(p.peer_id, list(p.addrs), p.height if p.height is not None else -1, float(p.score))
            for p in self.service.peers()
        ]

    async def add_peer(self, addr: str) -> None:
        result = await self.service.add_peer(addr)
        if isinstance(result, ErrorCode):
            raise ValueError(f"{result.name} ({int(result)})")

    async def disconnect_peer(self, peer_id: str) -> bool:
        if not any(p.peer_id == peer_id for p in self.service.peers()):
            return False
        self.service.disconnect_peer(peer_id)
        return True

    def gossip_stats(self) -> dict[str, int]:
        return dict(dataclasses.asdict(self.service.statistics().gossip))


class ProducerStats:
    """RPC view of the consensus services: counters for `getstakinginfo`; no `generate` yet."""

    def __init__(self, chain: Any, vdf: Any, producer: Any | None, attester: Any | None) -> None:
        self.chain, self.vdf, self.producer, self.attester = chain, vdf, producer, attester

    def statistics(self) -> dict[str, Any]:
        stats = self.chain.statistics()
        return {
            "proposed": self.producer.proposed if self.producer is not None else 0,
            "attested": self.attester.attested if self.attester is not None else 0,
            "vdf_computed": self.vdf.computed,
            "vdf_received": self.vdf.received,
            "blocks_imported": stats.imported,
            "blocks_rejected": stats.rejected,
            "reorgs": stats.reorgs,
            "side_blocks": stats.side_blocks,
            "orphans": stats.orphans,
        }

    async def generate(self, n: int) -> list[str]:
        from linguachaind.rpc.errors import not_available

        raise not_available("generate", "on-demand block production (blocks come on the slot timer)")
