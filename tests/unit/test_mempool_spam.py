"""Spam test: 10,000 items with bad signatures or bad PoW are rejected without growing memory or the
store, valid traffic is accepted while it happens, and repeating one bad item costs one check."""

from __future__ import annotations

import dataclasses
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from chain.codec import encode
from chain.errors import ErrorCode
from chain.tx import Tx, make_tx
from chain.units import DataUnit
from mempool import Mempool, MempoolConfig
from mempool.store import MempoolStore
from tests.support.mempool_support import PARAMS, MemState, bad_signature, data_unit_tx, key, transfer

CACHE = 1_000  # recent-rejects capacity: the only thing spam may fill, and it is bounded
CONFIG = MempoolConfig(recent_rejects=CACHE, max_per_sender=200)
N_SPAM = 10_000
VALID_EVERY = 50


def spam_items() -> Iterator[tuple[bytes, ErrorCode]]:
    """Distinct bad items: transfers with a flipped signature bit, data units whose PoW misses."""
    base_tx = transfer(0, 0)
    unit_tx = data_unit_tx(1, 0)
    unit = unit_tx.payload
    assert isinstance(unit, DataUnit)
    nonce = unit.pow_nonce
    for n in range(N_SPAM):
        if n % 2 == 0:
            yield encode(bad_signature(base_tx, n // 2)), ErrorCode.BAD_SIGNATURE
        else:
            nonce += 1
            while dataclasses.replace(unit, pow_nonce=nonce).pow_valid(PARAMS):
                nonce += 1
            bad = make_tx(key(1), PARAMS.chain_id, 0, 10_000, dataclasses.replace(unit, pow_nonce=nonce))
            yield encode(bad), ErrorCode.BAD_POW


def valid_items(n: int) -> list[Tx]:
    return [transfer(2 + i % 4, i // 4) for i in range(n)]


def test_spam_is_rejected_without_growth_while_valid_traffic_flows(tmp_path: Path) -> None:
    mp = Mempool.open(tmp_path / "mp", PARAMS, CONFIG, reader=MemState.funded(6), now_ms=1)
    items = list(spam_items())
    valid = valid_items(N_SPAM // VALID_EVERY)
    size_before = mp.statistics().bytes
    half = N_SPAM // 2

    tracemalloc.start()
    try:
        mem: list[int] = []
        for n, (raw, code) in enumerate(items):
            if n % VALID_EVERY == 0:
                tx = valid[n // VALID_EVERY]
                assert mp.add(tx, 10 + n) == tx.id
            assert mp.add_raw(raw, 10 + n) == code
            if n in (half - 1, N_SPAM - 1):
                mem.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()

    assert len(mp) == len(valid)
    assert mp.statistics().recent_rejects == CACHE
    # The second 5,000 spam items (plus 100 valid txs in the pool) grow memory by well under what
    # remembering each of them would take (~150 bytes per id): the cache is full and bounded.
    assert mem[1] - mem[0] < 300_000, mem
    assert mp.statistics().bytes - size_before == sum(len(encode(t)) for t in valid)
    mp.close()
    store = MempoolStore(tmp_path / "mp")
    assert store.count() == len(valid)  # nothing of the spam reached the disk
    store.close()


def test_a_flood_of_one_bad_item_costs_one_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real = Tx.signature_valid

    def counting(self: Tx) -> bool:
        nonlocal calls
        calls += 1
        return real(self)

    monkeypatch.setattr(Tx, "signature_valid", counting)
    mp = Mempool.open(tmp_path / "mp", PARAMS, CONFIG, reader=MemState.funded(3), now_ms=1)
    raw = encode(bad_signature(transfer(0, 0), 9))
    assert mp.add_raw(raw, 2) == ErrorCode.BAD_SIGNATURE
    for _ in range(10_000):
        assert mp.add_raw(raw, 3) == ErrorCode.RECENTLY_REJECTED
    assert calls == 1
    assert ErrorCode.RECENTLY_REJECTED.is_permanent
    good = transfer(0, 0)  # the valid tx with the same sender and nonce is not blocked
    assert mp.add(good, 4) == good.id
    assert calls == 2
    # A well-signed tx from an empty account: refused against state (transient, never cached as
    # invalid), yet resending it costs no second signature check.
    unfunded = encode(transfer(7, 0))
    for _ in range(1_000):
        assert mp.add_raw(unfunded, 5) == ErrorCode.INSUFFICIENT_BALANCE
    assert calls == 3
    mp.close()
