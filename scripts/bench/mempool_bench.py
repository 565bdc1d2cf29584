#!/usr/bin/env python3
"""Mempool benchmark: admission throughput beside the raw signature-verification rate measured in
the same run, spam rejection rates, template-building time for a full pool, and reload time.

Owns: nothing the node uses. Must not: be imported by the project.

    .venv/bin/python scripts/bench/mempool_bench.py            # full pool of 50,000 txs
    .venv/bin/python scripts/bench/mempool_bench.py --quick    # 5,000 txs, a few seconds

Everything is real: Ed25519 signatures (PyNaCl), PoW, LevelDB with synced batches. The state is a
small in-memory `StateReader` (accounts only), as in the unit tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from chain.block import Block, TxBody
from chain.codec import encode
from chain.crypto import SecretKey, account_id
from chain.header import BlockKind, Header
from chain.params import DEVNET
from chain.state.model import Account
from chain.tx import Transfer, Tx, make_tx
from chain.types import (
    COIN,
    ZERO_HASH,
    AccountId,
    Amount,
    BlockHash,
    Height,
    Nonce,
    PubKey,
    Signature,
    StateRoot,
    TimestampMs,
)
from mempool import Mempool, MempoolConfig, PoolLimits
from tests.support.mempool_support import MemState

PARAMS = DEVNET
GENESIS_LIKE_HEADER = Header(
    version=1,
    chain_id=PARAMS.chain_id,
    height=Height(1),
    kind=BlockKind.TX,
    prev_hash=BlockHash(ZERO_HASH),
    timestamp_ms=TimestampMs(1),
    proposer=PubKey(bytes(32)),
    rank=0,
    vdf_output=b"",
    vdf_proof=b"",
    body_root=ZERO_HASH,
    state_root=StateRoot(ZERO_HASH),
    parent_certificate=(),
)
T = TypeVar("T")
SINK = AccountId(b"\x77" * 20)


def flip_signature(tx: Tx) -> Tx:
    sig = bytearray(tx.signature)
    sig[40] ^= 0x10  # in S: a full verification is needed to reject it
    return dataclasses.replace(tx, signature=Signature(bytes(sig)))


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f}/s"


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 txs instead of 50,000")
    parser.add_argument("--per-sender", type=int, default=50)
    args = parser.parse_args()
    total = 5_000 if args.quick else 50_000
    n_senders = total // args.per_sender
    keys = [SecretKey.from_label(f"bench-{i}") for i in range(n_senders)]
    state = MemState({account_id(k.pubkey): Account(Amount(10_000 * COIN), Nonce(0)) for k in keys})
    print(f"mempool bench: {total:,} transfers from {n_senders:,} senders, devnet params, pid {os.getpid()}")

    t = time.perf_counter()
    txs: list[Tx] = []
    for nonce in range(args.per_sender):
        for i, k in enumerate(keys):
            fee = 1_000 + (i * 7919 + nonce * 104729) % 50_000  # varied fee rates
            txs.append(make_tx(k, PARAMS.chain_id, nonce, fee, Transfer(SINK, Amount(1_000))))
    raws = [encode(tx) for tx in txs]
    print(f"  built and signed in {time.perf_counter() - t:.1f} s (not measured below)")

    def measure(
        label: str, items: Sequence[T], work: Callable[[Sequence[T]], object], chunk: int = 500
    ) -> None:
        """Run `work` over `items` in chunks, alternating with raw Ed25519 verification of as many
        txs: both rates are measured under the same load (the box is shared), so their ratio holds."""
        t_work = t_verify = 0.0
        for i in range(0, len(items), chunk):
            part = items[i : i + chunk]
            sample = txs[i % total : i % total + len(part)]
            t_verify += timed(lambda sample=sample: [tx.signature_valid() for tx in sample])  # type: ignore[misc]
            t_work += timed(lambda part=part: work(part))  # type: ignore[misc]
        work_rate, verify_rate = len(items) / t_work, len(items) / t_verify
        ratio = work_rate / verify_rate
        print(f"  {label:<32}{work_rate:>10,.0f}/s   {ratio:5.2f} x verification ({verify_rate:,.0f}/s)")

    config = MempoolConfig(
        tx=PoolLimits(total, 64 * 1024 * 1024), max_per_sender=args.per_sender, recent_rejects=total
    )
    with tempfile.TemporaryDirectory() as tmp:
        full = Mempool.open(Path(tmp) / "full", PARAMS, config, state, now_ms=1)
        first = min(5_000, total // 2)
        rss = psutil.Process().memory_info().rss
        measure("admission, fsync per item", raws[:first], lambda part: [full.add_raw(r, 2) for r in part])
        measure(
            "add_many(100), fsync per batch",
            raws[first:],
            lambda part: [full.add_many(part[i : i + 100], 2) for i in range(0, len(part), 100)],
        )
        assert len(full) == total, len(full)
        grown = psutil.Process().memory_info().rss - rss
        print(f"  RSS growth while filling        {grown / total:>10,.0f} bytes per item")

        nosync = Mempool.open(
            Path(tmp) / "nosync", PARAMS, dataclasses.replace(config, sync_writes=False), state, 1
        )
        measure("admission, no fsync", raws, lambda part: [nosync.add_raw(r, 2) for r in part])
        nosync.close()

        # Spam: distinct bad signatures (one verification each), then the same ones again (cached).
        bad = [encode(flip_signature(tx)) for tx in txs[: min(total, 10_000)]]
        measure("reject bad signatures", bad, lambda part: [full.add_raw(raw, 3) for raw in part])
        again_s = timed(lambda: [full.add_raw(raw, 4) for raw in bad])
        print(f"  reject recently rejected        {rate(len(bad), again_s)}")
        dup_s = timed(lambda: [full.add_raw(raw, 4) for raw in raws[:10_000]])
        print(f"  reject already known            {rate(min(total, 10_000), dup_s)}")

        # Templates for a full pool: the producer's call for one TX block.
        stats = full.statistics()
        print(f"  full pool: {stats.count:,} items, {stats.bytes / 2**20:.1f} MiB")
        for max_count in (PARAMS.max_txs_per_block, 10**6):
            template: list[Tx] = []

            def build(n: int = max_count, out: list[Tx] = template) -> None:
                out[:] = full.tx_template(PARAMS.max_block_bytes, n)

            best = min(timed(build) for _ in range(5))
            size = sum(len(encode(t)) for t in template)
            print(
                f"  template (max {PARAMS.max_block_bytes:,} B, {max_count:,} txs) {best * 1000:6.1f} ms"
                f" -> {len(template):,} txs, {size:,} bytes"
            )
        stats_s = timed(full.statistics)
        print(f"  statistics() on the full pool   {stats_s * 1000:.1f} ms")

        # Chain events on the full pool: a block of the best 5,000 txs connects, then rolls back.
        txs_in = full.tx_template(PARAMS.max_block_bytes, PARAMS.max_txs_per_block)
        block = Block(GENESIS_LIKE_HEADER, TxBody(tuple(txs_in)))
        after = state.apply(block)
        connect_s = timed(lambda: full.on_block_connected(block, after))
        assert len(full) == total - len(txs_in)
        disconnect_s = timed(lambda: full.on_block_disconnected(block, state))
        assert len(full) == total
        senders = len({t.sender_account for t in txs_in})
        print(f"  block of {len(txs_in):,} txs from {senders:,} senders:")
        print(f"    on_block_connected {connect_s * 1000:.0f} ms")
        print(f"    on_block_disconnected (the txs return) {disconnect_s * 1000:.0f} ms")
        full.close()

        t = time.perf_counter()
        reopened = Mempool.open(Path(tmp) / "full", PARAMS, config, state, now_ms=5)
        reload_s = time.perf_counter() - t
        assert len(reopened) == total, len(reopened)
        reopened.close()
        print(f"  reopen + re-validate full pool  {reload_s:.2f} s ({rate(total, reload_s).strip()})")


if __name__ == "__main__":
    main()
