"""Glue between the p2p layer and the node's chain, mempool and VDF service (PROTOCOL §7.2, §7.3).

Owns: `NodeGossipValidator` (each topic's check *is* the import: a block is validated by importing it
into the chain service, a tx by admitting it to the mempool, so a message is forwarded only if this
node accepted it), `StoreChainSource` and `ChainBlockSink` for status/sync, and `P2PNetwork`, the
services' `Network` over gossip. Must not: hold rules.
"""

from __future__ import annotations

import logging
from typing import Any

from chain.block import Block
from chain.codec import decode, encode
from chain.errors import ErrorCode
from chain.header import Attestation
from chain.store.blockstore import BlockStore
from chain.types import BlockHash
from chain.vdfmsg import VdfProof
from linguachaind.services.chain_service import ChainService
from linguachaind.services.vdf_service import VdfService
from mempool.mempool import Mempool

log = logging.getLogger(__name__)

MAX_ATTESTATION_BYTES = 1024
MAX_VDF_BYTES = 4096


class NodeGossipValidator:
    def __init__(self, chain: ChainService, mempool: Mempool, vdf: VdfService | None, now_ms: Any) -> None:
        self.chain = chain
        self.mempool = mempool
        self.vdf = vdf
        self._now_ms = now_ms

    async def validate_tx(self, raw: bytes, peer: str) -> ErrorCode | None:
        result = self.mempool.add_raw(raw, self._now_ms())
        if isinstance(result, ErrorCode):
            return ErrorCode.ALREADY_KNOWN if result is ErrorCode.DUPLICATE_TX else result
        return None

    async def validate_block(self, raw: bytes, peer: str) -> ErrorCode | None:
        block = decode(Block, raw, max_bytes=self.chain.params.max_block_bytes + 64 * 1024)
        if isinstance(block, ErrorCode):
            return block
        code = self.chain.import_block(block)
        if code is None:
            log.debug("block %d %s from %s imported", block.height, block.hash.hex()[:16], peer)
        return code

    async def validate_attestation(self, raw: bytes, peer: str) -> ErrorCode | None:
        att = decode(Attestation, raw, max_bytes=MAX_ATTESTATION_BYTES)
        if isinstance(att, ErrorCode):
            return att
        return self.chain.on_attestation(att)

    async def validate_vdf(self, raw: bytes, peer: str) -> ErrorCode | None:
        msg = decode(VdfProof, raw, max_bytes=MAX_VDF_BYTES)
        if isinstance(msg, ErrorCode):
            return msg
        if self.vdf is None:
            return ErrorCode.ALREADY_KNOWN  # nothing to do with it; do not forward, do not penalise
        return self.vdf.on_gossip(msg)


class StoreChainSource:
    """`p2p.interfaces.ChainSource` over the block store (point reads only)."""

    def __init__(self, store: BlockStore) -> None:
        self.store = store

    @property
    def genesis_hash(self) -> BlockHash:
        return self.store.genesis_hash

    def tip(self) -> tuple[int, BlockHash]:
        block_hash, height = self.store.tip
        return int(height), block_hash

    def final(self) -> tuple[int, BlockHash]:
        height = int(self.store.final_height)
        block_hash = self.store.hash_at(height)
        assert block_hash is not None, "the final block is on the main chain"
        return height, block_hash

    def header_at(self, height: int) -> bytes | None:
        block_hash = self.store.hash_at(height)
        header = self.store.get_header(block_hash) if block_hash is not None else None
        return encode(header) if header is not None else None

    def block_at(self, height: int) -> bytes | None:
        block = self.store.get_block_at(height)
        return encode(block) if block is not None else None


class ChainBlockSink:
    """`p2p.interfaces.BlockSink`: synced blocks go through the same import as gossiped ones."""

    def __init__(self, chain: ChainService) -> None:
        self.chain = chain

    async def import_block(self, raw: bytes) -> ErrorCode | None:
        block = decode(Block, raw, max_bytes=self.chain.params.max_block_bytes + 64 * 1024)
        if isinstance(block, ErrorCode):
            return block
        code = self.chain.import_block(block)
        return None if code is ErrorCode.ALREADY_KNOWN else code


class P2PNetwork:
    """The services' `Network`: publishes on gossip once the p2p service is attached, drops before."""

    def __init__(self) -> None:
        self.service: Any = None

    async def _publish(self, kind: str, raw: bytes) -> None:
        if self.service is None:
            return
        try:
            await getattr(self.service, f"publish_{kind}")(raw)
        except Exception:
            log.warning("publishing a %s failed", kind, exc_info=True)

    async def publish_block(self, block: Block) -> None:
        await self._publish("block", encode(block))

    async def publish_attestation(self, att: Attestation) -> None:
        await self._publish("attestation", encode(att))

    async def publish_vdf(self, msg: VdfProof) -> None:
        await self._publish("vdf", encode(msg))

    async def publish_tx(self, raw: bytes) -> None:
        await self._publish("tx", raw)
