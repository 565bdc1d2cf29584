"""Blob family: manifests and 1 MiB chunks of content-addressed blobs (PROTOCOL §7.3 `/blob/1`).

Owns: ids 40-59. A manifest lists the size and the BLAKE2b-256 of each chunk, so a downloader checks
every chunk as it arrives and refetches a bad one from another peer; the whole-blob hash (the blob's
name) is checked before anything is stored. Must not: touch the disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final

from chain.codec import U32, U64, ByteLen, MaxItems
from chain.types import BlobHash, Hash32
from p2p.messages import register

CHUNK_SIZE: Final = 1024 * 1024
MAX_CHUNKS: Final = 16 * 1024  # 16 GiB blobs at most


@dataclass(frozen=True, slots=True)
class GetBlobManifest:
    blob_hash: BlobHash


@dataclass(frozen=True, slots=True)
class BlobManifest:
    blob_hash: BlobHash
    size: U64
    chunk_hashes: Annotated[tuple[Hash32, ...], MaxItems(MAX_CHUNKS)]


@dataclass(frozen=True, slots=True)
class GetBlobChunk:
    blob_hash: BlobHash
    index: U32


@dataclass(frozen=True, slots=True)
class BlobChunk:
    blob_hash: BlobHash
    index: U32
    data: Annotated[bytes, ByteLen(0, CHUNK_SIZE)]


register(40, GetBlobManifest, 64)
register(41, BlobManifest, 64 + 35 * MAX_CHUNKS)
register(42, GetBlobChunk, 64)
register(43, BlobChunk, CHUNK_SIZE + 64)
