"""Several real `P2PService`s on loopback in one trio run (`TestNetwork`, PROTOCOL §7).

Gossip reach, rejection and banning of invalid senders, sync of a node 500 blocks behind from several
peers, a 20 MB blob with a corrupted chunk, a restarted peer's identity and reconnection, genesis
mismatch.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import AsyncIterator

import pytest
import trio

from chain.codec import encode
from chain.crypto import SecretKey
from chain.params import DEVNET
from chain.tx import Transfer, make_tx
from chain.types import AccountId, Amount, BlobHash
from p2p.messages.gossip import GossipKind
from p2p.testing import NetNode, TestNetwork, make_chain, open_test_network, wait_for

pytestmark = pytest.mark.integration


def tx_bytes(nonce: int, label: str = "alice", *, corrupt: bool = False) -> bytes:
    tx = make_tx(
        SecretKey.from_label(label),
        DEVNET.chain_id,
        nonce,
        1000,
        Transfer(AccountId(b"\x01" * 20), Amount(5)),
    )
    if corrupt:  # a valid encoding with a signature that does not verify
        tx = dataclasses.replace(tx, fee=Amount(tx.fee + 1))
    return encode(tx)


@pytest.fixture
async def net() -> AsyncIterator[TestNetwork]:
    async with open_test_network() as network:
        yield network


# Generous deadlines: 8 hosts, their meshes and 7 hops of validation share a loaded 2-core CI box;
# the test asserts where the tx arrives, not how fast.
REACH_S = 90.0


async def test_tx_reaches_all_8_nodes(net: TestNetwork) -> None:
    nodes = await net.start_all(8, topology="line")
    await wait_for(lambda: all(n.svc.gossip.mesh_size(GossipKind.TX) > 0 for n in nodes), REACH_S)
    raw = tx_bytes(1)
    assert await nodes[0].svc.publish_tx(raw)
    await wait_for(lambda: all(raw in n.validator.accepted["tx"] for n in nodes[1:]), REACH_S)
    # and it comes out of every node's inbound queue exactly once (a drain task moves it there
    # after validation: wait for it instead of expecting it already queued)
    for node in nodes[1:]:
        with trio.fail_after(REACH_S):
            msg = await node.svc.inbound.receive()
        assert (msg.kind, msg.data) == (GossipKind.TX, raw)
        with pytest.raises(trio.WouldBlock):
            node.svc.inbound.receive_nowait()


async def test_invalid_tx_is_not_forwarded_and_its_sender_is_banned(net: TestNetwork) -> None:
    bad, relay, far = await net.start_all(3, topology="line")
    await wait_for(lambda: far.svc.gossip.mesh_size(GossipKind.TX) > 0, 20)
    await wait_for(lambda: bad.svc.gossip.mesh_size(GossipKind.TX) > 0, 20)
    # `bad` skips validation of its own publishes, as every node does: it is the attacker here
    for nonce in range(1, 20):
        if relay.svc.scores.is_banned(bad.svc.peer_id):
            break
        assert await bad.svc.publish_tx(tx_bytes(nonce, corrupt=True))
        await wait_for(functools.partial(_rejected_at_least, relay, nonce), 10)
    assert relay.svc.scores.is_banned(bad.svc.peer_id)
    await wait_for(lambda: all(p.peer_id != bad.svc.peer_id for p in relay.svc.peers()), 10)
    assert far.validator.rejected == 0, "an invalid tx was forwarded"
    assert not far.validator.accepted["tx"]
    assert relay.svc.statistics().offences["invalid"] >= 5
    # a valid tx from the far side still crosses the relay
    raw = tx_bytes(1, "carol")
    assert await far.svc.publish_tx(raw)
    await wait_for(lambda: raw in relay.validator.accepted["tx"], 10)
    # the banned peer cannot simply come back
    await bad.svc.add_peer(relay.addr)
    await wait_for(lambda: all(p.peer_id != bad.svc.peer_id for p in relay.svc.peers()), 10)


async def test_invalid_block_is_not_forwarded(net: TestNetwork) -> None:
    bad, relay, far = await net.start_all(3, topology="line")
    await wait_for(lambda: all(n.svc.gossip.mesh_size(GossipKind.BLOCK) > 0 for n in (bad, far)), 20)
    good = make_chain(2)[1]
    for i in range(10):  # 20 points each; scores recover 0.1/s meanwhile
        if relay.svc.scores.is_banned(bad.svc.peer_id):
            break
        assert await bad.svc.publish_block(good[:-1] + bytes([i]))  # breaks the encoding
        await wait_for(functools.partial(_rejected_at_least, relay, i + 1), 10)
    assert relay.svc.scores.is_banned(bad.svc.peer_id)
    assert far.validator.rejected == 0, "an invalid block was forwarded"
    assert await far.svc.publish_block(good)
    await wait_for(lambda: good in relay.validator.accepted["block"], 10)


async def test_large_block_gossip_is_delivered(net: TestNetwork) -> None:
    """Over 64 KiB and over libp2p's default 1 MiB RPC limit (LIBP2P-NOTES problem 2)."""
    nodes = await net.start_all(3, topology="line")
    await wait_for(lambda: all(n.svc.gossip.mesh_size(GossipKind.BLOCK) > 0 for n in nodes), 20)
    for n in nodes:
        n.validator.block_check = lambda raw: None
    payloads = [os.urandom(size) for size in (70_000, 300_000, 1_500_000)]
    for raw in payloads:
        assert await nodes[1].svc.publish_block(raw)
    await wait_for(
        lambda: all(p in n.validator.accepted["block"] for n in (nodes[0], nodes[2]) for p in payloads), 30
    )
    assert not await nodes[0].svc.publish_block(os.urandom(DEVNET.max_block_bytes + 1))


async def test_node_500_blocks_behind_syncs_from_several_peers(net: TestNetwork) -> None:
    blocks = make_chain(501)
    servers = [net.add_node(blocks) for _ in range(3)]
    fresh = net.add_node(blocks[:1], sync_batch=32)
    fresh.chain.import_delay_s = 0.004  # an import costs something; peers connect during the sync
    for node in (*servers, fresh):
        await net.start(node)
    for server in servers:
        await net.connect(fresh, server)
    await wait_for(lambda: fresh.chain.tip()[0] == 500, 60)
    assert fresh.chain.blocks == blocks
    stats = fresh.svc.sync_status()
    assert stats.blocks_imported == 500
    assert stats.peers >= 2
    served = [s.svc.server.served["sync"] for s in servers]
    assert sum(1 for n in served if n > 0) >= 2, f"sync did not use several peers: {served}"


async def test_genesis_mismatch_disconnects(net: TestNetwork) -> None:
    a = net.add_node(make_chain(3))
    b = net.add_node(make_chain(3, salt=b"other"))
    await net.start(a)
    await net.start(b)
    assert await a.svc.add_peer(b.addr) is None
    await wait_for(lambda: a.svc.peers_mgr.genesis_mismatches + b.svc.peers_mgr.genesis_mismatches > 0, 10)
    await wait_for(lambda: not a.svc.peers() and not b.svc.peers(), 10)
    assert b.chain.tip()[0] == 2
    assert a.chain.tip()[0] == 2


async def test_restarted_peer_keeps_its_id_and_is_reconnected(net: TestNetwork) -> None:
    port = _free_port()
    server = net.add_node(port=port)
    await net.start(server)
    old_id, old_addr = server.svc.peer_id, server.addr
    client = net.add_node(bootstrap=[old_addr], reconnect_max_s=1.0)
    await net.start(client)
    await wait_for(lambda: [p.peer_id for p in client.svc.peers()] == [old_id], 10)
    await net.stop(server)
    await wait_for(lambda: not client.svc.peers(), 10)
    await net.start(server)
    assert server.svc.peer_id == old_id
    with trio.fail_after(10):
        start = trio.current_time()
        await wait_for(lambda: [p.peer_id for p in client.svc.peers()] == [old_id], 10)
        print(f"reconnected {trio.current_time() - start:.2f} s after the restart")


async def test_blob_20mb_with_a_corrupted_chunk(net: TestNetwork) -> None:
    honest1, liar, honest2, fetcher = [net.add_node() for _ in range(4)]
    data = os.urandom(20 * 1024 * 1024)
    for node in (honest1, liar, honest2):
        blob_hash = await node.blobs.put_bytes(data)
    # the liar serves a correct manifest but flips the first byte of every chunk it sends
    liar_path = liar.blobs.path(blob_hash)
    original_get = liar.blobs.get_chunk

    async def corrupt_get(h: BlobHash, index: int, chunk_size: int) -> bytes | None:
        piece = await original_get(h, index, chunk_size)
        return None if piece is None else bytes([piece[0] ^ 0xFF]) + piece[1:]

    await liar.blobs.chunk_hashes(blob_hash, 1024 * 1024)  # cached from the true file
    liar.blobs.get_chunk = corrupt_get  # type: ignore[method-assign,assignment]
    for node in (honest1, liar, honest2, fetcher):
        await net.start(node)
    for node in (honest1, liar, honest2):
        await net.connect(fetcher, node)
    start = trio.current_time()
    result = await fetcher.svc.fetch_blob(blob_hash)
    elapsed = trio.current_time() - start
    assert result.error is None, result
    assert fetcher.blobs.path(blob_hash).read_bytes() == data
    assert liar_path.read_bytes() == data
    assert result.bad_chunks >= 1
    assert result.per_peer.get(liar.svc.peer_id, 0) == 0
    assert fetcher.svc.scores.score(liar.svc.peer_id) < 0
    assert len([p for p, n in result.per_peer.items() if n > 0]) >= 2
    assert not fetcher.blobs.partial_path(blob_hash).exists()
    print(f"20 MiB blob in {elapsed:.2f} s from {result.per_peer}, bad chunks {result.bad_chunks}")


def _rejected_at_least(node: NetNode, n: int) -> bool:
    return node.validator.rejected >= n


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
