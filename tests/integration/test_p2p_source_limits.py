"""Issue 12 findings 6-8 on loopback: limits per source address, every ban path disconnects, a ban
stops our own dials, peer exchange from a public peer never makes us dial private addresses, an
oversized gossip frame costs its sender, and a stalled one is reset.

Real `P2PService`s and `FakePeer`s (bare libp2p hosts with fresh keys: the attacker who makes new
peer ids at will) on 127.0.0.1; the per-source cap is switched on for loopback in these tests only.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from p2p import peers as peers_mod
from p2p.gossip import GossipConfig
from p2p.messages.status import Status
from p2p.protocols import status_protocol
from p2p.scoring import Offence
from p2p.testing import FakePeer, NetNode, TestNetwork, open_test_network, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def net() -> AsyncIterator[TestNetwork]:
    async with open_test_network() as network:
        yield network


def _with_host(node: NetNode, **host: Any) -> None:
    node.config = dataclasses.replace(node.config, host=dataclasses.replace(node.config.host, **host))


async def _fake(nursery: trio.Nursery, root: Path, name: str) -> FakePeer:
    fake = FakePeer(root / name)
    await nursery.start(fake.run)
    return fake


def _connected(node: NetNode, peer_id: Any) -> bool:
    return bool(node.svc.host.get_network().get_connections(peer_id))


async def test_one_source_cannot_fill_the_connection_slots(
    net: TestNetwork, nursery: trio.Nursery, tmp_path: Path
) -> None:
    node = net.add_node()
    _with_host(node, limit_loopback=True, max_connections_per_ip=2)
    await net.start(node)
    fakes = [await _fake(nursery, tmp_path, f"f{i}") for i in range(4)]
    for fake in fakes:  # four fresh peer ids from one address
        try:
            with trio.fail_after(10):
                await fake.connect(node.addr)
        except Exception:  # refused: the dial fails (or succeeds and is closed at once)
            continue
    network = node.svc.host.get_network()

    def total() -> int:
        return sum(len(c) for c in network.get_connections_map().values())

    await wait_for(lambda: total() == 2, 10)
    assert sum(_connected(node, f.peer_id) for f in fakes) == 2


async def test_a_ban_stops_our_own_dials(net: TestNetwork) -> None:
    a, b = await net.start_all(2)
    b_id = b.svc.host.get_id()
    a.svc.scores.ban(str(b_id))
    a.svc.disconnect_peer(str(b_id))
    await wait_for(lambda: not _connected(a, b_id), 10)
    network = a.svc.host.get_network()
    with pytest.raises(Exception, match="banned"):
        await network.dial_peer(b_id)  # what pubsub's stream retry and new_stream call
    with pytest.raises(Exception, match="banned"):
        await a.svc.host.new_stream(b_id, [status_protocol(a.params.chain_id)])
    assert await network.dial_peer_replacement(b_id) is None  # the health monitor's redial
    assert not _connected(a, b_id)


async def test_a_ban_from_the_status_exchange_disconnects(
    net: TestNetwork, nursery: trio.Nursery, tmp_path: Path
) -> None:
    node = net.add_node(status_interval_s=0.2)
    await net.start(node)
    fake = await _fake(nursery, tmp_path, "liar")

    async def garbage_status(stream: Any) -> None:  # a well-framed status reply that does not decode
        await stream.write(b"\x00\x00\x00\x04\xc1\xc1\xc1\xc1")
        await stream.close()

    fake.host.set_stream_handler(status_protocol(node.params.chain_id), garbage_status)
    await fake.connect(node.addr)
    await wait_for(lambda: node.svc.scores.is_banned(str(fake.peer_id)), 20)
    await wait_for(lambda: not _connected(node, fake.peer_id), 10)


async def test_peer_exchange_from_a_public_peer_drops_private_addresses(
    net: TestNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await net.start_all(2)
    mgr = a.svc.peers_mgr
    b_id = b.svc.host.get_id()
    status = b.svc.peers_mgr.make_status()
    other = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
    offered = (
        f"/ip4/127.0.0.1/tcp/1/p2p/{other}",
        f"/ip4/10.1.2.3/tcp/1/p2p/{other}",
        f"/ip4/192.168.0.9/tcp/1/p2p/{other}",
        f"/ip4/8.8.4.4/tcp/1/p2p/{other}",
    )
    lying = dataclasses.replace(status, listen_addrs=offered[:2], known_peers=offered[2:])
    assert isinstance(lying, Status)
    mgr.candidates.clear()
    monkeypatch.setattr(peers_mod, "peer_ips", lambda host, pid: [ipaddress.ip_address("1.1.1.1")])
    await mgr.on_status(b_id, lying)
    assert list(mgr.candidates) == [offered[3]]  # only the public address is dialable
    mgr.candidates.clear()
    monkeypatch.undo()  # b really is on loopback: a devnet peer's local addresses are fine
    await mgr.on_status(b_id, lying)
    assert set(mgr.candidates) == set(offered)


# -- finding 6: gossip frames ---------------------------------------------------------------------

MESHSUB = "/meshsub/1.1.0"


async def _victim_and_fake(
    net: TestNetwork, nursery: trio.Nursery, tmp_path: Path, **gossip: Any
) -> tuple[NetNode, FakePeer]:
    victim = net.add_node(gossip=GossipConfig(**gossip))
    await net.start(victim)
    fake = await _fake(nursery, tmp_path, "framer")
    await fake.connect(victim.addr)
    return victim, fake


async def test_an_oversized_gossip_frame_costs_the_sender(
    net: TestNetwork, nursery: trio.Nursery, tmp_path: Path
) -> None:
    victim, fake = await _victim_and_fake(net, nursery, tmp_path)
    stream = await fake.open_stream(victim.svc.host.get_id(), MESHSUB)
    await stream.write(b"\xff\xff\xff\xff\x0f" + b"\x00" * 64)  # declares ~4 GiB
    await wait_for(lambda: victim.svc.scores.offences[Offence.OVERSIZED] == 1, 10)
    assert victim.svc.scores.score(str(fake.peer_id)) < 0


async def test_a_stalled_gossip_frame_is_reset_and_costs_the_sender(
    net: TestNetwork, nursery: trio.Nursery, tmp_path: Path
) -> None:
    victim, fake = await _victim_and_fake(net, nursery, tmp_path, frame_timeout_s=1.0)
    stream = await fake.open_stream(victim.svc.host.get_id(), MESHSUB)
    await stream.write(b"\x64" + b"\x0a" * 10)  # declares 100 bytes, sends 10, then nothing
    await wait_for(lambda: victim.svc.scores.offences[Offence.MALFORMED] == 1, 10)
    with trio.fail_after(10):
        assert await _closed_by_peer(stream)  # the victim reset the stream


async def _closed_by_peer(stream: Any) -> bool:
    while True:
        try:
            if not await stream.read(1024):
                return True
        except Exception:  # reset: the muxer raises instead of returning EOF
            return True
