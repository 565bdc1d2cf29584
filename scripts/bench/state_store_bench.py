#!/usr/bin/env python3
"""State transition and block store benchmark: applying and connecting a full TX block, rolling it
back, reopening the store, and the incremental `state_root` against a full recomputation.

Owns: measurements only (prints a table; writes only a temporary directory). Must not: be imported
by the project.

Every figure is also printed as a ratio against a baseline measured in the same run (verifying the
Ed25519 signatures of the block's txs), so runs on different machines compare.

    .venv/bin/python scripts/bench/state_store_bench.py            # 100,000 accounts, 2,000 txs
    .venv/bin/python scripts/bench/state_store_bench.py --quick    # 5,000 accounts, 200 txs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from chain.block import TxBody
from chain.crypto import SecretKey, account_id
from chain.genesis import Allocation, Genesis
from chain.hashing import H
from chain.state.root import StateHasher
from chain.state.transition import BlockEffects, apply_block, apply_block_detailed
from chain.store import BlockStore
from chain.tx import Transfer, make_tx
from chain.types import COIN, AccountId, Amount
from tests.support.chainbuilders import dev_genesis, make_block


def timed(fn: Callable[[], object], repeat: int = 3) -> float:
    """Best wall time of `repeat` runs, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n_accounts, n_txs = (5_000, 200) if args.quick else (100_000, 2_000)

    base, _ = dev_genesis(n_validators=1, funded=())
    senders = [SecretKey.from_label(f"bench{i}") for i in range(n_txs)]
    allocs = [Allocation(account_id(k.pubkey), Amount(100 * COIN)) for k in senders]
    allocs += [
        Allocation(AccountId(H(i.to_bytes(8, "big"))[:20]), Amount(COIN)) for i in range(n_accounts - n_txs)
    ]
    genesis = Genesis(
        params=base.params,
        timestamp_ms=base.timestamp_ms,
        allocations=tuple(sorted(allocs, key=lambda a: a.account)),
        validators=base.validators,
        base_model=base.base_model,
    )
    params = genesis.params
    proposer = SecretKey.from_label("validator0")
    sink = AccountId(b"\x77" * 20)
    txs = tuple(make_tx(k, params.chain_id, 0, params.min_fee, Transfer(sink, Amount(COIN))) for k in senders)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chain"
        t0 = time.perf_counter()
        store = BlockStore.open(path, genesis)
        create_s = time.perf_counter() - t0
        parent = store.get_block_at(0)
        assert parent is not None
        draft = make_block(parent.header, TxBody(txs), proposer, bytes(32), parent.header.timestamp_ms + 1000)
        effects = apply_block(params, store.reader(), draft)
        assert isinstance(effects, BlockEffects)
        block = make_block(
            parent.header, TxBody(txs), proposer, effects.state_root, draft.header.timestamp_ms
        )

        baseline = timed(lambda: all(tx.signature_valid() for tx in txs))
        rows: list[tuple[str, float]] = [(f"verify {n_txs} tx signatures (baseline)", baseline)]
        rows.append(
            (
                f"apply_block, {n_txs} transfers, signatures checked",
                timed(lambda: apply_block(params, store.reader(), block)),
            )
        )
        rows.append(
            (
                "apply_block, signatures already checked",
                timed(lambda: apply_block_detailed(params, store.reader(), block, verify_signatures=False)),
            )
        )
        effects = apply_block(params, store.reader(), block)
        assert isinstance(effects, BlockEffects)

        def connect_and_disconnect() -> None:
            assert isinstance(effects, BlockEffects)
            store.connect_block(block, effects)
            store.disconnect_tip()

        rows.append(("connect_block + disconnect_tip (2 synced batches)", timed(connect_and_disconnect)))
        rows.append(
            ("state_root of the block, incremental", timed(lambda: store.hasher.root_after(effects.writes)))
        )
        state_items = list(store.db.iterate(b"S"))
        rows.append(
            (
                f"state_root from scratch ({len(state_items)} keys)",
                timed(lambda: StateHasher(state_items).root, 1),
            )
        )
        store.connect_block(block, effects)
        store.close()
        t0 = time.perf_counter()
        store = BlockStore.open(path, genesis)
        rows.append((f"reopen the store (load {len(state_items)} leaf hashes)", time.perf_counter() - t0))
        assert store.tip[1] == 1
        store.close()

    print(
        f"state/store benchmark: {n_accounts} accounts, {n_txs} txs per block "
        f"(store created in {create_s:.2f} s)"
    )
    print(f"{'measurement':62} {'ms':>10} {'x baseline':>11}")
    for name, seconds in rows:
        print(f"{name:62} {seconds * 1000:10.1f} {seconds / baseline:11.2f}")


if __name__ == "__main__":
    main()
