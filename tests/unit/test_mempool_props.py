"""Property tests (hypothesis) of the mempool's invariants under random traffic and chain events.

Invariants checked after every step: no two pending items of one sender share a nonce and each
sender's run is gap-free from its state nonce; no pool exceeds its count or byte limit; a template
never has a gap in a sender's nonces, never over-spends a balance and respects its byte and count
budget (the blocks built from templates are applied to the state, which asserts the same); a
replacement removes the item it replaced; the store holds exactly the pool (reopen == before).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import event, example, given
from hypothesis import strategies as st

from chain.block import Block
from chain.codec import encode
from chain.errors import ErrorCode
from chain.tx import Tx
from chain.types import COIN, AccountId
from mempool import Mempool, MempoolConfig, PoolLimits
from mempool.policy import tx_cost
from tests.support.mempool_support import (
    PARAMS,
    MemState,
    acct,
    data_unit_tx,
    learning_unit_tx,
    transfer,
    tx_block,
)

N_SENDERS = 5
CONFIG = MempoolConfig(
    tx=PoolLimits(max_count=8, max_bytes=1_400),
    data=PoolLimits(max_count=3, max_bytes=100_000),
    learning=PoolLimits(max_count=3, max_bytes=100_000),
    max_per_sender=4,
    replace_fee_bump_permille=100,
    expiry_ms=50_000,
    max_nonce_gap=2,
    max_future=4,
    sync_writes=False,
)


@dataclass(frozen=True)
class Add:
    sender: int
    nonce_delta: int  # relative to the sender's next nonce: < 0 replaces, > 0 leaves a gap
    fee: int
    kind: int  # 0 transfer, 1 data unit, 2 learning unit
    amount: int


@dataclass(frozen=True)
class Batch:
    adds: tuple[Add, ...]  # admitted with one `add_many` (one write)


@dataclass(frozen=True)
class Connect:
    max_count: int
    max_bytes: int


@dataclass(frozen=True)
class Disconnect:
    pass


@dataclass(frozen=True)
class Advance:
    ms: int


ADD = st.builds(
    Add,
    sender=st.integers(0, N_SENDERS - 1),
    nonce_delta=st.sampled_from([0, 0, 0, 0, 0, -1, -1, -2, 1, 2]),
    fee=st.integers(1, 12).map(lambda k: k * 2_000),
    kind=st.sampled_from([0, 0, 0, 1, 2]),
    amount=st.integers(1, 6).map(lambda k: k * 10_000),
)
STEP = st.one_of(
    ADD,
    ADD,
    ADD,
    ADD,
    st.builds(Batch, adds=st.lists(ADD, min_size=1, max_size=5).map(tuple)),
    st.builds(Connect, max_count=st.integers(0, 6), max_bytes=st.integers(0, 1_200)),
    st.just(Disconnect()),
    st.builds(Advance, ms=st.integers(0, 30_000)),
)


def make_tx(step: Add, nonce: int, salt: int) -> Tx:
    if step.kind == 1:
        return data_unit_tx(step.sender, nonce, fee=step.fee, salt=salt)
    if step.kind == 2:
        return learning_unit_tx(step.sender, nonce, fee=step.fee, salt=salt)
    return transfer(step.sender, nonce, fee=step.fee, amount=step.amount, memo=salt.to_bytes(4, "big"))


def check_template(mp: Mempool, state: MemState, txs: list[Tx], max_count: int, max_bytes: int) -> None:
    assert len(txs) <= max_count
    assert sum(len(encode(t)) for t in txs) <= max_bytes
    spent: dict[AccountId, int] = {}
    next_nonce: dict[AccountId, int] = {}
    for tx in txs:
        s = tx.sender_account
        expected = next_nonce.get(s, state.account(s).nonce)
        assert tx.nonce == expected, "template has a nonce gap or disorder"
        next_nonce[s] = expected + 1
        spent[s] = spent.get(s, 0) + tx_cost(tx)
        assert spent[s] <= state.account(s).balance, "template over-spends"


def check_pool(mp: Mempool, state: MemState) -> None:
    mp.check_invariants()
    stats = mp.statistics()
    for pool in stats.pools:
        assert pool.count <= pool.max_count
        assert pool.bytes <= pool.max_bytes
    for i in range(N_SENDERS):
        run = mp.pending(acct(i))
        nonces = [t.nonce for t in run]
        assert len(set(nonces)) == len(nonces), "two pending items share a nonce"
        if run:
            assert nonces == list(
                range(state.account(acct(i)).nonce, state.account(acct(i)).nonce + len(run))
            )
            assert sum(tx_cost(t) for t in run) <= state.account(acct(i)).balance


@given(steps=st.lists(STEP, min_size=25, max_size=80))
@example(  # found by hypothesis: a held future-nonce tx promoted after it had expired
    steps=[
        Add(sender=1, nonce_delta=1, fee=2000, kind=0, amount=10000),
        Advance(ms=50_000),
        Add(sender=1, nonce_delta=0, fee=2000, kind=0, amount=10000),
    ]
)
def test_invariants_hold_under_random_traffic(
    steps: list[Add | Batch | Connect | Disconnect | Advance],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = MemState.funded(N_SENDERS, balance=4 * COIN // 1000)  # 400,000 units: over-spends happen
        mp = Mempool.open(Path(tmp) / "mempool", PARAMS, CONFIG, reader=state, now_ms=0)
        now, height, salt = 0, 1, 0
        stack: list[tuple[Block, MemState]] = []  # (block, state before it)
        for step in steps:
            if isinstance(step, Add):
                salt += 1
                nonce = mp.next_nonce(acct(step.sender)) + step.nonce_delta
                if nonce < 0:
                    continue
                before = mp.pending(acct(step.sender))
                tx = make_tx(step, nonce, salt)
                evicted = mp.statistics().evicted_total
                result = mp.add(tx, now)
                event(result.name if isinstance(result, ErrorCode) else "accepted")
                if mp.statistics().evicted_total > evicted:
                    event("evicted")
                if isinstance(result, ErrorCode):
                    assert not mp.contains(tx.id)
                else:
                    assert result == tx.id
                    assert mp.contains(tx.id)
                    replaced = [t for t in before if t.nonce == nonce]
                    for old in replaced:
                        assert not mp.contains(old.id), "replaced item still pending"
                        assert tx.fee * 1000 >= old.fee * 1100
                        event("replaced")
            elif isinstance(step, Batch):
                raws, seen = [], dict[int, int]()
                for add in step.adds:
                    salt += 1
                    nonce = mp.next_nonce(acct(add.sender)) + add.nonce_delta + seen.get(add.sender, 0)
                    seen[add.sender] = seen.get(add.sender, 0) + 1
                    raws.append(encode(make_tx(add, max(nonce, 0), salt)))
                results = mp.add_many(raws, now)
                assert len(results) == len(raws)
                event("batch")
            elif isinstance(step, Connect):
                txs = mp.tx_template(step.max_bytes, step.max_count)
                check_template(mp, state, txs, step.max_count, step.max_bytes)
                block = tx_block(txs, height=height, salt=height)
                stack.append((block, state))
                state = state.apply(block)
                height += 3
                mp.on_block_connected(block, state)
                for tx in txs:
                    assert not mp.contains(tx.id), "an included tx is still pending"
            elif isinstance(step, Disconnect):
                if not stack:
                    continue
                block, state = stack.pop()
                height -= 3
                evicted = mp.statistics().evicted_total
                mp.on_block_disconnected(block, state)
                if mp.statistics().evicted_total > evicted:
                    event("evicted on reorg")
            else:
                now += step.ms
                mp.expire(now)
            check_pool(mp, state)
        mp.expire(now)  # reopening drops expired items at once; the live pool at its next expire()
        ids = set(mp.ids())
        mp.close()
        again = Mempool.open(Path(tmp) / "mempool", PARAMS, CONFIG, reader=state, now_ms=now)
        assert set(again.ids()) == ids, "the store does not hold exactly the pool"
        again.check_invariants()
        again.close()
