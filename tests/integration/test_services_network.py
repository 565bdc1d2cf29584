"""Three validators, each with its own real store, VDF prover process, producer and attester, linked
by an in-memory gossip (blocks, attestations, VDF proofs, txs): one chain and finality that needs
every validator's vote (PROTOCOL §4); an equivocating validator is reported by every node and slashed
on every node (§5.3). The p2p layer is not the subject here (tests/integration/test_p2p_*)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

from chain.block import Block
from chain.crypto import account_id
from chain.header import Attestation
from chain.state.model import RewardReason
from chain.types import ZERO_SIGNATURE, PubKey, TimestampMs
from chain.vdfmsg import VdfProof
from linguachaind.services.interfaces import WallClock
from tests.support.chainbuilders import dev_genesis
from tests.support.services_support import ServiceStack, open_stack, run_stack

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

    async def publish_tx(self, raw: bytes) -> None:
        for s in self._others():
            if s.mempool is not None:
                s.mempool.add_raw(raw, s.chain.clock.now_ms())


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


async def test_an_equivocating_validator_is_reported_and_slashed_on_every_node(tmp_path: Path) -> None:
    names = [f"validator{i}" for i in range(3)]
    genesis, keys = dev_genesis(3, funded=("alice", *names))  # reporters pay the evidence fee
    clock = WallClock()
    gossip = MemGossip()
    for i, name in enumerate(names):
        link = gossip.link(i)
        stack = open_stack(
            tmp_path / name, genesis, keys[name], clock, with_mempool=True, network=link, tx_network=link
        )
        gossip.stacks.append(stack)
    try:
        async with trio.open_nursery() as nursery:
            for stack in gossip.stacks:
                nursery.start_soon(_run, stack)
            with trio.fail_after(60):
                await gossip.stacks[0].chain.wait_height(1)
                first = gossip.stacks[0].store.get_block_at(1)
                assert first is not None
                cheat = next(keys[n] for n in names if keys[n].pubkey == first.header.proposer)
                twin = dataclasses.replace(
                    first.header,
                    timestamp_ms=TimestampMs(first.header.timestamp_ms + 1),
                    signature=ZERO_SIGNATURE,
                )
                twin = twin.mined(genesis.params.pow_bits_header).signed(cheat)
                for stack in gossip.stacks:  # the cheat's second block at height 1 reaches everyone
                    stack.chain.import_block(Block(twin, first.body))
                for stack in gossip.stacks:
                    while not _jailed(stack, cheat.pubkey):
                        await stack.chain.wait_change(stack.chain.version)
            nursery.cancel_scope.cancel()
        reports = [s.reporter.submitted for s in gossip.stacks if s.reporter is not None]
        assert [len(r) for r in reports] == [1, 1, 1]  # every node reported the fault once
        paid = []
        store = gossip.stacks[0].store
        for name in names:
            records = store.rewards_for(account_id(keys[name].pubkey))
            paid += [r for r in records if r.reason is RewardReason.SLASH_REPORTER]
        assert len(paid) == 1  # the first report included won the share; the others could not apply
        assert len({s.store.hash_at(paid[0].height) for s in gossip.stacks}) == 1  # the same block
        for s in gossip.stacks:
            s.store.verify()
    finally:
        for s in gossip.stacks:
            s.close()


def _jailed(stack: ServiceStack, validator: PubKey) -> bool:
    record = stack.chain.reader().validator(validator)
    return record is not None and record.jailed_until > 0
