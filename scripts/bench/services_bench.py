#!/usr/bin/env python3
"""Consensus-services benchmark: the producer's TX body (template + transition) and the evidence
reporter's cost per header and per vote.

Owns: measurements only (prints a table; writes only a temporary directory). Must not: be imported
by the project.

Ratios are against a baseline measured in the same run: verifying the Ed25519 signatures of the
block's txs.

- "old body": `tx_template` without `accept`, then `apply_block` verifying every signature (the
  producer before it applied each candidate; a single bad tx then emptied the block);
- "new body": `Producer.tx_template` (each candidate `apply_tx`'d on the block overlay) then
  `apply_block_detailed(verify_signatures=False)` (the mempool checked them);
- "block import": the chain service validating a full TX block as it did before issue 11 (body
  rules verifying every signature, then the transition verifying them all again), a received block
  now (the transition told the body rules checked them), the producer's own block with its
  effects handed over (the transition is not run again) but its signatures verified by the body
  rules (before the own-block flag), and the producer's own block now (body rules told the mempool
  verified every signature at admission: no signature verified at all);
- "tx submission": what a submitted tx cost before issue 11 (the RPC decoded it and checked its
  signature, then the mempool did both again) and now (`submit_tx`: the mempool's `add_raw` only).

    .venv/bin/python scripts/bench/services_bench.py            # 2,000 txs from 500 senders
    .venv/bin/python scripts/bench/services_bench.py --quick    # 200 txs from 50 senders
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import vdf
from chain.block import Block, TxBody
from chain.codec import decode, encode
from chain.consensus.duties import proposal_duty
from chain.consensus.validation import check_state_root, validate_block
from chain.crypto import SecretKey, account_id
from chain.errors import ErrorCode
from chain.genesis import Allocation
from chain.header import Attestation
from chain.params import DEVNET
from chain.state.transition import BlockEffects, apply_block, apply_block_detailed
from chain.store import BlockStore
from chain.tx import Transfer, Tx, make_tx
from chain.types import COIN, ZERO_SIGNATURE, Amount, BlockHash, Height, TimestampMs
from linguachaind.services.chain_service import ChainService
from linguachaind.services.evidence import EvidenceReporter
from linguachaind.services.producer import Producer
from linguachaind.services.submit import TxSubmitter
from linguachaind.slashing_protection import SlashingProtection
from mempool import DEFAULT_CONFIG, Mempool
from tests.support.chainbuilders import GENESIS_TIME_MS, dev_genesis, make_block
from tests.support.doubles import FakeClock, NullNetwork
from tests.support.services_support import vdf_for


class _NoVdf:
    async def get(self, prev_hash: bytes) -> tuple[bytes, bytes]:
        raise AssertionError("not used")


def timed(fn: Callable[[], object], repeat: int = 3) -> float:
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
    n_senders, per_sender = (50, 4) if args.quick else (500, 4)
    n_txs = n_senders * per_sender
    base, keys = dev_genesis(2)
    senders = [SecretKey.from_label(f"bench{i}") for i in range(n_senders)]
    allocs = tuple(
        sorted(
            (Allocation(account_id(k.pubkey), Amount(100 * COIN)) for k in senders), key=lambda a: a.account
        )
    )
    genesis = dataclasses.replace(base, allocations=allocs)
    txs = [
        make_tx(k, DEVNET.chain_id, n, 1_000 + i, Transfer(account_id(keys["validator1"].pubkey), Amount(1)))
        for i, k in enumerate(senders)
        for n in range(per_sender)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        store = BlockStore.open(Path(tmp) / "chain", genesis)
        clock = FakeClock(GENESIS_TIME_MS + 100_000)
        config = dataclasses.replace(DEFAULT_CONFIG, sync_writes=False)
        pool = Mempool.open(Path(tmp) / "mempool", DEVNET, config, store.reader(), clock.now_ms())
        pool.add_many([encode(t) for t in txs], clock.now_ms())
        assert len(pool) == n_txs, len(pool)
        chain = ChainService(store, clock, mempool=pool)
        key = keys["validator0"]
        protection = SlashingProtection.open(Path(tmp) / "sp", key.pubkey)
        producer = Producer(chain, _NoVdf(), key, protection, clock, NullNetwork(), mempool=pool)
        g = chain.tip_header()
        draft = make_block(g, TxBody(), key, bytes(32), GENESIS_TIME_MS + 1_000).header
        reader = store.reader()
        budget = DEVNET.max_block_bytes - 4096

        baseline = timed(lambda: [t.signature_valid() for t in txs])

        def old() -> None:
            body = TxBody(tuple(pool.tx_template(budget, DEVNET.max_txs_per_block)))
            assert isinstance(apply_block(DEVNET, reader, Block(draft, body)), BlockEffects)

        def new() -> None:
            body = TxBody(tuple(producer.tx_template(reader, draft)))
            assert len(body.txs) == n_txs
            out = apply_block_detailed(DEVNET, reader, Block(draft, body), verify_signatures=False)
            assert isinstance(out, BlockEffects)

        t_old, t_new = timed(old), timed(new)
        t_import_before, t_import_received, t_import_own_sigs, t_import_own = block_import(
            chain, producer, key
        )
        t_submit_before, t_submit_now = tx_submission(Path(tmp), store, [encode(t) for t in txs], clock)

        reporter = EvidenceReporter(store, key, pool, TxSubmitter(pool, clock))  # its hooks, called directly
        header = dataclasses.replace(
            draft, timestamp_ms=TimestampMs(draft.timestamp_ms + 1), signature=ZERO_SIGNATURE
        )
        header = header.mined(DEVNET.pow_bits_header).signed(key)
        votes = [  # one per height: no fault, the common path
            Attestation(
                DEVNET.chain_id,
                Height(1 + i),
                BlockHash(bytes(32)),
                Height(0),
                BlockHash(bytes(32)),
                key.pubkey,
            ).signed(key)
            for i in range(2_000)
        ]

        t_header = timed(lambda: reporter.saw_header(header, None), repeat=200)

        def see_votes() -> None:
            for v in votes:
                reporter.saw_attestation(v, True)

        t_vote = timed(see_votes) / len(votes)
        # The baseline again at the end, the faster of the two kept: on a shared box the load moves
        # during a run, and a baseline caught in a busy moment inflated every ratio below.
        baseline = min(baseline, timed(lambda: [t.signature_valid() for t in txs]))
        protection.close()
        pool.close()
        store.close()
    print(f"services bench: {n_txs} transfers from {n_senders} senders, devnet params")
    print(f"  baseline: verify {n_txs} tx signatures      {baseline * 1000:8.1f} ms")
    print(f"  old body (template + apply, signatures) {t_old * 1000:8.1f} ms  {t_old / baseline:5.2f} x")
    print(f"  new body (accept=apply_tx + apply)      {t_new * 1000:8.1f} ms  {t_new / baseline:5.2f} x")
    per_sig = baseline / n_txs
    one = "x one signature"
    print(
        f"  reporter: one header seen               {t_header * 1e6:8.1f} us  {t_header / per_sig:5.2f} {one}"
    )
    print(f"  reporter: one vote seen                 {t_vote * 1e6:8.1f} us  {t_vote / per_sig:5.2f} {one}")
    for label, t in (
        ("block import, before issue 11", t_import_before),
        ("block import now, a received block", t_import_received),
        ("own block, signatures checked (before)", t_import_own_sigs),
        ("block import now, our own block", t_import_own),
        (f"{n_txs} txs submitted, before (RPC checks)", t_submit_before),
        (f"{n_txs} txs submitted, now (submit_tx)", t_submit_now),
    ):
        print(f"  {label:<39} {t * 1000:8.1f} ms  {t / baseline:5.2f} x")


def block_import(
    chain: ChainService, producer: Producer, key: SecretKey
) -> tuple[float, float, float, float]:
    """Validating a full block before issue 11 (validate_block, then apply_block verifying every
    signature again), a received block now, our own block with its signatures checked by the body
    rules (before the own-block flag), our own block now. Validation only: nothing is connected."""
    parent = chain.tip_header()
    output, proof = vdf_for(parent)
    duty = proposal_duty(DEVNET, parent, chain.reader(), output, key.pubkey)
    assert duty is not None
    built = producer._build(parent, duty, output, proof)
    assert built is not None
    block, effects = built
    assert effects is not None
    parent_state = chain.state(parent.hash)
    assert parent_state is not None

    def before() -> None:
        assert validate_block(DEVNET, chain, block, chain.clock.now_ms(), vdf.verify) is None
        applied = apply_block(DEVNET, parent_state, block)
        assert isinstance(applied, BlockEffects)
        assert check_state_root(block, applied.state_root) is None

    def own_with_signatures() -> None:  # the own-block path before the flag
        assert validate_block(DEVNET, chain, block, chain.clock.now_ms(), vdf.verify) is None
        assert check_state_root(block, effects.state_root) is None

    before()
    own_with_signatures()
    assert isinstance(chain._validate(block, None), BlockEffects)
    assert isinstance(chain._validate(block, effects), BlockEffects)
    received = timed(lambda: chain._validate(block, None))
    own_sigs = timed(own_with_signatures)
    return timed(before), received, own_sigs, timed(lambda: chain._validate(block, effects))


def tx_submission(tmp: Path, store: BlockStore, raws: list[bytes], clock: FakeClock) -> tuple[float, float]:
    """Admitting `raws` into a fresh pool: the RPC's checks first, then the mempool (before), or the
    mempool alone (now: `TxSubmitter.submit_tx` is `add_raw` plus a queue put)."""
    config = dataclasses.replace(DEFAULT_CONFIG, sync_writes=False)

    def before() -> None:
        pool = Mempool.open(tmp / "pool-before", DEVNET, config, store.reader(), clock.now_ms())
        for raw in raws:
            tx = decode(Tx, raw, max_bytes=DEVNET.max_tx_bytes)
            assert not isinstance(tx, ErrorCode)
            assert tx.chain_id == DEVNET.chain_id
            assert tx.signature_valid()
            assert not isinstance(pool.add_raw(raw, clock.now_ms()), ErrorCode)
        pool.close()

    def now() -> None:
        pool = Mempool.open(tmp / "pool-now", DEVNET, config, store.reader(), clock.now_ms())
        for raw in raws:
            assert not isinstance(pool.add_raw(raw, clock.now_ms()), ErrorCode)
        pool.close()

    t_before, t_now = timed(before, repeat=1), timed(now, repeat=1)
    return t_before, t_now


if __name__ == "__main__":
    main()
