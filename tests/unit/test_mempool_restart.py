"""Restart test: a real child process fills the mempool and is killed with SIGKILL mid-stream; on
reopen every item it reported as accepted is back, and the items the new tip makes invalid are
gone from the pool and from disk."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chain.codec import encode
from chain.errors import ConfigError, StoreError
from chain.store.leveldb import LevelDB
from chain.types import COIN
from mempool import Mempool, MempoolConfig
from mempool.store import ITEM_PREFIX, SCHEMA_KEY, MempoolStore
from tests.support.mempool_support import CHILD_CONFIG, CHILD_SENDERS, PARAMS, MemState, acct, transfer

REPO = Path(__file__).resolve().parents[2]
TARGET = 400  # accepted items reported before the kill
DEADLINE_S = 60.0


def run_child_and_kill(datadir: Path, sync: bool) -> list[tuple[int, int, str]]:
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.mempool_support",
            "child",
            str(datadir),
            "sync" if sync else "nosync",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reported: list[tuple[int, int, str]] = []
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + DEADLINE_S
        while len(reported) < TARGET:
            assert time.monotonic() < deadline, "the child did not report enough items in time"
            line = child.stdout.readline()
            if not line:
                stderr = child.stderr.read() if child.stderr else ""
                raise AssertionError(f"the child exited early: {stderr[-2000:]}")
            sender, nonce, tx_id = line.split()
            reported.append((int(sender), int(nonce), tx_id))
        os.kill(child.pid, signal.SIGKILL)  # while it is still admitting and writing
    finally:
        child.kill()
        child.wait(timeout=30)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL
    return reported


@pytest.mark.parametrize("sync", [True, False], ids=["fsync", "no-fsync"])
def test_sigkill_loses_nothing_accepted_and_reload_drops_what_became_invalid(
    tmp_path: Path, sync: bool
) -> None:
    """Without fsync too: each batch is written to the OS before `add` returns, and SIGKILL does
    not lose the page cache (a power loss would)."""
    datadir = tmp_path / "mempool"
    reported = run_child_and_kill(datadir, sync)

    # Same tip: everything reported is back.
    state = MemState.funded(CHILD_SENDERS)
    mp = Mempool.open(datadir, PARAMS, CHILD_CONFIG, reader=state, now_ms=int(time.time() * 1000))
    ids = {i.hex() for i in mp.ids()}
    assert {r[2] for r in reported} <= ids
    mp.check_invariants()
    mp.close()

    # A new tip: sender 0 used nonces 0..4 elsewhere, sender 1 was emptied.
    moved = state.with_account(acct(0), 1_000 * COIN, 5).with_account(acct(1), 0, 0)
    mp = Mempool.open(datadir, PARAMS, CHILD_CONFIG, reader=moved, now_ms=int(time.time() * 1000))
    ids = {i.hex() for i in mp.ids()}
    for sender, nonce, tx_id in reported:
        valid = sender > 1 or (sender == 0 and nonce >= 5)
        assert (tx_id in ids) == valid, (sender, nonce)
    assert all(tx.nonce >= 5 for tx in mp.pending(acct(0)))
    assert mp.pending(acct(1)) == []
    count = len(mp)
    mp.close()
    store = MempoolStore(datadir)
    assert store.count() == count  # the invalid ones are gone from disk too
    store.close()


def test_reload_drops_corrupt_mismatched_and_expired_records(tmp_path: Path) -> None:
    datadir = tmp_path / "mempool"
    state = MemState.funded(3)
    config = dataclasses.replace(CHILD_CONFIG, expiry_ms=10_000)
    mp = Mempool.open(datadir, PARAMS, config, state, 1_000)
    good, old = transfer(0, 0), transfer(1, 0)
    assert mp.add(good, 5_000) == good.id
    assert mp.add(old, 1_000) == old.id
    mp.close()
    db = LevelDB(datadir)
    forged = encode(transfer(2, 0))
    db.write([(ITEM_PREFIX + b"\x01" * 32, b"\x00" * 3), (ITEM_PREFIX + b"\x02" * 32, bytes(8) + forged)])
    db.close()
    mp = Mempool.open(datadir, PARAMS, config, state, 12_000)  # `old` expired at 11,000
    assert mp.ids() == [good.id]
    mp.close()
    store = MempoolStore(datadir)
    assert store.count() == 1
    store.close()


def test_store_refuses_a_newer_schema(tmp_path: Path) -> None:
    db = LevelDB(tmp_path / "mempool")
    db.write([(SCHEMA_KEY, b"\x07")])
    db.close()
    with pytest.raises(StoreError, match="schema"):
        MempoolStore(tmp_path / "mempool")
    with pytest.raises(ConfigError, match="max_per_sender"):
        Mempool.open(tmp_path / "other", PARAMS, MempoolConfig(max_per_sender=0), MemState.funded(1), 0)
