"""The LevelDB block store: genesis, connect/disconnect with undo, indexes, schema and genesis checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from chain.errors import StoreError
from chain.state.genesis import genesis_block
from chain.state.transition import BlockEffects, apply_block, apply_tx
from chain.state.view import StateOverlay
from chain.store import SCHEMA_VERSION, BlockStore
from chain.store.blockstore import META_SCHEMA
from chain.store.leveldb import LevelDB
from chain.tx import Stake, Transfer
from chain.types import COIN, Amount, Height
from tests.support.chainbuilders import MemChain, data_body, dev_genesis, make_block, mine_data_unit


def build_chain(n_tx_blocks: int = 2) -> MemChain:
    c = MemChain(*dev_genesis())
    v0 = c.keys["validator0"].pubkey
    for i in range(n_tx_blocks):
        c.add_txs(
            [
                c.tx("alice", Transfer(c.account("bob"), Amount((i + 1) * COIN))),
                c.tx("bob", Stake(v0, Amount(10 * COIN))),
            ]
        )
    return c


def import_all(store: BlockStore, c: MemChain) -> None:
    for block in c.blocks[store.tip[1] + 1 :]:
        effects = apply_block(store.params, store.reader(), block)
        assert isinstance(effects, BlockEffects)
        store.connect_block(block, effects)


def test_open_creates_genesis_and_reopens(tmp_path: Path) -> None:
    genesis, _ = dev_genesis()
    gblock = genesis_block(genesis)
    with BlockStore.open(tmp_path / "chain", genesis) as store:
        assert store.tip == (gblock.hash, 0)
        assert store.genesis_hash == gblock.hash
        assert store.final_height == 0
        assert store.get_block_at(0) == gblock
        assert store.state_root == gblock.header.state_root
        store.verify()
    with BlockStore.open(tmp_path / "chain", genesis) as store:
        assert store.tip == (gblock.hash, 0)


def test_connect_indexes_and_state_follow_the_chain(tmp_path: Path) -> None:
    c = build_chain()
    with BlockStore.open(tmp_path / "chain", c.genesis) as store:
        import_all(store, c)
        assert store.tip == (c.blocks[-1].hash, c.height)
        assert store.state_root == c.state.state_root
        reader = store.reader()
        assert reader.height == c.height
        assert reader.account(c.account("bob")) == c.state.account(c.account("bob"))
        assert reader.validators() == c.state.validators()
        for block in c.blocks:
            assert store.get_block(block.hash) == block
            assert store.get_header(block.hash) == block.header
            assert store.has_block(block.hash)
            assert store.get_block_at(block.header.height) == block
        tx_block = c.blocks[1]
        tx = tx_block.body.txs[1]  # type: ignore[union-attr]
        assert store.find_tx(tx.id) == (tx_block.hash, 1)
        assert store.rewards_at(1) == list(c.effects[0].rewards)
        staker = c.account("staker0")
        mine = [r for e in c.effects for r in e.rewards if r.account == staker]
        assert store.rewards_for(staker) == mine
        store.verify()
    with BlockStore.open(tmp_path / "chain", c.genesis) as store:
        assert store.state_root == c.state.state_root


def test_disconnect_restores_exact_state_and_respects_final(tmp_path: Path) -> None:
    c = build_chain()
    with BlockStore.open(tmp_path / "chain", c.genesis) as store:
        import_all(store, c)
        roots = [b.header.state_root for b in c.blocks]
        tx_id = c.blocks[-1].body.txs[0].id  # type: ignore[union-attr]
        store.set_final(2)
        while store.tip[1] > 2:
            block = store.disconnect_tip()
            assert store.state_root == roots[block.header.height - 1]
            assert store.has_block(block.hash)  # kept as a side block
        assert store.find_tx(tx_id) is None
        assert store.rewards_at(c.height) == []
        with pytest.raises(StoreError, match="final"):
            store.disconnect_tip()
        store.verify()
        import_all(store, c)  # reapply: identical roots
        assert store.state_root == roots[-1]
        store.verify()
    c2 = build_chain()
    with BlockStore.open(tmp_path / "other", c2.genesis) as store, pytest.raises(StoreError, match="genesis"):
        store.disconnect_tip()


def test_connect_refuses_blocks_that_do_not_extend_the_tip(tmp_path: Path) -> None:
    c = build_chain(1)
    c.add()
    with BlockStore.open(tmp_path / "chain", c.genesis) as store:
        block = c.blocks[2]
        with pytest.raises(StoreError, match="extend"):
            store.connect_block(block, c.effects[1])
        with pytest.raises(StoreError, match="effects"):
            store.connect_block(c.blocks[1], c.effects[1])
        assert store.tip[1] == 0


def test_side_blocks_and_children(tmp_path: Path) -> None:
    c = build_chain(1)
    genesis_header = c.blocks[0].header
    side = make_block(
        genesis_header, c.blocks[1].body, c.keys["validator0"], bytes(32), genesis_header.timestamp_ms + 5
    )
    with BlockStore.open(tmp_path / "chain", c.genesis) as store:
        import_all(store, c)
        store.store_side_block(side)
        assert store.get_block(side.hash) == side
        assert store.get_block_at(1) == c.blocks[1]
        assert set(store.children(genesis_header.hash)) == {side.hash, c.blocks[1].hash}


def test_refuses_another_genesis(tmp_path: Path) -> None:
    genesis, _ = dev_genesis()
    other, _ = dev_genesis(n_validators=2)
    BlockStore.open(tmp_path / "chain", genesis).close()
    with pytest.raises(StoreError, match="another datadir"):
        BlockStore.open(tmp_path / "chain", other)
    BlockStore.open(tmp_path / "chain", genesis).close()  # the failed open released the lock


@pytest.mark.parametrize(("schema", "message"), [(SCHEMA_VERSION + 1, "newer"), (0, "old store schema")])
def test_refuses_other_schema_versions(tmp_path: Path, schema: int, message: str) -> None:
    genesis, _ = dev_genesis()
    BlockStore.open(tmp_path / "chain", genesis).close()
    with LevelDB(tmp_path / "chain") as db:
        db.write([(META_SCHEMA, schema.to_bytes(4, "big"))])
    with pytest.raises(StoreError, match=message):
        BlockStore.open(tmp_path / "chain", genesis)


def test_refuses_a_foreign_leveldb(tmp_path: Path) -> None:
    with LevelDB(tmp_path / "db") as db:
        db.write([(b"hello", b"world")])
    genesis, _ = dev_genesis()
    with pytest.raises(StoreError, match="not a block store"):
        BlockStore.open(tmp_path / "db", genesis)


def test_set_final_is_monotonic_and_bounded(tmp_path: Path) -> None:
    c = build_chain(1)
    with BlockStore.open(tmp_path / "chain", c.genesis) as store:
        import_all(store, c)
        store.set_final(1)
        store.set_final(0)
        assert store.final_height == 1
        with pytest.raises(StoreError, match="tip"):
            store.set_final(c.height + 1)
    with BlockStore.open(tmp_path / "chain", c.genesis) as store:
        assert store.final_height == Height(1)


def test_reader_follows_the_tip_and_supports_overlays(tmp_path: Path) -> None:
    c = build_chain(1)
    with BlockStore.open(tmp_path / "chain", c.genesis) as store:
        reader = store.reader()
        bob = c.account("bob")
        genesis_balance = reader.account(bob).balance
        import_all(store, c)
        assert reader.height == c.height
        assert reader.account(bob) == c.state.account(bob)
        # the mempool's simulation: an overlay on the tip, the store untouched
        ov = StateOverlay(reader)
        tx = c.tx("bob", Transfer(c.account("alice"), Amount(COIN)))
        assert apply_tx(store.params, ov, tx, Height(c.height + 1)) is None
        assert ov.account(bob).nonce == reader.account(bob).nonce + 1
        assert store.state_root == c.state.state_root
        staker = c.account("staker0")
        assert store.rewards_for(staker)
        while store.tip[1]:
            store.disconnect_tip()
        assert reader.height == 0
        assert reader.account(bob).balance == genesis_balance
        assert store.rewards_for(staker) == []
        assert store.find_tx(tx.id) is None


def test_rewards_for_unit_explains_a_contributor_reward(tmp_path: Path) -> None:
    c = MemChain(*dev_genesis())
    unit = mine_data_unit(c.params, c.keys["alice"], 12)
    c.add_txs([c.tx("alice", unit)])
    c.add(data_body([unit.id]))
    with BlockStore.open(tmp_path / "chain", c.genesis) as store:
        import_all(store, c)
        [record] = store.rewards_for_unit(unit.id)
        assert (record.account, record.amount, record.height) == (
            c.account("alice"),
            c.params.reward_data_pool,
            2,
        )
        assert store.rewards_for_unit(bytes(32)) == []
        store.disconnect_tip()
        assert store.rewards_for_unit(unit.id) == []
