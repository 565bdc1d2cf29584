"""VDF benchmark: prove speed, verify cost, and the per-block consensus checks beside the VDF.

Owns: measurements only (prints a table; writes nothing). Must not: be imported by the node.

Every figure is also printed as a ratio against a baseline measured in the same run (one Ed25519
signature verification), so runs on different machines compare.

    .venv/bin/python scripts/bench/vdf_bench.py            # about 40 s on a 2-core box
    .venv/bin/python scripts/bench/vdf_bench.py --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import trio

import vdf
from chain import vrf
from chain.codec import decode, encode
from chain.consensus.election import leader_ranks
from chain.crypto import SecretKey
from chain.hashing import H
from chain.header import Attestation, BlockKind, Header
from chain.params import DEVNET, TESTNET
from chain.types import BlockHash, Hash32, Height, PubKey, StateRoot, TimestampMs
from vdf.core import clear_caches


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of `repeat` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def child_peak_rss_mib(bits: int, iterations: int) -> float:
    """Peak RSS of a fresh process that proves once (memory grows with iterations)."""
    code = (
        "import resource, vdf.core as c;"
        f"c.prove(bytes(32), {bits}, {iterations});"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations and repeats")
    args = ap.parse_args()
    iters = 20_000 if args.quick else 100_000
    repeat = 3 if args.quick else 5

    key = SecretKey.from_label("bench")
    header = Header(
        version=1,
        chain_id=DEVNET.chain_id,
        height=Height(7),
        kind=BlockKind.TX,
        prev_hash=BlockHash(H(b"parent")),
        timestamp_ms=TimestampMs(1_700_000_000_000),
        proposer=key.pubkey,
        rank=0,
        vdf_output=b"",
        vdf_proof=b"",
        body_root=Hash32(H(b"body")),
        state_root=StateRoot(H(b"state")),
        parent_certificate=(),
    )

    # Baseline: one Ed25519 verification of a signed header.
    signed = header.signed(key)
    base = best_of(signed.signature_valid, 200)
    print(f"baseline: Ed25519 header signature verify = {base * 1e6:.1f} us (ratio 1.0)\n")

    print("prove, in-process (chiavdf.prove), and through the worker process (vdf.VdfProver)")
    print(
        f"{'bits':>5} {'iters':>8} {'prove ms':>9} {'iters/s':>9} {'worker ms':>10} {'verify ms':>10}"
        f" {'x base':>8} {'cached us':>10} {'disc ms':>8}"
    )
    results: dict[int, tuple[bytes, bytes]] = {}
    for bits in (128, 256, 512, 1024):
        challenge = H(b"bench" + bytes([bits // 8]))
        t_prove = best_of(lambda b=bits, c=challenge: vdf.prove(c, b, iters), repeat)  # type: ignore[misc]
        y, pi = vdf.prove(challenge, bits, iters)
        results[bits] = (y, pi)

        async def through_worker(b: int = bits, c: bytes = challenge) -> float:
            async with vdf.VdfProver() as prover:
                await prover.prove(c, b, iters)  # start-up excluded
                t0 = time.perf_counter()
                await prover.prove(c, b, iters)
                return time.perf_counter() - t0

        t_worker = trio.run(through_worker)

        def verify_uncached(b: int = bits, c: bytes = challenge, yy: bytes = y, pp: bytes = pi) -> None:
            clear_caches()
            assert vdf.verify(c, b, iters, yy, pp)

        def disc_only(b: int = bits, c: bytes = challenge) -> None:
            clear_caches()
            vdf.discriminant(c, b)

        t_verify = best_of(verify_uncached, repeat * 4)
        t_disc = best_of(disc_only, repeat * 4)
        t_cached = best_of(lambda b=bits, c=challenge, yy=y, pp=pi: vdf.verify(c, b, iters, yy, pp), 200)  # type: ignore[misc]
        print(
            f"{bits:>5} {iters:>8} {t_prove * 1e3:>9.1f} {iters / t_prove:>9.0f} {t_worker * 1e3:>10.1f}"
            f" {t_verify * 1e3:>10.2f} {t_verify / base:>8.1f} {t_cached * 1e6:>10.2f} {t_disc * 1e3:>8.2f}"
        )

    async def start_cost() -> float:
        t0 = time.perf_counter()
        async with vdf.VdfProver() as prover:
            await prover.prove(H(b"s"), 128, 1)
        return time.perf_counter() - t0

    print(f"\nworker start + 1-iteration prove + kill: {trio.run(start_cost) * 1e3:.0f} ms")

    async def cancel_latency() -> float:
        async with vdf.VdfProver() as prover:
            await prover.prove(H(b"w"), 128, 1)  # worker started before the clock runs
            with trio.move_on_after(0.3) as scope:
                await prover.prove(H(b"c"), 1024, 10**9)
            return trio.current_time() - scope.deadline

    print(
        f"cancel of a running prove: the call returns {trio.run(cancel_latency) * 1e3:.1f} ms"
        " after its deadline (kill + reap)"
    )

    n_disc = 10 if args.quick else 40
    disc_times = []
    for i in range(n_disc):
        clear_caches()
        t0 = time.perf_counter()
        vdf.discriminant(H(b"disc" + bytes([i])), 1024)
        disc_times.append(time.perf_counter() - t0)
    disc_times.sort()
    print(
        f"discriminant creation at 1024 bits over {n_disc} challenges (a prime search, varies per challenge):"
        f" min {disc_times[0] * 1e3:.1f} ms, median {statistics.median(disc_times) * 1e3:.1f} ms,"
        f" max {disc_times[-1] * 1e3:.1f} ms"
    )

    print("\npeak memory of a proving process (RSS MiB), 1024 bits")
    for n in (10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000):
        print(f"  {n:>9} iterations: {child_peak_rss_mib(1024, n):7.1f}")

    # Per-block consensus checks a validator runs beside the VDF (PROTOCOL §4.7), at the devnet and
    # testnet VDF parameters. The certificate carries one attestation per validator (here 4 and 64).
    print("\nper-block consensus checks (a header with its VDF), ratios against the baseline")
    for params in (DEVNET, TESTNET):
        bits, n_it = params.vdf_discriminant_bits, params.vdf_iterations
        challenge = H(b"LC/vdf/1" + params.chain_id.encode() + b"parent")
        y, pi = vdf.prove(challenge, bits, n_it)
        for n_att in (4, 64):
            keys = [SecretKey.from_label(f"v{i}") for i in range(n_att)]
            cert = tuple(
                Attestation(
                    params.chain_id,
                    Height(6),
                    BlockHash(H(b"parent")),
                    Height(0),
                    BlockHash(bytes(32)),
                    k.pubkey,
                ).signed(k)
                for k in keys
            )
            h = dataclasses.replace(
                header, chain_id=params.chain_id, vdf_output=y, vdf_proof=pi, parent_certificate=cert
            ).signed(key)
            data = encode(h)

            def decode_check(d: bytes = data) -> None:
                assert not isinstance(decode(Header, d), int)

            def pow_check(hh: Header = h) -> None:
                hh.pow_valid(0)

            def sig_check(hh: Header = h) -> None:
                assert hh.signature_valid()

            def cert_check(hh: Header = h) -> None:
                assert all(a.signature_valid() for a in hh.parent_certificate)

            def vdf_check(c: bytes = challenge, b: int = bits, n: int = n_it, hh: Header = h) -> None:
                clear_caches()
                assert vdf.verify(c, b, n, hh.vdf_output, hh.vdf_proof)

            eligible = [(k.pubkey, 1000 * 10**10) for k in keys]
            alpha = H(b"LC/vrf-alpha/1" + params.chain_id.encode() + b"parent seed")
            vrf_proof = vrf.prove(key.seed, alpha)

            def vrf_check(a: bytes = alpha, proof: bytes = vrf_proof) -> None:
                assert vrf.verify(key.pubkey, a, proof) is not None  # uncached (election caches it)

            def ranks_check(hh: Header = h, el: list[tuple[PubKey, int]] = eligible) -> None:
                assert leader_ranks(hh.vdf_output, el)

            def vdf_check_disc_cached(
                c: bytes = challenge, b: int = bits, n: int = n_it, hh: Header = h
            ) -> None:
                clear_caches(discriminants=False)
                assert vdf.verify(c, b, n, hh.vdf_output, hh.vdf_proof)

            rows = [
                ("decode + canonical", best_of(decode_check, 50)),
                (f"leader ranks ({n_att} validators)", best_of(ranks_check, 20)),
                ("pow + header signature", best_of(pow_check, 50) + best_of(sig_check, 50)),
                ("VRF proof (RFC 9381 ECVRF verify)", best_of(vrf_check, 50)),
                (f"certificate ({n_att} attestation signatures)", best_of(cert_check, 10)),
                ("VDF verify, discriminant cached", best_of(vdf_check_disc_cached, 20)),
                ("VDF verify (uncached)", best_of(vdf_check, 20)),
            ]
            non_vdf = sum(t for name, t in rows if not name.startswith("VDF"))
            vdf_t = rows[-1][1]
            print(f"  {params.network} ({bits} bits, {n_it} iterations), {n_att} validators:")
            for name, t in rows:
                print(f"    {name:<42} {t * 1e3:8.3f} ms  {t / base:8.1f} x base")
            print(
                f"    {'checks beside the VDF, total':<42} {non_vdf * 1e3:8.3f} ms"
                f"  {non_vdf / base:8.1f} x base"
                f"  ({non_vdf / vdf_t:.2f} x the VDF verify)"
            )
            t_make = best_of(lambda c=challenge, b=bits, n=n_it: vdf.prove(c, b, n), 3)  # type: ignore[misc]
            print(
                f"    {'VDF prove (the producer waits for it)':<42} {t_make * 1e3:8.1f} ms"
                f"  {t_make / base:8.0f} x base"
            )


if __name__ == "__main__":
    main()
