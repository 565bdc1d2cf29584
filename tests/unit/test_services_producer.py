"""The producer's block body and its wait for sync (PROTOCOL §3.5, §4.1), on a real store, real state,
real mempool and the real VDF, with a fake clock."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import trio
import trio.testing

from chain.block import Block, TxBody
from chain.crypto import SecretKey, account_id
from chain.errors import ErrorCode
from chain.evidence import DoubleProposal, Evidence, EvidenceKind
from chain.header import Header
from chain.params import DEVNET
from chain.state.transition import BlockError, apply_block_detailed
from chain.store.blockstore import BlockStore
from chain.tx import SlashEvidence, Stake, Transfer, make_tx
from chain.types import ZERO_SIGNATURE, Amount, TimestampMs
from linguachaind.services.chain_service import AddBlockResult, ChainService
from mempool import DEFAULT_CONFIG, Mempool
from tests.support.chainbuilders import GENESIS_TIME_MS, dev_genesis
from tests.support.doubles import FakeClock
from tests.support.services_support import Validator, open_stack, run_stack
from tests.support.waiting import wait_until


def equivocation(header: Header, key: SecretKey) -> Evidence:
    """`header` and a second header of its proposer at its height (another timestamp), both signed."""
    other = dataclasses.replace(
        header, timestamp_ms=TimestampMs(header.timestamp_ms + 1), signature=ZERO_SIGNATURE
    )
    other = other.mined(DEVNET.pow_bits_header).signed(key)
    return Evidence(EvidenceKind.DOUBLE_PROPOSAL, DoubleProposal(header, other))


def test_a_pending_tx_that_became_invalid_is_left_out_not_the_whole_block(tmp_path: Path) -> None:
    genesis, keys = dev_genesis(2, funded=("alice", "bob", "carol"))
    clock = FakeClock(GENESIS_TIME_MS + 100_000)
    store = BlockStore.open(tmp_path / "chain", genesis)
    pool = Mempool.open(
        tmp_path / "mempool", DEVNET, config=DEFAULT_CONFIG, reader=store.reader(), now_ms=clock.now_ms()
    )
    chain = ChainService(store, clock, mempool=pool)
    vals = [Validator(tmp_path, f"v{i}", keys[f"validator{i}"], chain, clock, mempool=pool) for i in range(2)]
    try:
        g = chain.tip_header()
        leader, cheat = sorted(vals, key=lambda v: v.duty(chain, g).rank)
        # carol reports the cheat's equivocation with a high fee (first in the template); alice, who
        # cannot know, stakes on the cheat (admitted: not jailed yet); bob pays alice.
        evidence_tx = make_tx(
            keys["carol"],
            DEVNET.chain_id,
            0,
            1_000_000,
            SlashEvidence(equivocation(cheat.propose(chain, g).header, cheat.key)),
        )
        stake = make_tx(keys["alice"], DEVNET.chain_id, 0, 1_000, Stake(cheat.key.pubkey, Amount(5)))
        pay = make_tx(
            keys["bob"], DEVNET.chain_id, 0, 1_000, Transfer(account_id(keys["alice"].pubkey), Amount(9))
        )
        for tx in (evidence_tx, stake, pay):
            assert pool.add(tx, clock.now_ms()) == tx.id

        block = leader.propose(chain, g)
        assert isinstance(block.body, TxBody)
        assert block.body.txs[0] == evidence_tx
        assert set(block.body.txs) == {evidence_tx, pay}  # the stake on a now-jailed validator is left out
        assert leader.producer.skipped_txs == 1
        # the template as the pool sees it would have made the block invalid (the old empty-block case)
        whole = pool.tx_template(DEVNET.max_block_bytes, DEVNET.max_txs_per_block)
        assert set(whole) == {evidence_tx, stake, pay}
        parent_state = chain.state(g.hash)
        assert parent_state is not None
        failed = apply_block_detailed(DEVNET, parent_state, Block(block.header, TxBody(tuple(whole))))
        assert isinstance(failed, BlockError)
        assert failed.inner is ErrorCode.VALIDATOR_JAILED

        assert chain.import_block(block) is AddBlockResult.NEW_TIP
        record = chain.reader().validator(cheat.key.pubkey)
        assert record is not None
        assert record.jailed_until == 1 + DEVNET.jail_blocks
        assert pool.contains(stake.id)  # still pending: only the block's senders are re-checked
        assert not pool.contains(pay.id)
        assert not pool.contains(evidence_tx.id)
    finally:
        for v in vals:
            v.protection.close()
        pool.close()
        store.close()


async def test_the_producer_waits_until_the_node_is_synced(tmp_path: Path) -> None:
    genesis, keys = dev_genesis(1)
    synced = False
    stack = open_stack(
        tmp_path, genesis, keys["validator0"], FakeClock(GENESIS_TIME_MS + 100_000), synced=lambda: synced
    )
    producer, chain = stack.producer, stack.chain
    try:
        async with run_stack(stack):
            with trio.fail_after(20):
                await wait_until(lambda: producer.waiting_for_sync)
                await trio.testing.wait_all_tasks_blocked()
                assert chain.height == 0
                assert stack.vdf.computed == 0  # not even the VDF of a tip that may be stale
                synced = True
                await chain.wait_height(1)
        assert producer.proposed == 1
    finally:
        stack.close()
