"""Pools: eviction by fee rate (with the evicted sender's later nonces), replacement across pools,
templates within byte/count budgets, the three pools' listings and statistics."""

from __future__ import annotations

from pathlib import Path

from chain.codec import encode
from chain.errors import ErrorCode
from mempool import Mempool, MempoolConfig, PoolKind, PoolLimits
from tests.support.mempool_support import PARAMS, MemState, acct, data_unit_tx, learning_unit_tx, transfer

SIZE = len(encode(transfer(0, 0)))  # every plain transfer here has the same encoded size


def open_pool(path: Path, config: MempoolConfig, n: int = 8) -> Mempool:
    return Mempool.open(path, PARAMS, config, MemState.funded(n), 1)


def test_full_pool_evicts_lowest_fee_rate_and_its_later_nonces(tmp_path: Path) -> None:
    config = MempoolConfig(tx=PoolLimits(4, 10 * SIZE), sync_writes=False)
    mp = open_pool(tmp_path / "mp", config)
    low0, low1 = transfer(0, 0, fee=2_000), transfer(0, 1, fee=90_000)
    mid, high = transfer(1, 0, fee=5_000), transfer(2, 0, fee=9_000)
    for tx in (low0, low1, mid, high):
        assert mp.add(tx, 2) == tx.id
    stats = mp.statistics().pools[PoolKind.TX]
    assert stats.count == 4
    assert stats.min_fee_rate_to_enter == 2_000 * 1000 // SIZE + 1
    assert mp.add(transfer(3, 0, fee=2_000), 3) == ErrorCode.POOL_FULL  # not better than the lowest
    newcomer = transfer(3, 0, fee=6_000)
    assert mp.add(newcomer, 3) == newcomer.id
    # low0 had the lowest rate; low1 (a high fee) cannot be included without it, so it goes too
    assert set(mp.ids()) == {mid.id, high.id, newcomer.id}
    assert mp.statistics().evicted_total == 2
    mp.check_invariants()
    mp.close()


def test_eviction_never_cuts_the_newcomers_own_run(tmp_path: Path) -> None:
    config = MempoolConfig(tx=PoolLimits(2, 10 * SIZE), sync_writes=False)
    mp = open_pool(tmp_path / "mp", config)
    assert isinstance(mp.add(transfer(0, 0, fee=2_000), 2), bytes)
    assert isinstance(mp.add(transfer(1, 0, fee=3_000), 2), bytes)
    # Sender 0's next tx pays more, but the only cheaper victim is its own nonce 0.
    assert mp.add(transfer(0, 1, fee=50_000), 3) == ErrorCode.POOL_FULL
    mp.check_invariants()
    mp.close()


def test_byte_limit_and_replacement_across_pools(tmp_path: Path) -> None:
    unit = data_unit_tx(0, 0, fee=10_000)
    config = MempoolConfig(tx=PoolLimits(100, 3 * SIZE), sync_writes=False)
    mp = open_pool(tmp_path / "mp", config)
    assert mp.add(unit, 2) == unit.id
    assert mp.add(transfer(0, 1), 2) == transfer(0, 1).id
    assert [t.id for t in mp.data_units()] == [unit.id]
    # A transfer replaces the pending data unit at nonce 0 (fee bump 10 %): it moves pools.
    swap = transfer(0, 0, fee=11_000)
    assert mp.add(swap, 3) == swap.id
    assert mp.data_units() == []
    stats = mp.statistics()
    assert (stats.pools[PoolKind.TX].count, stats.pools[PoolKind.DATA].count) == (2, 0)
    assert stats.pools[PoolKind.TX].bytes == 2 * SIZE
    for i in (1, 2):
        assert isinstance(mp.add(transfer(i, 0, fee=20_000), 4), bytes)
    assert mp.statistics().pools[PoolKind.TX].bytes <= 3 * SIZE
    mp.check_invariants()
    mp.close()


def test_template_budget_order_and_kinds(tmp_path: Path) -> None:
    mp = open_pool(tmp_path / "mp", MempoolConfig(sync_writes=False))
    big = transfer(0, 0, fee=900_000, memo=b"x" * 200)  # best fee rate, but large
    after_big = transfer(0, 1, fee=900_000)
    a, b = transfer(1, 0, fee=30_000), transfer(1, 1, fee=90_000)  # b pays more but needs a first
    c = transfer(2, 0, fee=50_000)
    lu = learning_unit_tx(3, 0, fee=500_000)
    for tx in (big, after_big, a, b, c, lu):
        assert mp.add(tx, 2) == tx.id
    everything = mp.tx_template(10**6, 100)
    assert everything[0] == big
    assert everything.index(a) < everything.index(b)
    assert everything.index(big) < everything.index(after_big)
    # Room for two plain transfers: `big` does not fit, so sender 0 waits (after_big, the best
    # fee rate of all and small enough, would leave a nonce gap); b then finds no room.
    small = mp.tx_template(len(encode(c)) + len(encode(a)), 100, kinds=frozenset({PoolKind.TX}))
    assert small == [c, a]
    assert mp.tx_template(10**6, 2) == [big, after_big]
    assert lu not in mp.tx_template(10**6, 100, kinds=frozenset({PoolKind.TX}))
    assert mp.learning_units() == [lu]
    stats = mp.statistics(now_ms=5_002)
    assert stats.count == 6
    assert stats.oldest_age_ms == 5_000
    assert stats.senders == 4
    assert mp.pending(acct(1)) == [a, b]
    mp.close()


def test_sender_limit(tmp_path: Path) -> None:
    mp = open_pool(tmp_path / "mp", MempoolConfig(max_per_sender=2, sync_writes=False))
    assert isinstance(mp.add(transfer(0, 0), 2), bytes)
    assert isinstance(mp.add(transfer(0, 1), 2), bytes)
    assert mp.add(transfer(0, 2), 2) == ErrorCode.SENDER_LIMIT
    assert ErrorCode.SENDER_LIMIT.is_transient
    assert isinstance(mp.add(transfer(0, 1, fee=20_000), 3), bytes)  # replacing is still allowed
    mp.close()
