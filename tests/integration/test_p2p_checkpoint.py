"""Weak-subjectivity checkpoint fetched from the configured bootstrap peers (p2p.checkpoint, PROTOCOL
§5.3): real `P2PService`s on loopback (status handshake, `GetHeaders` over /sync/1) and the real
syncer held by its gate until the checkpoint is decided.

The peers' `MemoryChain`s report their tip as final. A fresh node asks its two bootstrap peers: when
they agree (one further ahead on the same chain) it gets the block at the lower final height, and
only then does its syncer fetch anything; a peer on another branch at that height, or too few
vouching peers, refuse with the reason; peers that have nothing final yet give no checkpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from chain.codec import encode
from chain.errors import ConfigError
from chain.types import BlockHash
from p2p.checkpoint import CheckpointRefused, TooFewPeers, fetch_checkpoint
from p2p.testing import MemoryChain, NetNode, TestNetwork, make_block, make_chain, open_test_network, wait_for

pytestmark = pytest.mark.integration

COMMON = make_chain(12)


@pytest.fixture
async def net() -> AsyncIterator[TestNetwork]:
    async with open_test_network() as network:
        yield network


def block_hash(raw: bytes) -> BlockHash:
    return MemoryChain._decode(raw).hash


def forked(at: int, n: int) -> list[bytes]:
    """COMMON's blocks below `at`, then a different branch up to height n - 1."""
    out = COMMON[:at]
    prev = block_hash(out[-1])
    for h in range(at, n):
        block = make_block(MemoryChain._decode(COMMON[0]).header.chain_id, h, prev, salt=b"other")
        out.append(encode(block))
        prev = block.hash
    return out


async def peers(net: TestNetwork, *chains: list[bytes]) -> list[NetNode]:
    nodes = [net.add_node(blocks, status_interval_s=1.0) for blocks in chains]
    for node in nodes:
        await net.start(node)
    return nodes


async def fresh(net: TestNetwork, bootstrap: list[NetNode], gate: trio.Event | None = None) -> NetNode:
    node = net.add_node(COMMON[:1], bootstrap=[p.addr for p in bootstrap], status_interval_s=1.0)
    await net.start(node, sync_gate=gate)
    return node


async def ask(node: NetNode, bootstrap: list[str], *, min_peers: int = 2, wait_s: float = 20.0) -> object:
    svc = node.svc
    chain_id = node.params.chain_id
    return await fetch_checkpoint(
        svc.host, chain_id, bootstrap, svc.peers_mgr.finals, min_peers=min_peers, wait_s=wait_s
    )


async def test_agreeing_peers_give_the_block_at_the_lower_final_height_then_sync_starts(
    net: TestNetwork,
) -> None:
    a, b = await peers(net, COMMON[:10], COMMON[:12])  # finals 9 and 11, one chain
    gate = trio.Event()
    me = await fresh(net, [a, b], gate)
    got = await ask(me, [a.addr, b.addr])
    assert got == (9, block_hash(COMMON[9]))
    start = me.svc.syncer.statistics().polls
    await wait_for(lambda: me.svc.syncer.statistics().polls >= start + 2, 30)
    assert me.chain.tip()[0] == 0  # the gate holds the syncer although both peers are ahead
    gate.set()
    me.svc.syncer.poke()
    await wait_for(lambda: me.chain.tip()[0] == 11, 30)


async def test_a_peer_on_another_branch_at_the_checkpoint_height_refuses(net: TestNetwork) -> None:
    a, b = await peers(net, COMMON[:10], forked(6, 12))  # b's block 9 is not a's
    me = await fresh(net, [a, b])
    with pytest.raises(CheckpointRefused, match="disagree on the final block at height 9") as err:
        await ask(me, [a.addr, b.addr])
    assert isinstance(err.value, ConfigError)  # the daemon stops with this one line (exit code 1)
    assert f"{a.svc.peer_id}: {block_hash(COMMON[9]).hex()}" in str(err.value)
    assert f"{b.svc.peer_id}: " in str(err.value)


async def test_too_few_vouching_peers_is_not_yet_a_checkpoint(net: TestNetwork) -> None:
    """A configured peer that is down, or still at the genesis itself, does not vouch: the node
    asks again later (TooFewPeers) instead of syncing without a checkpoint."""
    a, gone = await peers(net, COMMON[:10], COMMON[:10])
    new = net.add_node(COMMON[:1], status_interval_s=1.0)
    await net.start(new, sync_gate=trio.Event())  # stays at the genesis: syncing itself, held
    gone_addr = gone.addr
    await net.stop(gone)
    me = await fresh(net, [a, new])
    with pytest.raises(TooFewPeers, match=r"1 configured peer\(s\) answered"):
        await ask(me, [a.addr, gone_addr], wait_s=3.0)
    with pytest.raises(TooFewPeers, match=r"1 configured peer\(s\) name a final block at height 9"):
        await ask(me, [a.addr, new.addr])  # both answer; `new` has nothing final yet
    assert await ask(me, [a.addr], min_peers=1) == (9, block_hash(COMMON[9]))  # one was asked for


async def test_peers_without_a_final_block_give_no_checkpoint(net: TestNetwork) -> None:
    a, b = await peers(net, COMMON[:1], COMMON[:1])  # a new chain: only the genesis is final
    me = await fresh(net, [a, b])
    assert await ask(me, [a.addr, b.addr]) is None
