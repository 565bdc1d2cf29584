"""A content-addressed file store for blobs (ARCHITECTURE §5 `blobs/`, PROTOCOL §7.3).

Owns: files named by the hex BLAKE2b-256 of their content (`chain.hashing.H`), the `partial/`
directory where downloads are assembled, and `put_verified`: hash the partial file, and only if it
matches (and has a size a unit naming it declares, `expect_size`) fsync it and rename it atomically
into its final name; a refused partial file is removed, never kept. An unverified file never
carries a final name. Disk work runs in a worker thread (never on the trio thread, LIBP2P-NOTES).
Must not: talk to the network (p2p.blobs does).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Final

import trio

from chain.errors import ErrorCode
from chain.types import BlobHash, Hash32

log = logging.getLogger(__name__)

_READ: Final = 1024 * 1024
_MANIFEST_CACHE: Final = 256
_EXPECTED: Final = 4096  # blob hashes whose declared sizes are remembered (oldest forgotten first)


def _hash_file(path: Path) -> bytes:
    h = hashlib.blake2b(digest_size=32)
    with path.open("rb") as f:
        while block := f.read(_READ):
            h.update(block)
    return h.digest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileBlobStore:
    """`root/<hex>` holds verified blobs; `root/partial/<hex>.part` holds downloads in progress."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.partial_dir = root / "partial"
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        self._manifests: OrderedDict[tuple[bytes, int], tuple[Hash32, ...]] = OrderedDict()
        self._expected: OrderedDict[bytes, frozenset[int]] = OrderedDict()

    def expect_size(self, blob_hash: BlobHash, size: int) -> None:
        """A unit declares `blob_hash` to be `size` bytes: a download of another size is refused
        before it starts (p2p.blobs) and never stored (`put_verified`). Several units may name one
        hash: any declared size is let through, and admission checks each unit against the blob."""
        key = bytes(blob_hash)
        self._expected[key] = self._expected.get(key, frozenset()) | {size}
        self._expected.move_to_end(key)
        while len(self._expected) > _EXPECTED:
            self._expected.popitem(last=False)

    def expected_sizes(self, blob_hash: BlobHash) -> frozenset[int]:
        return self._expected.get(bytes(blob_hash), frozenset())

    def path(self, blob_hash: BlobHash) -> Path:
        return self.root / blob_hash.hex()

    def has(self, blob_hash: BlobHash) -> bool:
        return len(blob_hash) == 32 and self.path(blob_hash).is_file()

    def size(self, blob_hash: BlobHash) -> int | None:
        try:
            return self.path(blob_hash).stat().st_size
        except OSError:
            return None

    def read(self, blob_hash: BlobHash) -> bytes | None:
        """The whole verified blob, or None (small blobs only: data units, test sets, adapters; a
        synchronous read for the chain service's import checks)."""
        try:
            return self.path(blob_hash).read_bytes() if len(blob_hash) == 32 else None
        except OSError:
            return None

    def put_bytes_sync(self, data: bytes) -> BlobHash:
        """`put_bytes` on the calling thread (a producer or an import check storing a small test set)."""
        blob_hash = BlobHash(hashlib.blake2b(data, digest_size=32).digest())
        if not self.has(blob_hash):
            tmp = self.partial_dir / f"{blob_hash.hex()}.local"
            _write_file(tmp, data)
            err = self._put_verified_sync(blob_hash, tmp)
            assert err is None, err
        return blob_hash

    def partial_path(self, blob_hash: BlobHash) -> Path:
        return self.partial_dir / f"{blob_hash.hex()}.part"

    async def put_bytes(self, data: bytes) -> BlobHash:
        """Store `data` (a locally produced blob) and return its hash."""
        blob_hash = BlobHash(hashlib.blake2b(data, digest_size=32).digest())
        if self.has(blob_hash):
            return blob_hash
        tmp = self.partial_dir / f"{blob_hash.hex()}.local"
        await trio.to_thread.run_sync(_write_file, tmp, data)
        err = await self.put_verified(blob_hash, tmp)
        assert err is None, err
        return blob_hash

    async def put_verified(self, blob_hash: BlobHash, partial: Path) -> ErrorCode | None:
        return await trio.to_thread.run_sync(self._put_verified_sync, blob_hash, partial)

    def _put_verified_sync(self, blob_hash: BlobHash, partial: Path) -> ErrorCode | None:
        expected = self.expected_sizes(blob_hash)
        error = None
        if expected and partial.stat().st_size not in expected:
            error = ErrorCode.BLOB_SIZE_MISMATCH
        elif _hash_file(partial) != blob_hash:
            error = ErrorCode.BLOB_HASH_MISMATCH
        if error is not None:
            partial.unlink(missing_ok=True)  # refused bytes are not kept, not even as a partial file
            return error
        fd = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, self.path(blob_hash))
        _fsync_dir(self.root)
        return None

    async def read_range(self, blob_hash: BlobHash, offset: int, length: int) -> bytes | None:
        """Up to `length` bytes of a verified blob from `offset` (read in a worker thread); None when
        the blob is not held."""
        if not self.has(blob_hash) or offset < 0 or length < 0:
            return None
        return await trio.to_thread.run_sync(self._read_range, blob_hash, offset, length)

    def _read_range(self, blob_hash: BlobHash, offset: int, length: int) -> bytes | None:
        try:
            with self.path(blob_hash).open("rb") as f:
                f.seek(offset)
                return f.read(length)
        except OSError:
            return None

    async def get_chunk(self, blob_hash: BlobHash, index: int, chunk_size: int) -> bytes | None:
        if not self.has(blob_hash) or index < 0:
            return None
        return await trio.to_thread.run_sync(self._read_chunk, blob_hash, index, chunk_size)

    def _read_chunk(self, blob_hash: BlobHash, index: int, chunk_size: int) -> bytes | None:
        try:
            with self.path(blob_hash).open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                if index * chunk_size >= size and not (index == 0 and size == 0):
                    return None
                f.seek(index * chunk_size)
                return f.read(chunk_size)
        except OSError:
            return None

    async def chunk_hashes(self, blob_hash: BlobHash, chunk_size: int) -> tuple[Hash32, ...] | None:
        key = (bytes(blob_hash), chunk_size)
        cached = self._manifests.get(key)
        if cached is not None:
            self._manifests.move_to_end(key)
            return cached
        if not self.has(blob_hash):
            return None
        hashes = await trio.to_thread.run_sync(chunk_hashes_of_file, self.path(blob_hash), chunk_size)
        if hashes is None:
            return None
        self._manifests[key] = hashes
        while len(self._manifests) > _MANIFEST_CACHE:
            self._manifests.popitem(last=False)
        return hashes


def chunk_hashes_of_file(path: Path, chunk_size: int) -> tuple[Hash32, ...] | None:
    """H of each `chunk_size` piece of `path` (one hash of b"" for an empty file)."""
    try:
        out: list[Hash32] = []
        with path.open("rb") as f:
            while True:
                block = f.read(chunk_size)
                if not block and out:
                    break
                out.append(Hash32(hashlib.blake2b(block, digest_size=32).digest()))
                if len(block) < chunk_size:
                    break
        return tuple(out)
    except OSError:
        return None


def _write_file(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
