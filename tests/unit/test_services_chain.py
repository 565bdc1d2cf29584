"""The chain service with a real store: import, orphans, fork choice, reorgs, finality (PROTOCOL §4.4-§4.7),
and the producer's and attester's decisions on a two-validator chain with a fake clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from chain.block import Block, TxBody
from chain.consensus.duties import proposal_duty
from chain.crypto import account_id
from chain.errors import ErrorCode
from chain.genesis import Genesis
from chain.header import Attestation
from chain.params import DEVNET
from chain.store.blockstore import BlockStore
from chain.tx import Transfer, make_tx
from chain.types import Amount, BlockHash, Height
from linguachaind.services.chain_service import AddBlockResult, ChainService
from linguachaind.services.producer import Producer
from linguachaind.services.vdf_service import VdfService
from linguachaind.slashing_protection import SlashingProtection
from mempool import DEFAULT_CONFIG, Mempool
from tests.support.chainbuilders import GENESIS_TIME_MS, dev_genesis
from tests.support.doubles import FakeClock, NullNetwork
from tests.support.services_support import NoVdf, Validator, two_validators, vdf_for
from tests.support.waiting import wait_until


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Genesis, ChainService, FakeClock, list[Validator]]]:
    with two_validators(tmp_path) as world:
        yield world


def test_lower_rank_wins_then_attested_weight_wins_with_reorgs(
    two: tuple[Genesis, ChainService, FakeClock, list[Validator]],
) -> None:
    _, chain, _, (leader, backup) = two
    genesis_header = chain.tip_header()
    by_backup = backup.propose(chain, genesis_header)
    by_leader = leader.propose(chain, genesis_header)
    assert (by_leader.header.rank, by_backup.header.rank) == (0, 1)

    assert chain.import_block(by_backup) is AddBlockResult.NEW_TIP
    assert chain.tip_hash() == by_backup.hash
    att = backup.attester.attest_head()  # the backup votes for the only block it knows
    assert att is not None
    assert att.block_hash == by_backup.hash

    assert chain.import_block(by_leader) is AddBlockResult.SIDE_BLOCK  # lower rank, but one vote on the tip
    assert chain.tip_hash() == by_backup.hash  # ... but one vote already sits on the backup's block
    assert chain.statistics().side_blocks == 1

    genesis_source = (Height(0), BlockHash(bytes(32)))
    leader_vote = Attestation(
        DEVNET.chain_id, Height(1), by_leader.hash, *genesis_source, leader.key.pubkey
    ).signed(leader.key)
    assert chain.on_attestation(leader_vote) is None  # 1 vote each: tie on weight -> lower rank sum
    assert chain.tip_hash() == by_leader.hash
    assert chain.statistics().reorgs == 1
    chain.store.verify()
    assert backup.attester.attest_head() is None  # never a second vote at height 1

    # The leader's vote alone is 50%: not final. Both votes on one block would be.
    assert chain.store.final_height == 0
    assert chain.import_block(by_leader) is AddBlockResult.ALREADY_KNOWN


def test_a_certified_and_attested_child_makes_its_parent_final_never_reverted(
    two: tuple[Genesis, ChainService, FakeClock, list[Validator]],
) -> None:
    """The 2-chain rule of chain.consensus.finality: B is final once a child carries a 2/3
    certificate for B and itself gathers 2/3 of the votes."""
    _, chain, _, (leader, backup) = two
    g = chain.tip_header()
    block1 = leader.propose(chain, g)
    assert chain.import_block(block1) is AddBlockResult.NEW_TIP
    assert leader.attester.attest_head() is not None
    assert backup.attester.attest_head() is not None
    assert chain.store.final_height == 0  # justified, not final
    parent = chain.tip_header()
    proposer = min((leader, backup), key=lambda v: v.duty(chain, parent).rank)
    block2 = proposer.propose(chain, parent)
    assert len(block2.header.parent_certificate) == 2  # both votes for block 1
    assert chain.import_block(block2) is AddBlockResult.NEW_TIP
    assert leader.attester.attest_head() is not None
    assert chain.store.final_height == 0
    assert backup.attester.attest_head() is not None
    assert chain.store.final_height == 1
    late = backup.propose(chain, g)  # a competing height-1 block now conflicts with the final one
    assert chain.import_block(late) is ErrorCode.CONFLICTS_WITH_FINAL
    assert chain.tip_hash() == block2.hash


def test_unfinalised_votes_are_the_ones_above_final_highest_first(
    two: tuple[Genesis, ChainService, FakeClock, list[Validator]],
) -> None:
    """What the daemon re-sends to each new peer (wiring._reannounce_votes)."""
    _, chain, _, (leader, backup) = two
    g = chain.tip_header()
    assert chain.unfinalised_votes() == []
    block1 = leader.propose(chain, g)
    assert chain.import_block(block1) is AddBlockResult.NEW_TIP
    first = [leader.attester.attest_head(), backup.attester.attest_head()]
    assert all(att is not None for att in first)
    assert sorted(a.validator for a in chain.unfinalised_votes()) == sorted(a.validator for a in first if a)
    parent = chain.tip_header()
    proposer = min((leader, backup), key=lambda v: v.duty(chain, parent).rank)
    assert chain.import_block(proposer.propose(chain, parent)) is AddBlockResult.NEW_TIP
    second = leader.attester.attest_head()
    assert second is not None
    votes = chain.unfinalised_votes()
    assert votes[0] == second  # highest first
    assert [a.height for a in votes] == [2, 1, 1]
    assert chain.unfinalised_votes(limit=1) == [second]
    assert backup.attester.attest_head() is not None
    assert chain.store.final_height == 1  # votes at or below the final height are not re-sent
    assert {a.height for a in chain.unfinalised_votes()} == {2}


def test_orphans_wait_for_their_parent(
    tmp_path: Path, two: tuple[Genesis, ChainService, FakeClock, list[Validator]]
) -> None:
    genesis, chain, clock, (leader, backup) = two
    # Build heights 1 and 2 on a second node, then deliver them in the wrong order.
    other_store = BlockStore.open(tmp_path / "other", genesis)
    other = ChainService(other_store, clock)
    try:
        builders = {
            v.key.pubkey: Validator(tmp_path, f"b{i}", v.key, other, clock)
            for i, v in enumerate((leader, backup))
        }
        b1 = builders[leader.key.pubkey].propose(other, other.tip_header())
        assert other.import_block(b1) is AddBlockResult.NEW_TIP
        parent = other.tip_header()
        ranked = sorted(builders.values(), key=lambda v: v.duty(other, parent).rank)
        b2 = ranked[0].propose(other, parent)
        for v in builders.values():
            v.protection.close()
    finally:
        other_store.close()
    assert chain.import_block(b2) is AddBlockResult.ORPHAN
    assert chain.statistics().orphans == 1
    assert chain.import_block(b1) is AddBlockResult.NEW_TIP
    assert chain.height == 2
    assert chain.tip_hash() == b2.hash
    assert chain.statistics().orphans == 0


def test_invalid_blocks_are_rejected_with_their_code(
    two: tuple[Genesis, ChainService, FakeClock, list[Validator]],
) -> None:
    _, chain, _, (leader, _) = two
    good = leader.propose(chain, chain.tip_header())
    forged = Block(dataclasses.replace(good.header, signature=bytes(64)), good.body)  # type: ignore[arg-type]
    assert chain.import_block(forged) is ErrorCode.BAD_SIGNATURE
    wrong_vdf = dataclasses.replace(good.header, vdf_output=bytes(100)).mined(DEVNET.pow_bits_header)
    assert chain.import_block(Block(wrong_vdf.signed(leader.key), good.body)) is ErrorCode.BAD_VDF
    assert chain.statistics().rejected == 2
    assert chain.height == 0


def test_a_block_signed_before_a_crash_is_reused_never_replaced(
    two: tuple[Genesis, ChainService, FakeClock, list[Validator]],
) -> None:
    _, chain, clock, (leader, _) = two
    g = chain.tip_header()
    first = leader.propose(chain, g)  # signed, then a "crash" before the import
    leader.protection.close()
    clock.advance(50)  # after the restart another timestamp would make another header
    leader.protection = SlashingProtection.open(leader.sp_path, leader.key.pubkey)
    restarted = Producer(chain, NoVdf(), leader.key, leader.protection, clock, NullNetwork())
    assert restarted.assemble(g, leader.duty(chain, g), *vdf_for(g)) == first  # the same block again
    assert chain.import_block(first) is AddBlockResult.NEW_TIP
    assert restarted.assemble(g, leader.duty(chain, g), *vdf_for(g)) is None  # imported: nothing to sign


async def test_the_producer_waits_for_its_rank_time(tmp_path: Path) -> None:
    genesis, keys = dev_genesis(2)
    clock = FakeClock(GENESIS_TIME_MS)
    store = BlockStore.open(tmp_path / "chain", genesis)
    chain = ChainService(store, clock)
    g = chain.tip_header()
    y, _ = vdf_for(g)
    ranked = sorted(
        ("validator0", "validator1"),
        key=lambda n: proposal_duty(DEVNET, g, chain.reader(), y, keys[n].pubkey).rank,  # type: ignore[union-attr]
    )
    backup_key = keys[ranked[1]]  # only the backup runs: the leader is silent
    protection = SlashingProtection.open(tmp_path / "sp", backup_key.pubkey)
    vdf_service = VdfService(DEVNET, headers=chain)
    producer = Producer(chain, vdf_service, backup_key, protection, clock, NullNetwork())
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(vdf_service.run)
            await nursery.start(producer.run)
            with trio.fail_after(20):
                await wait_until(lambda: vdf_service.computed > 0)
                clock.set(GENESIS_TIME_MS + DEVNET.slot_ms)  # the leader's time: not ours
                await trio.testing.wait_all_tasks_blocked()
                assert chain.height == 0
                clock.set(GENESIS_TIME_MS + DEVNET.slot_ms + DEVNET.rank_delay_ms)
                await chain.wait_height(1)
            nursery.cancel_scope.cancel()
        block = store.get_block_at(1)
        assert block is not None
        assert block.header.rank == 1
        assert block.header.proposer == backup_key.pubkey
        assert block.header.timestamp_ms == GENESIS_TIME_MS + DEVNET.slot_ms + DEVNET.rank_delay_ms
    finally:
        protection.close()
        store.close()


def test_a_reorg_returns_the_rolled_back_txs_to_the_mempool(tmp_path: Path) -> None:
    genesis, keys = dev_genesis(2)
    clock = FakeClock(GENESIS_TIME_MS + 100_000)
    store = BlockStore.open(tmp_path / "chain", genesis)
    pool = Mempool.open(
        tmp_path / "mempool", DEVNET, config=DEFAULT_CONFIG, reader=store.reader(), now_ms=clock.now_ms()
    )
    try:
        chain = ChainService(store, clock, mempool=pool)
        vals = [Validator(tmp_path, f"v{i}", keys[f"validator{i}"], chain, clock) for i in range(2)]
        g = chain.tip_header()
        leader, backup = sorted(vals, key=lambda v: v.duty(chain, g).rank)
        tx = make_tx(
            keys["alice"], DEVNET.chain_id, 0, 10_000, Transfer(account_id(keys["bob"].pubkey), Amount(7))
        )
        assert pool.add(tx, clock.now_ms()) == tx.id
        backup.producer = Producer(
            chain, NoVdf(), backup.key, backup.protection, clock, NullNetwork(), mempool=pool
        )
        with_tx = backup.propose(chain, g)  # the backup includes the tx, the leader's block is empty
        assert isinstance(with_tx.body, TxBody)
        assert with_tx.body.txs == (tx,)
        assert chain.import_block(with_tx) is AddBlockResult.NEW_TIP
        assert not pool.contains(tx.id)  # included: dropped from the pool
        assert chain.import_block(leader.propose(chain, g)) is AddBlockResult.NEW_TIP  # lower rank: reorg
        assert chain.statistics().reorgs == 1
        assert pool.contains(tx.id)  # rolled back: pending again
        assert store.find_tx(tx.id) is None
        for v in vals:
            v.protection.close()
    finally:
        pool.close()
        store.close()


async def test_a_block_from_the_near_future_is_imported_when_its_time_comes(
    two: tuple[Genesis, ChainService, FakeClock, list[Validator]],
) -> None:
    _, chain, clock, (leader, _) = two
    block = leader.propose(chain, chain.tip_header())
    clock_now = clock.now_ms()
    early = FakeClock(clock_now - DEVNET.max_future_drift_ms - 500)  # a node whose clock is behind
    behind = ChainService(chain.store, early)  # same store, nothing imported yet: a second view
    async with trio.open_nursery() as nursery:
        await nursery.start(behind.run)
        assert behind.import_block(block) is ErrorCode.FUTURE_BLOCK
        early.advance(499)
        await trio.testing.wait_all_tasks_blocked()
        assert behind.height == 0
        early.advance(1)
        with trio.fail_after(5):
            await behind.wait_height(1)
        nursery.cancel_scope.cancel()
    assert behind.tip_hash() == block.hash


async def test_a_backup_stands_down_when_the_leaders_block_arrives(tmp_path: Path) -> None:
    genesis, keys = dev_genesis(2)
    clock = FakeClock(GENESIS_TIME_MS + DEVNET.slot_ms)  # the leader's time, not yet the backup's
    store = BlockStore.open(tmp_path / "chain", genesis)
    chain = ChainService(store, clock)
    vals = [Validator(tmp_path, f"v{i}", keys[f"validator{i}"], chain, clock) for i in range(2)]
    g = chain.tip_header()
    leader, backup = sorted(vals, key=lambda v: v.duty(chain, g).rank)
    vdf_service = VdfService(DEVNET, headers=chain)
    runner = Producer(chain, vdf_service, backup.key, backup.protection, clock, NullNetwork())
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(vdf_service.run)
            await nursery.start(runner.run)
            with trio.fail_after(20):
                await wait_until(lambda: vdf_service.lookup(g.hash) is not None)
                await trio.testing.wait_all_tasks_blocked()  # the backup now sleeps until its rank time
                assert chain.import_block(leader.propose(chain, g)) is AddBlockResult.NEW_TIP
                clock.advance(DEVNET.rank_delay_ms)  # the backup's time for height 1 has come...
                await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        assert chain.child_ranks(g.hash) == [0]  # ...but it stood down for the leader's block
        assert backup.protection.proposed(1) is None
    finally:
        for v in vals:
            v.protection.close()
        store.close()
