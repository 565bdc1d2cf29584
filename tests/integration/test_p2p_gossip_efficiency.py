"""What keeps large gossip cheap (docs/networking.md, p2p/compat.py fixes 6-8, early IDONTWANT).

Real services on loopback: a large message is announced with an early IDONTWANT to the mesh, a small
one is not; a peer that announced a message is not sent it; a peer's signed record is verified once,
not per RPC, while a changed or forged record is still checked; yamux streams grant a large window
and credit it in half-window steps.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from libp2p.pubsub import pubsub as pubsub_mod
from libp2p.pubsub import utils as pubsub_utils
from libp2p.pubsub.pb import rpc_pb2

from chain.codec import encode
from chain.crypto import SecretKey
from chain.header import Attestation
from chain.params import DEVNET
from chain.types import BlockHash, Height
from p2p import compat
from p2p.gossip import IDONTWANT_MIN_BYTES, message_id
from p2p.messages.gossip import GossipKind
from p2p.testing import NetNode, TestNetwork, open_test_network, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def net() -> AsyncIterator[TestNetwork]:
    async with open_test_network() as network:
        yield network


async def full_mesh(net: TestNetwork, n: int) -> list[NetNode]:
    nodes = await net.start_all(n, topology="full")
    for node in nodes:
        node.validator.keep_accepted = False
        node.validator.block_check = lambda raw: None
    await wait_for(lambda: all(x.svc.gossip.mesh_size(GossipKind.BLOCK) == n - 1 for x in nodes), 20)
    return nodes


def payload(seq: int, size: int) -> bytes:
    return seq.to_bytes(8, "big") + os.urandom(size - 8)


async def received(node: NetNode, count: int) -> list[bytes]:
    out: list[bytes] = []
    while len(out) < count:
        out.append((await node.svc.inbound.receive()).data)
    return out


async def test_large_messages_are_announced_early_small_ones_are_not(net: TestNetwork) -> None:
    a, b, c = await full_mesh(net, 3)
    small = payload(1, 1024)
    assert await a.svc.publish_block(small)
    assert await received(b, 1) == [small]
    assert await received(c, 1) == [small]
    assert b.svc.statistics().gossip.idontwant_sent == 0
    assert c.svc.statistics().gossip.idontwant_sent == 0

    large = payload(2, IDONTWANT_MIN_BYTES * 4)
    assert await a.svc.publish_block(large)
    assert await received(b, 1) == [large]
    assert await received(c, 1) == [large]
    # a receiver tells the mesh peers that may still send it a copy: not the origin, and not a
    # peer whose copy it already has (so b tells c, or c tells b, or both)
    mid = message_id(rpc_pb2.Message(data=large))

    def told(x: NetNode, by: NetNode) -> bool:
        return mid in x.svc.gossip._dont.get(by.svc.host.get_id(), {})

    await wait_for(lambda: told(c, b) or told(b, c), 10)
    sent = b.svc.statistics().gossip.idontwant_sent + c.svc.statistics().gossip.idontwant_sent
    assert 1 <= sent <= 2
    assert not told(a, b)
    assert not told(a, c)


async def test_a_peer_that_announced_a_message_is_not_sent_it(net: TestNetwork) -> None:
    a, b = await full_mesh(net, 2)
    gossip = a.svc.gossip
    peer = b.svc.host.get_id()
    data = payload(3, 100 * 1024)
    msg = rpc_pb2.Message(data=data, topicIDs=[gossip.topics[GossipKind.BLOCK]], from_id=b"x", seqno=b"1")
    rpc = rpc_pb2.RPC(publish=[msg])
    assert gossip._trim_outbound(peer, rpc) is rpc  # nothing known yet: sent as is
    await gossip.router.handle_idontwant(rpc_pb2.ControlIDontWant(messageIDs=[message_id(msg)]), peer)
    skipped = gossip.statistics().duplicates_skipped
    assert gossip._trim_outbound(peer, rpc) is None
    assert gossip.statistics().duplicates_skipped == skipped + 1
    # another message in the same RPC still goes
    other = rpc_pb2.Message(data=payload(4, 1024), topicIDs=msg.topicIDs, from_id=b"x", seqno=b"2")
    trimmed = gossip._trim_outbound(peer, rpc_pb2.RPC(publish=[msg, other]))
    assert trimmed is not None
    assert [m.data for m in trimmed.publish] == [other.data]
    # asking for it with IWANT (after its validation failed, say) overrides the IDONTWANT
    await gossip.router.handle_iwant(rpc_pb2.ControlIWant(messageIDs=[message_id(msg)]), peer)
    assert gossip._trim_outbound(peer, rpc) is rpc


async def test_signed_records_are_verified_once_per_peer_and_record(
    net: TestNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await full_mesh(net, 2)
    calls: list[bytes] = []
    original = pubsub_utils.consume_envelope  # type: ignore[attr-defined]

    def counting(data: bytes, domain: str) -> Any:
        calls.append(bytes(data))
        return original(data, domain)

    monkeypatch.setattr(pubsub_utils, "consume_envelope", counting)
    record, _ = pubsub_mod.env_to_send_in_RPC(b.svc.host)  # type: ignore[attr-defined]
    rpc = rpc_pb2.RPC(senderRecord=record)
    check = pubsub_mod.maybe_consume_signed_record  # type: ignore[attr-defined]
    host, sender = a.svc.host, b.svc.host.get_id()
    calls.clear()  # gossip between a and b may have verified records meanwhile
    assert check(rpc, host, sender)
    first = len(calls)
    for _ in range(3):
        assert check(rpc, host, sender)
    assert len(calls) == first  # the same bytes from the same peer: not verified again
    # the same record claimed by another peer is checked, and refused
    assert not check(rpc, host, a.svc.host.get_id())
    # a forged record (one byte flipped in the signature) is checked, and refused every time
    forged = bytearray(record)
    forged[-1] ^= 1
    bad = rpc_pb2.RPC(senderRecord=bytes(forged))
    before = len(calls)
    for _ in range(2):
        assert not check(bad, host, sender)
    assert len(calls) == before + 2


async def test_yamux_streams_grant_a_large_window_credited_at_half(net: TestNetwork) -> None:
    from libp2p.stream_muxer.yamux import yamux

    a, b = await full_mesh(net, 2)
    assert yamux._yamux_release_on_read() is False
    stream: Any = a.svc.gossip.pubsub.peers[b.svc.host.get_id()]
    # 4 MiB from the start (the library's auto-tuning may double it up to its 16 MiB cap)
    assert stream.muxed_stream.target_recv_window >= compat.YAMUX_RECV_WINDOW
    # and it still moves a message larger than the library's 256 KiB default window
    big = payload(5, 900 * 1024)
    assert await b.svc.publish_block(big)
    assert await received(a, 1) == [big]


def vote(height: int, label: str = "val0") -> bytes:
    key = SecretKey.from_label(label)
    return encode(
        Attestation(
            DEVNET.chain_id,
            Height(height),
            BlockHash(bytes([height]) * 32),
            Height(0),
            BlockHash(bytes(32)),
            key.pubkey,
        ).signed(key)
    )


async def test_reannounce_reaches_a_new_peer_where_publish_cannot(net: TestNetwork) -> None:
    """Votes gossiped while two nodes were apart: re-publishing them is silently dropped by libp2p's
    seen cache; `reannounce` sends them to the new peer, which takes and forwards the new ones."""
    a, b, c = [net.add_node() for _ in range(3)]
    for node in (a, b, c):
        await net.start(node)
    await net.connect(b, c)
    old = vote(7)
    assert await a.svc.publish_attestation(old)  # a is alone: nobody gets it
    # apart for longer than the message cache's window (a joining peer is sent what is still in it)
    topic = a.svc.gossip.topics[GossipKind.ATTESTATION]
    await wait_for(lambda: not a.svc.gossip.router.mcache.window(topic), 20)
    await net.connect(a, b)
    await wait_for(lambda: a.svc.gossip.mesh_size(GossipKind.ATTESTATION) > 0, 20)
    assert await a.svc.publish_attestation(old)  # "published", but dropped as seen
    marker = vote(8)
    assert await a.svc.publish_attestation(marker)  # same stream: arrives after `old` would have
    await wait_for(lambda: marker in b.validator.accepted["attest"], 10)
    assert old not in b.validator.accepted["attest"]

    sent = await a.svc.reannounce(b.svc.peer_id, GossipKind.ATTESTATION, [old, marker])
    assert sent == 2
    await wait_for(lambda: old in b.validator.accepted["attest"], 10)
    await wait_for(lambda: old in c.validator.accepted["attest"], 10)  # b forwarded it
    assert b.validator.accepted["attest"].count(marker) == 1  # the one it had is dropped as seen
    assert a.svc.statistics().gossip.sent_direct == 2


async def test_a_large_reannounce_is_paced_within_the_peers_limits(net: TestNetwork) -> None:
    """Hundreds of votes re-sent at once must not look like a flood to the receiver (its per-peer
    limit of messages in validation, its rate limit): all arrive, nothing is dropped or penalised."""
    a, b = [net.add_node() for _ in range(2)]
    for node in (a, b):
        node.validator.keep_accepted = False
        await net.start(node)
    await net.connect(a, b)
    votes = [vote(h, f"val{v}") for h in range(1, 31) for v in range(10)]  # 300 distinct votes
    assert await a.svc.reannounce(b.svc.peer_id, GossipKind.ATTESTATION, votes) == len(votes)
    await wait_for(lambda: b.validator.n_accepted == len(votes), 30)
    stats = b.svc.statistics()
    assert stats.gossip.rate_limited == 0
    assert b.svc.scores.score(a.svc.peer_id) >= 0
