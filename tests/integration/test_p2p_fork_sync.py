"""Sync across forks: real `P2PService`s on loopback whose chains branched (PROTOCOL §4.5, §7.3).

Two nodes share a prefix, build different branches, then connect. The node whose branch loses (or
whose peer's tip is simply unknown to it, whatever the heights) must find the common ancestor and
fetch the peer's branch from the fork point; the sink's fork choice decides. `ForkChain` is a sink
that keeps side blocks and picks the heaviest chain (a stand-in for the chain service's fork choice,
which is not the subject here). Also: a peer serving undecodable blocks is scored down and not asked
again for the same tip; a branch conflicting with our final block is not fetched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
import trio

from chain.block import Block
from chain.codec import decode, encode
from chain.errors import ErrorCode
from chain.types import BlockHash
from p2p.testing import MemoryChain, NetNode, TestNetwork, make_block, make_chain, open_test_network, wait_for

pytestmark = pytest.mark.integration

HEAVY = b"heavy"  # blocks with this salt weigh 10, others 1


class ForkChain(MemoryChain):
    """ChainSource + BlockSink keeping every block it accepted; the main chain is the heaviest one
    (then the longer, then the lower tip hash). Records every block handed to `import_block`."""

    def __init__(self, blocks: Sequence[bytes], final_height: int = 0) -> None:
        super().__init__(blocks)
        self.raw: dict[bytes, bytes] = dict(zip(self.hashes, self.blocks, strict=True))
        self.parsed: dict[bytes, Block] = {h: self._decode(r) for h, r in self.raw.items()}
        self.final_height = final_height
        self.received: list[tuple[int, bytes]] = []
        self.garbage_above: int | None = None  # serve undecodable blocks above this height

    def final(self) -> tuple[int, BlockHash]:
        return self.final_height, self.hashes[self.final_height]

    def block_at(self, height: int) -> bytes | None:
        if self.garbage_above is not None and height > self.garbage_above:
            return b"\xc1garbage" if height < len(self.blocks) else None
        return super().block_at(height)

    def _weight(self, tip: bytes) -> int:
        total, cur = 0, self.parsed.get(tip)
        while cur is not None:
            total += 10 if cur.header.vdf_output == HEAVY else 1
            cur = self.parsed.get(cur.header.prev_hash)
        return total

    async def import_block(self, raw: bytes) -> ErrorCode | None:
        await trio.lowlevel.checkpoint()
        block = decode(Block, raw)
        if isinstance(block, ErrorCode):
            return block
        self.received.append((block.height, block.hash))
        if block.hash in self.parsed:
            return ErrorCode.ALREADY_KNOWN
        parent = self.parsed.get(block.header.prev_hash)
        if parent is None:
            return ErrorCode.ORPHAN
        if block.height != parent.height + 1:
            return ErrorCode.BAD_PARENT
        if block.height <= self.final_height and block.hash != self.hashes[block.height]:
            return ErrorCode.CONFLICTS_WITH_FINAL
        self.parsed[block.hash], self.raw[block.hash] = block, raw
        children = {b.header.prev_hash for b in self.parsed.values()}
        leaves = [h for h in self.parsed if h not in children]
        head = min(leaves, key=lambda h: (-self._weight(h), -self.parsed[h].height, h))
        chain: list[bytes] = []
        cur: bytes | None = head
        while cur in self.parsed:
            chain.append(cur)
            cur = self.parsed[cur].header.prev_hash
        chain.reverse()
        self.hashes = [BlockHash(h) for h in chain]
        self.blocks = [self.raw[h] for h in chain]
        return None


def extend(blocks: list[bytes], n: int, salt: bytes) -> list[bytes]:
    out = list(blocks)
    for _ in range(n):
        parent = decode(Block, out[-1])
        assert not isinstance(parent, ErrorCode)
        out.append(encode(make_block(parent.header.chain_id, parent.height + 1, parent.hash, salt)))
    return out


def hashes(blocks: Sequence[bytes], start: int) -> list[tuple[int, bytes]]:
    out = []
    for raw in blocks[start:]:
        block = decode(Block, raw)
        assert not isinstance(block, ErrorCode)
        out.append((block.height, bytes(block.hash)))
    return out


@pytest.fixture
async def net() -> AsyncIterator[TestNetwork]:
    async with open_test_network() as network:
        yield network


async def start_pair(
    net: TestNetwork, a_blocks: list[bytes], b_blocks: list[bytes]
) -> tuple[NetNode, NetNode]:
    nodes = []
    for blocks in (a_blocks, b_blocks):
        node = net.add_node(blocks, status_interval_s=1.0)
        node.chain = ForkChain(blocks)
        nodes.append(node)
    a, b = nodes
    return a, b


async def wait_polls(*nodes: NetNode, n: int) -> None:
    """Wait until each node's syncer has looked at its peers `n` more times: absence of fetching is
    observed over syncer rounds, not over wall-clock time."""
    start = [node.svc.syncer.statistics().polls for node in nodes]
    await wait_for(
        lambda: all(
            node.svc.syncer.statistics().polls >= s0 + n for node, s0 in zip(nodes, start, strict=True)
        ),
        30,
    )


def fork(node: NetNode) -> ForkChain:
    assert isinstance(node.chain, ForkChain)
    return node.chain


async def test_node_behind_on_another_branch_fetches_it_from_the_fork_point(net: TestNetwork) -> None:
    common = make_chain(10)
    a_blocks, b_blocks = extend(common, 5, b"a"), extend(common, 8, b"b")  # heights 14 and 17
    a, b = await start_pair(net, a_blocks, b_blocks)
    for node in (a, b):
        await net.start(node)
    await net.connect(a, b)
    await wait_for(lambda: a.chain.tip() == b.chain.tip(), 30)
    assert a.chain.blocks == b_blocks
    got = [r for r in fork(a).received if r in hashes(b_blocks, 10)]
    assert got[: len(b_blocks) - 10] == hashes(b_blocks, 10)  # from the fork point, in order
    assert b.chain.blocks == b_blocks  # b fetched a's lighter branch (or not) and kept its own head
    stats = a.svc.sync_status()
    assert stats.blocks_imported >= 8
    assert stats.fork_rounds >= 1


async def test_heavier_shorter_branch_is_fetched_and_nothing_is_fetched_twice(net: TestNetwork) -> None:
    common = make_chain(10)
    light, heavy = extend(common, 8, b"light"), extend(common, 3, HEAVY)  # heights 17 and 12
    a, b = await start_pair(net, light, heavy)
    for node in (a, b):
        await net.start(node)
    await net.connect(a, b)
    # a is higher than b, yet b's tip is unknown to a: a walks back to height 9 and fetches 10..12
    await wait_for(lambda: a.chain.tip() == b.chain.tip(), 30)
    assert a.chain.blocks == heavy
    assert [r for r in fork(a).received if r in hashes(heavy, 10)] == hashes(heavy, 10)
    # b may have fetched a's lighter branch as side blocks before a switched; it kept its head
    assert b.chain.blocks == heavy
    # converged: several status polls later nobody fetched anything again. A sync round b started
    # against a's old light tip may still be in flight (under load a switches branches mid-round and
    # answers b's by-height requests with heavy blocks b already holds): let each syncer finish one
    # more poll before counting, so only fetches started after convergence are measured.
    await wait_polls(a, b, n=1)
    seen = (len(fork(a).received), len(fork(b).received))
    await wait_polls(a, b, n=3)  # three more looks at the peers by each syncer
    assert (len(fork(a).received), len(fork(b).received)) == seen


async def test_peer_serving_garbage_blocks_is_scored_down_and_not_retried(net: TestNetwork) -> None:
    common = make_chain(10)
    a_blocks, b_blocks = extend(common, 2, b"a"), extend(common, 4, b"b")
    a, b = await start_pair(net, a_blocks, b_blocks)
    fork(b).garbage_above = 9  # headers are right, the blocks of the fork are not
    for node in (a, b):
        await net.start(node)
    await net.connect(a, b)
    await wait_for(lambda: a.svc.scores.score(b.svc.peer_id) < -10, 30)
    assert a.chain.blocks == a_blocks
    served = b.svc.server.served["sync"]
    await wait_polls(a, n=3)  # a looked at b's (unchanged) tip three more times
    assert b.svc.server.served["sync"] - served <= 1  # a's fast-path probe at most, no refetch


async def test_branch_conflicting_with_our_final_block_is_not_fetched(net: TestNetwork) -> None:
    common = make_chain(10)
    a_blocks, b_blocks = extend(common, 4, b"a"), extend(common, 8, b"b")
    a, b = await start_pair(net, a_blocks, b_blocks)
    a.chain = ForkChain(a_blocks, final_height=12)  # b's branch forks at 10, below a's final block
    for node in (a, b):
        await net.start(node)
    await net.connect(a, b)
    # b (final 0) fetches a's branch as side blocks; a never imports b's blocks
    await wait_for(lambda: set(hashes(a_blocks, 10)) <= set(fork(b).received), 30)
    await wait_for(lambda: a.svc.server.served["sync"] > 0 and b.svc.server.served["sync"] > 0, 30)
    assert not set(hashes(b_blocks, 10)) & set(fork(a).received)
    assert a.chain.blocks == a_blocks
    assert a.svc.scores.score(b.svc.peer_id) >= -1  # an honest peer on another final branch: no penalty


async def test_deep_common_prefix_is_binary_searched_and_only_the_fork_is_fetched(net: TestNetwork) -> None:
    common = make_chain(700)  # the fork point is further than one GetHeaders (512) from our final 0
    a_blocks, b_blocks = extend(common, 3, b"a"), extend(common, 5, b"b")
    a, b = await start_pair(net, a_blocks, b_blocks)
    for node in (a, b):
        await net.start(node)
    await net.connect(a, b)
    await wait_for(lambda: a.chain.tip() == b.chain.tip(), 30)
    assert fork(a).received == hashes(b_blocks, 700)  # exactly the fork, nothing of the shared prefix
