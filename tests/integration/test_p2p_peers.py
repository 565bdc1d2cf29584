"""Peer management on loopback: peer exchange, connect/disconnect events, statistics, blob resume
(PROTOCOL §7.1, §7.3)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import trio

from chain.errors import ErrorCode
from p2p.messages import blob as blobmsg
from p2p.peers import PeerEvent
from p2p.testing import TestNetwork, open_test_network, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def net() -> AsyncIterator[TestNetwork]:
    async with open_test_network() as network:
        yield network


async def test_peer_exchange_finds_a_third_node(net: TestNetwork) -> None:
    a, b, c = (net.add_node() for _ in range(3))
    for node in (a, b, c):
        await net.start(node)
    await net.connect(b, c)
    await wait_for(lambda: any(p.height is not None for p in b.svc.peers()), 10)  # b knows c's status
    await net.connect(a, b)  # a hears of c in b's status and dials it (target_peers 8)
    await wait_for(lambda: c.svc.peer_id in {p.peer_id for p in a.svc.peers()}, 15)


async def test_events_and_disconnect(net: TestNetwork) -> None:
    a, b = net.add_node(), net.add_node()
    await net.start(a)
    await net.start(b)
    events = a.svc.open_events()
    await net.connect(a, b)
    with trio.fail_after(10):
        assert await events.receive() == PeerEvent(True, b.svc.peer_id)
    summary = a.svc.peers()[0]
    assert summary.peer_id == b.svc.peer_id
    assert summary.score == 0.0
    assert any(str(addr).startswith("/ip4/127.0.0.1/tcp/") for addr in summary.addrs)
    a.svc.disconnect_peer(b.svc.peer_id)
    with trio.fail_after(10):
        assert await events.receive() == PeerEvent(False, b.svc.peer_id)
    stats = a.svc.statistics()
    assert stats.peer_id == a.svc.peer_id
    assert stats.peers == 0
    assert stats.served["status"] >= 1


async def test_blob_download_resumes(net: TestNetwork) -> None:
    server, fetcher = net.add_node(), net.add_node()
    data = os.urandom(8 * blobmsg.CHUNK_SIZE + 123)
    blob_hash = await server.blobs.put_bytes(data)
    # an earlier attempt left 5 good chunks (and garbage after them) in the partial file
    partial = fetcher.blobs.partial_path(blob_hash)
    partial.write_bytes(data[: 5 * blobmsg.CHUNK_SIZE] + b"\x00" * 1000)
    await net.start(server)
    await net.start(fetcher)
    await net.connect(fetcher, server)
    result = await fetcher.svc.fetch_blob(blob_hash)
    assert result.error is None
    assert result.chunks_resumed == 5
    assert result.chunks_fetched == 4
    assert fetcher.blobs.path(blob_hash).read_bytes() == data


async def test_missing_blob_is_reported_not_stored(net: TestNetwork) -> None:
    server, fetcher = net.add_node(), net.add_node()
    await net.start(server)
    await net.start(fetcher)
    await net.connect(fetcher, server)
    from chain.types import BlobHash

    missing = BlobHash(b"\x42" * 32)
    result = await fetcher.svc.fetch_blob(missing)
    assert result.error is not None
    assert result.error.is_transient
    assert not fetcher.blobs.has(missing)


async def test_a_lying_manifest_never_reaches_the_store(net: TestNetwork) -> None:
    liar, fetcher = net.add_node(), net.add_node()
    real = os.urandom(3 * blobmsg.CHUNK_SIZE)
    from chain.hashing import H
    from chain.types import BlobHash

    blob_hash = BlobHash(H(real))
    # the liar's store holds other bytes under that name (written behind the store's back)
    liar.blobs.path(blob_hash).write_bytes(os.urandom(len(real)))
    await net.start(liar)
    await net.start(fetcher)
    await net.connect(fetcher, liar)
    result = await fetcher.svc.fetch_blob(blob_hash)
    assert result.error is ErrorCode.BLOB_HASH_MISMATCH
    assert not fetcher.blobs.has(blob_hash)
    assert not fetcher.blobs.partial_path(blob_hash).exists()
    assert fetcher.svc.scores.score(liar.svc.peer_id) < 0
