"""The content-addressed blob store: nothing unverified ever gets a final name."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from chain.errors import ErrorCode
from chain.types import BlobHash, Hash32
from p2p.blobstore import FileBlobStore, chunk_hashes_of_file


def blake(data: bytes) -> BlobHash:
    return BlobHash(hashlib.blake2b(data, digest_size=32).digest())


async def test_put_verified_renames_only_matching_files(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    data = os.urandom(3000)
    good = blake(data)
    partial = store.partial_path(good)
    partial.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # always differs
    assert await store.put_verified(good, partial) is ErrorCode.BLOB_HASH_MISMATCH
    assert not store.has(good)
    assert not store.path(good).exists()
    partial.write_bytes(data)
    assert await store.put_verified(good, partial) is None
    assert store.has(good)
    assert not partial.exists()
    assert store.path(good).read_bytes() == data
    assert store.path(good).name == good.hex()


async def test_chunks_and_manifest(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    data = os.urandom(2500)
    h = await store.put_bytes(data)
    assert h == blake(data)
    assert store.size(h) == 2500
    assert await store.get_chunk(h, 0, 1000) == data[:1000]
    assert await store.get_chunk(h, 2, 1000) == data[2000:]
    assert await store.get_chunk(h, 3, 1000) is None
    hashes = await store.chunk_hashes(h, 1000)
    assert hashes == tuple(Hash32(blake(data[i : i + 1000])) for i in (0, 1000, 2000))
    assert await store.get_chunk(blake(b"missing"), 0, 1000) is None


def test_empty_file_has_one_chunk_hash(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert chunk_hashes_of_file(path, 1024) == (Hash32(blake(b"")),)


async def test_a_refused_file_is_removed_not_kept(tmp_path: Path) -> None:
    """A download that does not hash to its name, or whose length no unit naming it declares, is
    removed: a lying peer cannot park bytes in the store (issue 15 finding)."""
    store = FileBlobStore(tmp_path)
    data = os.urandom(3000)
    h = blake(data)
    partial = store.partial_path(h)
    partial.write_bytes(b"not these bytes")
    assert await store.put_verified(h, partial) is ErrorCode.BLOB_HASH_MISMATCH
    assert not partial.exists()
    store.expect_size(h, 2999)  # a unit declares another size than the blob has
    partial.write_bytes(data)
    assert await store.put_verified(h, partial) is ErrorCode.BLOB_SIZE_MISMATCH
    assert not partial.exists()
    assert not store.has(h)
    assert list(store.partial_dir.iterdir()) == []
    store.expect_size(h, 3000)  # another unit declares the true size: any declared size is let through
    assert store.expected_sizes(h) == frozenset({2999, 3000})
    partial.write_bytes(data)
    assert await store.put_verified(h, partial) is None
    assert store.read(h) == data
