"""vdf.prover: chiavdf in a child process, cancelled at once, restarted with backoff (PROTOCOL §4.2)."""

from __future__ import annotations

import os
import signal
import sys
import time

import psutil
import pytest
import trio

import vdf
from chain.hashing import H
from tests.support.waiting import wait_until
from vdf.prover import VdfProver
from vdf.worker import handle

BITS = 128
ITERS = 2_000
LONG = (1024, 10**9)  # hours of work: only a kill ends it


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


async def test_prover_matches_in_process_prove_and_reuses_its_worker() -> None:
    challenge = H(b"prover")
    async with VdfProver() as prover:
        first = await prover.prove(challenge, BITS, ITERS)
        second = await prover.prove(H(b"prover 2"), BITS, ITERS)
        stats = prover.statistics()
    assert first == vdf.prove(challenge, BITS, ITERS)
    assert vdf.verify(challenge, BITS, ITERS, *first)
    assert vdf.verify(H(b"prover 2"), BITS, ITERS, *second)
    assert (stats.proofs, stats.starts, stats.crashes, stats.cancelled) == (2, 1, 0, 0)


async def test_cancel_kills_the_worker_at_once_and_the_next_prove_works() -> None:
    async with VdfProver() as prover:
        pids: list[int] = []
        elapsed = 0.0
        async with trio.open_nursery() as nursery:

            async def long_prove() -> None:
                await prover.prove(H(b"long"), *LONG)

            nursery.start_soon(long_prove)
            await wait_until(lambda: prover.pid is not None and prover.statistics().busy)
            pid = prover.pid
            assert pid is not None
            pids.append(pid)
            # chiavdf is well into the computation once the child has burnt CPU on it
            await wait_until(lambda: sum(psutil.Process(pid).cpu_times()[:2]) > 0.3)
            t0 = time.monotonic()
            nursery.cancel_scope.cancel()
        elapsed = time.monotonic() - t0
        assert elapsed < 1.0
        assert gone(pids[0])
        assert prover.pid is None
        out = await prover.prove(H(b"after"), BITS, ITERS)
        assert vdf.verify(H(b"after"), BITS, ITERS, *out)
        stats = prover.statistics()
    assert (stats.cancelled, stats.starts, stats.crashes) == (1, 2, 0)


async def test_move_on_after_bounds_a_prove() -> None:
    async with VdfProver() as prover:
        with trio.move_on_after(0.5) as scope:
            await prover.prove(H(b"deadline"), *LONG)
        assert scope.cancelled_caught
        assert prover.statistics().cancelled == 1


async def test_a_worker_killed_mid_proof_is_restarted_and_the_proof_still_arrives() -> None:
    challenge = H(b"crash")
    result: list[tuple[bytes, bytes]] = []
    async with VdfProver(backoff_initial_s=0.01) as prover:
        async with trio.open_nursery() as nursery:

            async def prove() -> None:
                result.append(await prover.prove(challenge, BITS, 3_000_000))

            nursery.start_soon(prove)
            await wait_until(lambda: prover.pid is not None and prover.statistics().busy)
            first_pid = prover.pid
            assert first_pid is not None
            os.kill(first_pid, signal.SIGKILL)  # an outside crash, not a cancel
        stats = prover.statistics()
    assert vdf.verify(challenge, BITS, 3_000_000, *result[0])
    assert (stats.crashes, stats.starts, stats.cancelled, stats.proofs) == (1, 2, 0, 1)


async def test_a_worker_that_keeps_dying_gives_vdf_error_after_backoff() -> None:
    # A "python" that exits at once: every start is a crash.
    prover = VdfProver(python="/bin/false", max_attempts=3, backoff_initial_s=0.05)
    t0 = time.monotonic()
    with pytest.raises(vdf.VdfError, match="crashed 3 times"):
        await prover.prove(H(b"x"), BITS, ITERS)
    assert time.monotonic() - t0 >= 0.05 + 0.1  # backoff 0.05 then 0.1 before attempts 2 and 3
    assert prover.statistics().crashes == 3
    await prover.aclose()


async def test_bad_parameters_are_refused_without_a_process() -> None:
    async with VdfProver() as prover:
        with pytest.raises(vdf.VdfError):
            await prover.prove(H(b"x"), 2048, ITERS)
        with pytest.raises(vdf.VdfError):
            await prover.prove(H(b"x"), BITS, 0)
        assert prover.statistics().starts == 0


async def test_closed_prover_refuses() -> None:
    prover = VdfProver()
    await prover.aclose()
    with pytest.raises(vdf.VdfError, match="closed"):
        await prover.prove(H(b"x"), BITS, ITERS)


async def test_prove_in_process_one_shot_leaves_no_child() -> None:
    before = {c.pid for c in psutil.Process().children()}
    out = await vdf.prove_in_process(H(b"one shot"), BITS, ITERS)
    assert vdf.verify(H(b"one shot"), BITS, ITERS, *out)
    assert {c.pid for c in psutil.Process().children() if not gone(c.pid)} <= before


def test_worker_line_protocol() -> None:
    ok = handle(f"prove {H(b'w').hex()} {BITS} {ITERS}")
    tag, y, pi = ok.split()
    assert tag == "ok"
    assert vdf.verify(H(b"w"), BITS, ITERS, bytes.fromhex(y), bytes.fromhex(pi))
    assert handle("prove zz 128 10").startswith("err ")
    assert handle(f"prove {H(b'w').hex()} 2048 10").startswith("err ")
    assert handle("hello").startswith("err ")


def test_worker_module_runs_as_a_script() -> None:
    import subprocess

    request = f"prove {H(b's').hex()} {BITS} {ITERS}\n"
    out = subprocess.run(
        [sys.executable, "-m", "vdf.worker"], input=request, capture_output=True, text=True, timeout=30
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "ready"
    assert lines[1].startswith("ok ")
