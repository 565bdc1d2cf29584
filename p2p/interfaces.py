"""What the node plugs into the p2p layer (PROTOCOL §7): validators, chain source, block sink, blobs.

Owns: the `Protocol`s through which p2p calls the node's real checks and stores, so that p2p never
imports the daemon (ARCHITECTURE §3). The daemon wires the chain store, mempool and consensus rules
behind them; tests wire simple real objects (p2p.testing). Must not: hold logic.

Error codes come from `chain.errors`: `code.is_transient` (orphan, future block, pool full, ...) never
penalises the sender; a permanent code rejects the message and lowers the sender's score (§7.4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from chain.errors import ErrorCode
from chain.types import BlobHash, BlockHash, Hash32


class GossipValidator(Protocol):
    """The node's checks of each gossip topic (§7.2, §4.7 order). Each is called with the raw payload
    and the forwarding peer id (base58) and must return within the gossip deadline; an exception or
    a timeout counts as a reject without penalty. Own publishes are not passed through these."""

    async def validate_tx(self, raw: bytes, peer: str) -> ErrorCode | None: ...

    async def validate_block(self, raw: bytes, peer: str) -> ErrorCode | None: ...

    async def validate_attestation(self, raw: bytes, peer: str) -> ErrorCode | None: ...

    async def validate_vdf(self, raw: bytes, peer: str) -> ErrorCode | None: ...


class ChainSource(Protocol):
    """Read-only view of the local chain for the status and sync protocols (§7.3). Sync methods:
    they must not block (an in-memory index or a LevelDB point read)."""

    @property
    def genesis_hash(self) -> BlockHash: ...

    def tip(self) -> tuple[int, BlockHash]:
        """Best (height, hash)."""
        ...

    def final(self) -> tuple[int, BlockHash]:
        """Final (height, hash) (§4.4)."""
        ...

    def header_at(self, height: int) -> bytes | None:
        """Canonical encoding of the best chain's header at `height`, or None."""
        ...

    def block_at(self, height: int) -> bytes | None:
        """Canonical encoding of the best chain's block at `height`, or None."""
        ...


class BlockSink(Protocol):
    """Where the syncer imports downloaded blocks, in height order (validation happens inside)."""

    async def import_block(self, raw: bytes) -> ErrorCode | None: ...


class BlobStore(Protocol):
    """Content-addressed blob files (p2p.blobstore.FileBlobStore is the real one)."""

    def has(self, blob_hash: BlobHash) -> bool: ...

    def size(self, blob_hash: BlobHash) -> int | None: ...

    async def chunk_hashes(self, blob_hash: BlobHash, chunk_size: int) -> tuple[Hash32, ...] | None: ...

    async def get_chunk(self, blob_hash: BlobHash, index: int, chunk_size: int) -> bytes | None: ...

    def partial_path(self, blob_hash: BlobHash) -> Path:
        """Where an unverified download of `blob_hash` is assembled (never the final name)."""
        ...

    async def put_verified(self, blob_hash: BlobHash, partial: Path) -> ErrorCode | None:
        """Hash `partial`; if it is `blob_hash` (and of an expected size), fsync and rename it into
        place atomically; otherwise remove it."""
        ...

    def expected_sizes(self, blob_hash: BlobHash) -> frozenset[int]:
        """The sizes the units naming `blob_hash` declare (empty: none known, any size)."""
        ...
