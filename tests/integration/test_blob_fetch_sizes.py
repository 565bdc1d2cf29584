"""A blob whose units declare a size is fetched only at that size (issue 15 finding: blobs refused
for a wrong length stayed in the store). Real `P2PService`s on loopback (`p2p.testing.TestNetwork`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from chain.errors import ErrorCode
from chain.types import BlobHash
from p2p.testing import TestNetwork, open_test_network

pytestmark = pytest.mark.integration


@pytest.fixture
async def net() -> AsyncIterator[TestNetwork]:
    async with open_test_network() as network:
        yield network


async def test_a_blob_of_another_size_than_declared_is_not_downloaded(net: TestNetwork) -> None:
    server, fetcher = net.add_node(), net.add_node()
    data = os.urandom(3 * 1024 * 1024 + 5)
    blob_hash = await server.blobs.put_bytes(data)
    for node in (server, fetcher):
        await net.start(node)
    await net.connect(fetcher, server)
    fetcher.blobs.expect_size(blob_hash, len(data) - 1)  # what a lying unit declares
    result = await fetcher.svc.fetch_blob(blob_hash)
    assert result.error is ErrorCode.BLOB_SIZE_MISMATCH
    assert result.chunks_fetched == 0  # refused on the manifest, before a byte of the blob
    assert not fetcher.blobs.has(blob_hash)
    assert not fetcher.blobs.partial_path(blob_hash).exists()
    assert fetcher.svc.scores.score(server.svc.peer_id) == 0  # the server told the truth
    fetcher.blobs.expect_size(blob_hash, len(data))  # an honest unit names the same blob
    result = await fetcher.svc.fetch_blob(blob_hash)
    assert result.error is None, result
    assert fetcher.blobs.read(blob_hash) == data


async def test_a_failed_fetch_that_verified_nothing_leaves_no_partial_file(net: TestNetwork) -> None:
    """Only a liar serves the blob: its manifest is right, every chunk it sends is corrupt. The
    fetch fails, and no partial file (sized by the manifest) is left behind."""
    liar, fetcher = net.add_node(), net.add_node()
    data = os.urandom(2 * 1024 * 1024)
    blob_hash = await liar.blobs.put_bytes(data)
    await liar.blobs.chunk_hashes(blob_hash, 1024 * 1024)  # the manifest, cached from the true file
    original_get = liar.blobs.get_chunk

    async def corrupt_get(h: BlobHash, index: int, chunk_size: int) -> bytes | None:
        piece = await original_get(h, index, chunk_size)
        return None if piece is None else bytes([piece[0] ^ 0xFF]) + piece[1:]

    liar.blobs.get_chunk = corrupt_get  # type: ignore[method-assign,assignment]
    for node in (liar, fetcher):
        await net.start(node)
    await net.connect(fetcher, liar)
    result = await fetcher.svc.fetch_blob(blob_hash)
    assert result.error is ErrorCode.BLOB_MISSING
    assert result.bad_chunks >= 1
    assert not fetcher.blobs.has(blob_hash)
    assert not fetcher.blobs.partial_path(blob_hash).exists()
