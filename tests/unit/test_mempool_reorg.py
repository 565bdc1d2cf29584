"""Chain events (PROTOCOL §4.5): a connected block removes what it included and what it made
invalid; a reorg returns the txs of rolled-back blocks (re-validated), except those the new branch
includes or conflicts with."""

from __future__ import annotations

from pathlib import Path

from chain.types import COIN
from mempool import Mempool, MempoolConfig
from tests.support.mempool_support import PARAMS, MemState, acct, transfer, tx_block

CONFIG = MempoolConfig(sync_writes=False)


def open_pool(path: Path, state: MemState) -> Mempool:
    return Mempool.open(path, PARAMS, CONFIG, reader=state, now_ms=1_000)


def test_connected_block_removes_included_and_conflicting(tmp_path: Path) -> None:
    genesis = MemState.funded(3)
    mp = open_pool(tmp_path / "mp", genesis)
    a0, a1, a2, b0 = transfer(0, 0), transfer(0, 1), transfer(0, 2), transfer(1, 0)
    for tx in (a0, a1, a2, b0):
        assert mp.add(tx, 2_000) == tx.id
    b0_other = transfer(1, 0, fee=50_000)  # B's nonce 0 spent by a tx this node never saw
    block = tx_block([a0, a1, b0_other], height=1)
    mp.on_block_connected(block, genesis.apply(block))
    assert mp.ids() == [a2.id]  # a0, a1 included; b0 conflicts
    mp.close()
    mp = open_pool(tmp_path / "mp", genesis.apply(block))
    assert mp.ids() == [a2.id]  # and the store agrees
    mp.close()


def test_connected_block_drops_what_the_new_balance_no_longer_covers(tmp_path: Path) -> None:
    genesis = MemState.funded(1, balance=10 * COIN)
    mp = open_pool(tmp_path / "mp", genesis)
    first, second = transfer(0, 0, amount=4 * COIN), transfer(0, 1, amount=4 * COIN)
    assert mp.add(first, 2_000) == first.id
    assert mp.add(second, 2_000) == second.id
    # Elsewhere the sender spent most of its balance with nonce 0: `second` cannot be paid.
    spent = transfer(0, 0, amount=9 * COIN, fee=20_000)
    block = tx_block([spent], height=1)
    mp.on_block_connected(block, genesis.apply(block))
    assert len(mp) == 0
    mp.close()


def test_reorg_returns_rolled_back_txs_but_not_those_on_the_new_branch(tmp_path: Path) -> None:
    genesis = MemState.funded(4)
    mp = open_pool(tmp_path / "mp", genesis)
    a0, a1, b0, c0, d0 = transfer(0, 0), transfer(0, 1), transfer(1, 0), transfer(2, 0), transfer(3, 0)
    for tx in (a0, a1, b0, c0, d0):
        assert mp.add(tx, 2_000) == tx.id
    later_a2 = transfer(0, 2)

    # Branch A: block 1 includes a0, a1, b0; a2 arrives afterwards.
    block_a = tx_block([a0, a1, b0], height=1, salt=1)
    state_a = genesis.apply(block_a)
    mp.on_block_connected(block_a, state_a)
    assert set(mp.ids()) == {c0.id, d0.id}
    assert mp.add(later_a2, 3_000) == later_a2.id

    # Reorg to branch B: block 1' includes a0, c0 and a different nonce-0 tx of B.
    b0_other = transfer(1, 0, fee=30_000)
    block_b = tx_block([a0, c0, b0_other], height=1, salt=2)
    mp.on_block_disconnected(block_a, genesis)
    assert set(mp.ids()) == {a0.id, a1.id, b0.id, c0.id, d0.id, later_a2.id}
    assert [t.nonce for t in mp.pending(acct(0))] == [0, 1, 2]  # rolled-back txs ahead of later ones
    mp.check_invariants()
    state_b = genesis.apply(block_b)
    mp.on_block_connected(block_b, state_b)
    assert set(mp.ids()) == {a1.id, d0.id, later_a2.id}  # a0, c0 included; b0 conflicts
    assert mp.tx_template(PARAMS.max_block_bytes, 100) in ([a1, later_a2, d0], [d0, a1, later_a2])
    mp.close()

    mp = open_pool(tmp_path / "mp", state_b)  # persisted: the returned txs survive a restart
    assert set(mp.ids()) == {a1.id, d0.id, later_a2.id}
    mp.close()


def test_rolled_back_tx_that_became_invalid_does_not_return(tmp_path: Path) -> None:
    genesis = MemState.funded(2)
    mp = open_pool(tmp_path / "mp", genesis)
    a0 = transfer(0, 0)
    block = tx_block([a0], height=1)
    mp.on_block_connected(block, genesis.apply(block))
    # The parent state, as seen after the rollback, has the sender empty (e.g. an earlier reorg).
    mp.on_block_disconnected(block, genesis.with_account(acct(0), 0, 0))
    assert len(mp) == 0
    mp.close()


def test_revalidate_against_a_new_tip_without_events(tmp_path: Path) -> None:
    genesis = MemState.funded(2)
    mp = open_pool(tmp_path / "mp", genesis)
    a0, a1, b0 = transfer(0, 0), transfer(0, 1), transfer(1, 0)
    for tx in (a0, a1, b0):
        assert mp.add(tx, 2_000) == tx.id
    assert mp.get(a1.id) == a1
    assert mp.get_raw(a1.id) is not None
    mp.revalidate(genesis.with_account(acct(0), 1_000 * COIN, 1).with_account(acct(1), 5, 0))
    assert mp.ids() == [a1.id]  # a0's nonce is used; B can no longer pay
    assert mp.get(b0.id) is None
    mp.close()
