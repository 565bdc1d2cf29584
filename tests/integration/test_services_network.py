"""Three validators, each with its own real store, VDF prover process, producer and attester, linked
by an in-memory gossip (blocks, attestations, VDF proofs): one chain and finality that needs
every validator's vote (PROTOCOL §4). The p2p layer is not the subject here (tests/integration/test_p2p_*)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from chain.block import Block
from chain.header import Attestation
from chain.vdfmsg import VdfProof
from linguachaind.services.interfaces import WallClock
from tests.chainbuilders import dev_genesis
from tests.unit.services_support import ServiceStack, open_stack, run_stack

pytestmark = pytest.mark.integration


class MemGossip:
    """Delivers what one node publishes to every other node's chain or VDF service."""

    def __init__(self) -> None:
        self.stacks: list[ServiceStack] = []

    def link(self, index: int) -> Link:
        return Link(self, index)


class Link:
    def __init__(self, gossip: MemGossip, index: int) -> None:
        self._gossip, self._index = gossip, index

    def _others(self) -> list[ServiceStack]:
        return [s for i, s in enumerate(self._gossip.stacks) if i != self._index]

    async def publish_block(self, block: Block) -> None:
        for s in self._others():
            s.chain.import_block(block)

    async def publish_attestation(self, att: Attestation) -> None:
        for s in self._others():
            s.chain.on_attestation(att)

    async def publish_vdf(self, msg: VdfProof) -> None:
        for s in self._others():
            s.vdf.on_gossip(msg)


async def test_three_validators_agree_and_finalise(tmp_path: Path) -> None:
    genesis, keys = dev_genesis(3)
    clock = WallClock()
    gossip = MemGossip()
    for i in range(3):
        gossip.stacks.append(
            open_stack(tmp_path / f"node{i}", genesis, keys[f"validator{i}"], clock, network=gossip.link(i))
        )
    try:
        async with trio.open_nursery() as nursery:
            for stack in gossip.stacks:
                nursery.start_soon(_run, stack)
            with trio.fail_after(60):
                for stack in gossip.stacks:
                    await stack.chain.wait_final(4)
            nursery.cancel_scope.cancel()
        tips = {s.store.hash_at(4) for s in gossip.stacks}
        assert len(tips) == 1  # one chain up to the final block on every node
        for s in gossip.stacks:
            s.store.verify()
            assert s.chain.statistics().rejected == 0
    finally:
        for s in gossip.stacks:
            s.close()


async def _run(stack: ServiceStack) -> None:
    async with run_stack(stack):
        await trio.sleep_forever()
