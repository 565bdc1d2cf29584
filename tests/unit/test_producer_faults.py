"""The producer after the faults of issue 15's runs: a block that was signed but never stored (a full
disk) does not block its height, a published one does forever; a node whose chain does not hold the
final block its peers agree on (catching up after a partition) proposes nothing until it does.

Real chain store, slashing-protection LevelDB and VDF service; a fake clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from chain.block import Block
from chain.genesis import Genesis
from chain.hashing import H
from linguachaind.services.chain_service import AddBlockResult, ChainService
from linguachaind.services.producer import Producer, agreed_final
from linguachaind.services.vdf_service import VdfService
from linguachaind.slashing_protection import SlashingProtection
from tests.support.chainbuilders import GENESIS_TIME_MS, dev_genesis
from tests.support.doubles import FakeClock, NullNetwork
from tests.support.services_support import Validator, open_stack, run_stack, two_validators, vdf_for
from tests.support.waiting import wait_until

KEY = dev_genesis(1)[1]["validator0"].pubkey
A, B = H(b"block a"), H(b"block b")


# -- slashing protection: recorded with the block, released only if never stored ----------------


def test_an_unpublished_proposal_can_be_released_a_published_one_never(tmp_path: Path) -> None:
    path = tmp_path / "sp"
    with SlashingProtection.open(path, KEY) as sp:
        assert sp.record_signed_proposal(5, A, b"block-a")
        assert sp.unpublished(5)
        assert sp.signed_block(5) == b"block-a"
        assert sp.record_signed_proposal(5, A, b"block-a")  # the same header again
        assert not sp.record_signed_proposal(5, B, b"block-b")  # another one: refused
        assert sp.record_signed_proposal(6, B, b"block-b")
        sp.mark_published(6)
    with SlashingProtection.open(path, KEY) as sp:  # both marks survive a restart
        assert sp.unpublished(5)
        assert not sp.unpublished(6)
        assert not sp.release(6)  # published: its height stays taken
        assert not sp.record_signed_proposal(6, A, b"block-a")
        assert sp.release(5)  # never stored: the height opens again
        assert sp.proposed(5) is None
        assert sp.signed_block(5) is None
        assert sp.record_signed_proposal(5, B, b"block-b")


def test_a_proposal_recorded_without_the_mark_is_never_released(tmp_path: Path) -> None:
    """Records written before the mark existed (or by `record_proposal`) count as published."""
    with SlashingProtection.open(tmp_path / "sp", KEY) as sp:
        assert sp.record_proposal(7, A)
        assert not sp.unpublished(7)
        assert not sp.release(7)
        assert not sp.record_signed_proposal(7, B, b"block-b")


# -- the producer: a block lost before the store does not halt the validator ---------------------


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Genesis, ChainService, FakeClock, list[Validator]]]:
    with two_validators(tmp_path) as world:
        yield world


def fork_at_one(chain: ChainService, leader: Validator, backup: Validator) -> tuple[Block, Block]:
    """Both validators' blocks at height 1 imported: the leader's is the tip, the backup's a side block."""
    g = chain.tip_header()
    by_backup, by_leader = backup.propose(chain, g), leader.propose(chain, g)
    assert chain.import_block(by_backup) is AddBlockResult.NEW_TIP
    assert chain.import_block(by_leader) is AddBlockResult.NEW_TIP
    return by_leader, by_backup


def test_a_block_never_stored_does_not_block_its_height(
    two: tuple[Genesis, ChainService, FakeClock, list[Validator]],
) -> None:
    _, chain, _, (leader, backup) = two
    by_leader, by_backup = fork_at_one(chain, leader, backup)
    side, tip = chain.header(by_backup.hash), chain.header(by_leader.hash)
    assert side is not None
    assert tip is not None
    lost = leader.propose(chain, side)  # signed at height 2, then the store write failed (disk full)
    assert chain.header(lost.hash) is None
    assert leader.protection.unpublished(2)
    # the old rule refused every other block at height 2 forever: a lone validator halted there
    again = leader.producer.assemble(tip, leader.duty(chain, tip), *vdf_for(tip))
    assert again is not None
    assert again.hash != lost.hash
    assert again.header.prev_hash == tip.hash
    assert chain.import_block(again) is AddBlockResult.NEW_TIP


def test_a_stored_block_keeps_its_height(
    two: tuple[Genesis, ChainService, FakeClock, list[Validator]],
) -> None:
    """Once the block store holds the signed block (peers may have fetched it), no other block is
    ever signed at its height, published mark or not."""
    _, chain, _, (leader, backup) = two
    by_leader, by_backup = fork_at_one(chain, leader, backup)
    side, tip = chain.header(by_backup.hash), chain.header(by_leader.hash)
    assert side is not None
    assert tip is not None
    stored = leader.propose(chain, side)
    assert chain.import_block(stored) in (AddBlockResult.NEW_TIP, AddBlockResult.SIDE_BLOCK)
    assert leader.producer.assemble(tip, leader.duty(chain, tip), *vdf_for(tip)) is None  # on 1 again
    assert not leader.protection.unpublished(2)  # found stored: marked published for good
    assert not leader.protection.release(2)


# -- the producer: not while the chain lacks the final block the peers agree on ------------------


def test_agreed_final_is_the_median_claim() -> None:
    assert agreed_final([]) is None
    assert agreed_final([(5, b"a")]) == (5, b"a")
    assert agreed_final([(10, b"a"), (10, b"a"), (10**9, b"liar")]) == (10, b"a")  # one liar: ignored
    assert agreed_final([(3, b"x"), (9, b"y")]) == (3, b"x")  # half of them: the lower one


def test_behind_or_beside_the_peers_final_block(
    two: tuple[Genesis, ChainService, FakeClock, list[Validator]],
) -> None:
    _, chain, clock, (leader, backup) = two
    by_leader, by_backup = fork_at_one(chain, leader, backup)
    claim: list[tuple[int, bytes] | None] = [None]
    producer = Producer(chain, VdfService(chain.params, headers=chain), leader.key, leader.protection, clock,
                        NullNetwork(), peer_final=lambda: claim[0])  # fmt: skip
    assert not producer.behind_peers_final()
    claim[0] = (3, b"\x01" * 32)
    assert producer.behind_peers_final()  # peers finalised height 3; this chain is at 1
    claim[0] = (1, bytes(by_backup.hash))
    assert producer.behind_peers_final()  # peers finalised the block this chain has as a side block
    claim[0] = (1, bytes(by_leader.hash))
    assert not producer.behind_peers_final()


async def test_a_node_behind_its_peers_final_proposes_nothing(tmp_path: Path) -> None:
    genesis, keys = dev_genesis(1)
    claim: list[tuple[int, bytes] | None] = [(5, b"\x02" * 32)]  # reconnected: peers finalised 5
    stack = open_stack(
        tmp_path,
        genesis,
        keys["validator0"],
        FakeClock(GENESIS_TIME_MS + 100_000),
        peer_final=lambda: claim[0],
    )
    producer, chain = stack.producer, stack.chain
    try:
        async with run_stack(stack):
            with trio.fail_after(60):
                await wait_until(lambda: producer.waiting_for_sync, timeout_s=60)
                assert producer.behind_peers_final()
                assert chain.height == 0
                assert producer.proposed == 0
                claim[0] = None  # caught up (here: the claim is gone): it proposes again
                await chain.wait_height(1)
        assert producer.proposed >= 1
        assert not stack.protection.unpublished(1)  # stored, then marked before it was published
    finally:
        stack.close()
