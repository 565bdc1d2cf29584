"""A single-validator devnet node produces valid blocks on its own (consensus services, PROTOCOL §4).

Real block store in a tmp dir, real VDF (devnet: 128 bits, 2000 iterations, in the prover process),
real signatures, the wall clock with the devnet slot of 1 s."""

from __future__ import annotations

from pathlib import Path

import trio

import vdf
from chain.block import TxBody
from chain.consensus.election import challenge_for_child
from chain.crypto import account_id
from chain.header import BlockKind, kind_for_height
from chain.params import DEVNET
from chain.tx import Transfer, make_tx
from chain.types import Amount
from linguachaind.services.interfaces import WallClock
from tests.support.chainbuilders import dev_genesis
from tests.support.doubles import NullNetwork
from tests.support.services_support import open_stack, run_stack

DEADLINE_S = 30


async def test_single_validator_devnet_grows_with_valid_final_blocks(tmp_path: Path) -> None:
    genesis, keys = dev_genesis(1)
    assert (genesis.params.vdf_discriminant_bits, genesis.params.vdf_iterations) == (128, 2000)
    clock = WallClock()
    stack = open_stack(tmp_path, genesis, keys["validator0"], clock, with_mempool=True)
    try:
        assert stack.mempool is not None
        alice, bob = keys["alice"], keys["bob"]
        tx = make_tx(alice, DEVNET.chain_id, 0, 10_000, Transfer(account_id(bob.pubkey), Amount(12345)))
        assert not isinstance(stack.mempool.add(tx, clock.now_ms()), int)
        async with run_stack(stack):
            with trio.fail_after(DEADLINE_S):
                await stack.chain.wait_height(4)
                await stack.chain.wait_final(3)  # 2-chain rule: block 4 certifies 3 and is attested
        store = stack.store
        store.verify()
        stats = stack.chain.statistics()
        assert stats.tip_height >= 4
        assert stats.final_height >= 3  # one validator: its own vote is 100% of the weight
        assert stats.final_height < stats.tip_height
        assert stats.rejected == 0
        for height in range(1, 5):
            block = store.get_block_at(height)
            assert block is not None
            h = block.header
            assert h.kind == kind_for_height(height)
            assert h.proposer == keys["validator0"].pubkey
            assert h.rank == 0
            parent = store.get_block_at(height - 1)
            assert parent is not None
            challenge = challenge_for_child(DEVNET.chain_id, parent.header)
            assert vdf.verify(challenge, 128, 2000, h.vdf_output, h.vdf_proof)
            assert h.timestamp_ms >= parent.header.timestamp_ms + DEVNET.slot_ms or height == 1
            if height >= 2:
                assert [a.validator for a in h.parent_certificate] == [keys["validator0"].pubkey]
        first = store.get_block_at(1)
        assert first is not None
        assert isinstance(first.body, TxBody)
        assert first.body.txs == (tx,)  # the mempool's tx made it into the first TX block
        assert store.find_tx(tx.id) is not None
        assert len(stack.mempool) == 0
        assert isinstance(stack.network, NullNetwork)
        assert {b.header.kind for b in stack.network.blocks} >= {
            BlockKind.TX,
            BlockKind.DATA,
            BlockKind.VERSION,
        }
        assert stack.network.vdfs  # the computed proofs were published (timelord role)
        assert len(stack.network.attestations) >= 3
    finally:
        stack.close()


async def test_the_node_resumes_after_a_restart_without_double_signing(tmp_path: Path) -> None:
    genesis, keys = dev_genesis(1)
    key = keys["validator0"]
    clock = WallClock()
    stack = open_stack(tmp_path, genesis, key, clock)
    try:
        async with run_stack(stack):
            with trio.fail_after(DEADLINE_S):
                await stack.chain.wait_height(2)
        stopped_at = stack.store.tip[1]
        signed = {h: stack.protection.proposed(h) for h in range(1, stopped_at + 1)}
    finally:
        stack.close()
    stack = open_stack(tmp_path, genesis, key, clock)
    try:
        assert stack.store.tip[1] == stopped_at
        for h, root in signed.items():
            assert root is not None
            assert stack.protection.proposed(h) == root
            assert h in stack.protection  # attested before the restart
        async with run_stack(stack):
            with trio.fail_after(DEADLINE_S):
                await stack.chain.wait_height(stopped_at + 2)
        stack.store.verify()
    finally:
        stack.close()
