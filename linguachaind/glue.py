"""The node's network handlers (chia's `full_node_api.py` role): one method per inbound message kind,
and the node's outbound gossip (PROTOCOL §7.2, §7.3).

Owns: `NodeApi`, which p2p calls for every gossip message (`p2p.interfaces.GossipValidator`: the
check of each topic *is* the import, so a message is forwarded only if this node accepted it) and
for every synced block (`BlockSink`), and which serves status and sync reads (`ChainSource`);
`decode_block`, the one decoder of a block from the wire (one size bound: the gossip spec's); and
`Outbound`, the consensus services' `Network` over `P2PService`. Must not: hold rules (chain,
mempool and the services do) or remap a component's result anywhere but here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import trio

from chain.block import Block
from chain.codec import decode, encode
from chain.consensus.validation import decode_block
from chain.errors import ErrorCode
from chain.header import Attestation
from chain.store.blockstore import BlockStore
from chain.types import BlobHash, BlockHash
from chain.vdfmsg import VdfProof
from linguachaind.services.chain_service import AddBlockResult, ChainService, ImportResult
from linguachaind.services.vdf_service import VdfService
from mempool.mempool import Mempool
from p2p.messages.gossip import MAX_ATTESTATION_BYTES, MAX_VDF_BYTES
from p2p.service import P2PService

log = logging.getLogger(__name__)

# Gossip verdicts of blocks that were not added: the codes p2p neither forwards nor penalises.
_NOT_FORWARDED: Final = {
    AddBlockResult.ALREADY_KNOWN: ErrorCode.ALREADY_KNOWN,
    AddBlockResult.ORPHAN: ErrorCode.ORPHAN,
}


class NodeApi:
    """Every message p2p hands the node, one method per kind; the results p2p scores peers by."""

    def __init__(
        self,
        store: BlockStore,
        chain: ChainService,
        mempool: Mempool,
        vdf: VdfService,
        now_ms: Callable[[], int],
        *,
        fetch_unit_blob: Callable[[bytes, str], Awaitable[ErrorCode | None]],
    ) -> None:
        self.store = store
        self.chain = chain
        self.mempool = mempool
        self.vdf = vdf
        self._now_ms = now_ms
        # A gossiped unit's blob fetch (linguachaind.services.datablocks.DataBlocks.fetch_unit_blob):
        # the mempool admits a unit only once its blob is held (PROTOCOL §3.3, §3.4).
        self.fetch_unit_blob = fetch_unit_blob

    # -- gossip (p2p.interfaces.GossipValidator) -------------------------------------------------

    async def validate_tx(self, raw: bytes, peer: str) -> ErrorCode | None:
        result = self.mempool.add_raw(raw, self._now_ms())
        if result is ErrorCode.BLOB_MISSING:
            fetched = await self.fetch_unit_blob(raw, peer)  # from the sender, within the gossip deadline
            if fetched is ErrorCode.BLOB_SIZE_MISMATCH:
                # The sender serves a blob of another size than the unit it gossips declares: an
                # honest node forwards a unit only once it holds its blob at the declared size.
                return fetched
            result = self.mempool.add_raw(raw, self._now_ms())
        return result if isinstance(result, ErrorCode) else None

    async def validate_block(self, raw: bytes, peer: str) -> ErrorCode | None:
        """Forward a block this node added (best chain or side); ORPHAN and ALREADY_KNOWN are
        not forwarded and not penalised (transient codes)."""
        result = self._import(raw)
        if isinstance(result, ErrorCode):
            return result
        log.debug("gossiped block from %s: %s", peer, result.value)
        return _NOT_FORWARDED.get(result)

    async def validate_attestation(self, raw: bytes, peer: str) -> ErrorCode | None:
        att = decode(Attestation, raw, max_bytes=MAX_ATTESTATION_BYTES)
        if isinstance(att, ErrorCode):
            return att
        return self.chain.on_attestation(att)

    async def validate_vdf(self, raw: bytes, peer: str) -> ErrorCode | None:
        msg = decode(VdfProof, raw, max_bytes=MAX_VDF_BYTES)
        if isinstance(msg, ErrorCode):
            return msg
        return self.vdf.on_gossip(msg)

    # -- sync (p2p.interfaces.BlockSink): the same import as a gossiped block ---------------------

    async def import_block(self, raw: bytes) -> ErrorCode | None:
        """A synced block: one we already hold is no failure (the syncer goes on); an orphan is."""
        result = self._import(raw)
        if isinstance(result, ErrorCode):
            return result
        return ErrorCode.ORPHAN if result is AddBlockResult.ORPHAN else None

    def _import(self, raw: bytes) -> ImportResult:
        """A block from the wire, gossiped or synced: `decode_block` (one size bound), then the chain
        service's import (never with effects: a received block has every rule checked)."""
        block = decode_block(self.chain.params, raw)
        return block if isinstance(block, ErrorCode) else self.chain.import_block(block)

    # -- status and sync reads (p2p.interfaces.ChainSource): point reads of the store ------------

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


FetchBlob = Callable[[BlobHash, Sequence[str] | None], Awaitable[ErrorCode | None]]


class BlobFetches:
    """One download per blob hash at a time (ARCHITECTURE §5 `blobs/`): a gossiped unit's blob is
    asked for twice at once, by the mempool's admission check (`DataBlocks.want`, queued) and by
    `NodeApi.validate_tx` (from the announcing peer), and two downloads of one hash wrote the same
    partial file: one renamed it away under the other, whose FileNotFoundError stopped the node. A
    second caller waits for the download in flight and gets its result."""

    def __init__(self, fetch: FetchBlob) -> None:
        self._fetch = fetch
        self._in_flight: dict[bytes, tuple[trio.Event, list[ErrorCode | None]]] = {}

    async def fetch(self, blob_hash: BlobHash, peers: Sequence[str] | None) -> ErrorCode | None:
        key = bytes(blob_hash)
        running = self._in_flight.get(key)
        if running is not None:
            done, result = running
            await done.wait()
            return result[0] if result else ErrorCode.BLOB_MISSING
        done, result = trio.Event(), []
        self._in_flight[key] = (done, result)
        try:
            result.append(await self._fetch(blob_hash, peers))
            return result[0]
        finally:
            del self._in_flight[key]
            done.set()


class Outbound:
    """The services' `Network` and the `TxSubmitter`'s `TxPublisher`: encode, publish, never raise
    (a failed publish is logged; the object stays where it is: chain, mempool or VDF cache)."""

    def __init__(self, p2p: P2PService) -> None:
        self.p2p = p2p

    async def publish_block(self, block: Block) -> None:
        await self._publish("block", self.p2p.publish_block, encode(block))

    async def publish_attestation(self, att: Attestation) -> None:
        await self._publish("attestation", self.p2p.publish_attestation, encode(att))

    async def publish_vdf(self, msg: VdfProof) -> None:
        await self._publish("vdf proof", self.p2p.publish_vdf, encode(msg))

    async def publish_tx(self, raw: bytes) -> None:
        await self._publish("tx", self.p2p.publish_tx, raw)

    @staticmethod
    async def _publish(what: str, publish: Callable[[bytes], Awaitable[bool]], raw: bytes) -> None:
        try:
            await publish(raw)
        except Exception:
            log.warning("publishing a %s failed", what, exc_info=True)
