"""The gossip soak with one OS process per node (as real nodes run), driven by `scripts/p2p_soak.py`.

Owns: `node_main` (one node: listen on a given port, dial its neighbours, publish its share of the
load on a shared wall-clock schedule, record what arrives, write a JSON report) and `run_soak_procs`
(start the core nodes, let visitor processes join and be killed at random, collect the reports into
a `SoakReport`). Payloads are checked as in `tests.support.soak`. Must not: be imported by the
project's packages.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import trio

from p2p.messages.gossip import GossipKind
from p2p.testing import open_test_network
from tests.support.soak import SoakReport, _check, _payload, make_report, node_counters, warm_up_s
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def node_main(spec: dict[str, Any]) -> None:
    """One soak node. `spec`: index, port, dial (addresses), core, rate, start_at, stop_at,
    drain_until (wall-clock seconds), seed, out (report path), publish (bool)."""
    received: dict[int, float] = {}
    published: dict[int, float] = {}
    rng = random.Random(spec["seed"] * 1000 + spec["index"])
    async with open_test_network() as net:
        node = net.add_node(port=spec["port"])
        node.validator.keep_accepted = False
        node.validator.block_check = _check
        await net.start(node)
        await trio.Path(spec["out"] + ".addr").write_text(node.addr)

        async def drain() -> None:
            async for msg in node.svc.inbound:
                received.setdefault(int.from_bytes(msg.data[:8], "big"), time.time())

        max_queue = 0
        rss_mb: dict[str, float] = {}  # resident memory once warmed up, and at the end of the load
        process = psutil.Process()

        async def watch_queues() -> None:
            nonlocal max_queue
            while True:
                await trio.sleep(1.0)
                max_queue = max(max_queue, node.svc.statistics().gossip.outbound_queued)
                now = time.time()
                if now >= spec["warm_at"] and "warm" not in rss_mb:
                    rss_mb["warm"] = process.memory_info().rss / 2**20
                if now <= spec["stop_at"]:
                    rss_mb["end"] = process.memory_info().rss / 2**20

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            nursery.start_soon(watch_queues)
            for addr in spec["dial"]:
                with trio.move_on_after(10):
                    while await node.svc.add_peer(addr) is not None:  # noqa: ASYNC110 - a retry
                        await trio.sleep(0.2)
            if spec["publish"]:
                await wait_until(lambda: node.svc.gossip.mesh_size(GossipKind.BLOCK) > 0, 30)
                await trio.sleep(max(0.0, spec["start_at"] - time.time()))
                core, rate = spec["core"], spec["rate"]
                k = 0
                while True:
                    seq = k * core + spec["index"]
                    at = spec["start_at"] + seq / rate
                    if at >= spec["stop_at"] or time.time() >= spec["stop_at"]:
                        break  # a publisher behind schedule stops on time: the report shows the shortfall
                    await trio.sleep(max(0.0, at - time.time()))
                    raw = _payload(seq, rng.randint(spec["min_kb"] * 1024, spec["max_kb"] * 1024))
                    published[seq] = time.time()
                    await node.svc.publish_block(raw)
                    k += 1
            await trio.sleep(max(0.0, spec["drain_until"] - time.time()))
            report = {
                "index": spec["index"],
                "published": published,
                "received": received,
                **node_counters(node),
                "max_outbound_queue": max_queue,
                "rss_mb": rss_mb,
            }
            await trio.Path(spec["out"]).write_text(json.dumps(report))
            nursery.cancel_scope.cancel()


def _spawn(spec: dict[str, Any]) -> subprocess.Popen[bytes]:
    with open(spec["out"] + ".log", "wb") as log:  # a crashed node leaves its traceback here
        return subprocess.Popen(
            [sys.executable, "-m", "tests.support.soak_procs", json.dumps(spec)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,  # `-m tests.support...` resolves from the repository root, wherever we run
        )


def _wait_file(path: Path, timeout_s: float) -> str:
    deadline = time.time() + timeout_s
    while not path.exists():
        if time.time() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.05)
    return path.read_text()


def run_soak_procs(
    duration_s: float = 300.0,
    *,
    core: int = 6,
    visitors: int = 2,
    rate: float = 50.0,
    min_kb: int = 1,
    max_kb: int = 200,
    seed: int = 1,
    drain_s: float = 30.0,
) -> SoakReport:
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="lc-soak-"))
    ports = [_free_port() for _ in range(core)]
    start_at = time.time() + 8.0 + core
    stop_at = start_at + duration_s
    drain_until = stop_at + drain_s
    procs: list[subprocess.Popen[bytes]] = []
    addrs: list[str] = []
    base: dict[str, Any] = {"core": core, "rate": rate, "min_kb": min_kb, "max_kb": max_kb, "seed": seed}
    base |= {"start_at": start_at, "stop_at": stop_at, "drain_until": drain_until}
    base["warm_at"] = start_at + warm_up_s(duration_s)
    for i in range(core):
        # the dials form a ring; peer exchange at the handshake then connects every core node to
        # every other, as six real nodes would be: a full mesh, where duplicates are the cost
        dial = [addrs[i - 1]] if i > 0 else []
        if i == core - 1 and core > 2:
            dial.append(addrs[0])
        spec = {**base, "index": i, "port": ports[i], "dial": dial, "out": str(tmp / f"n{i}.json")}
        procs.append(_spawn({**spec, "publish": True}))
        addrs.append(_wait_file(Path(spec["out"] + ".addr"), 30))
    joins = 0
    guests: dict[int, subprocess.Popen[bytes]] = {}
    try:
        joins = _churn(guests, addrs, base, tmp, visitors, rng, stop_at)
        for proc in procs:
            proc.wait(timeout=drain_s + 120)
    finally:
        for proc in [*procs, *guests.values()]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return _summarise(
        [json.loads((tmp / f"n{i}.json").read_text()) for i in range(core)], core, joins, duration_s, rate
    )


def _churn(
    guests: dict[int, subprocess.Popen[bytes]],
    addrs: list[str],
    base: dict[str, Any],
    tmp: Path,
    visitors: int,
    rng: random.Random,
    stop_at: float,
) -> int:
    """Visitors join (a new process dialing two core nodes) and leave (SIGKILL) every 2-6 s."""
    joins = 0
    while time.time() < stop_at - 10:
        slot = rng.randrange(visitors)
        proc = guests.pop(slot, None)
        if proc is None:
            spec = {**base, "index": 100 + joins, "port": 0, "dial": rng.sample(addrs, 2)}
            spec |= {"out": str(tmp / f"v{joins}.json"), "publish": False}
            guests[slot] = _spawn(spec)
            joins += 1
        else:
            proc.send_signal(signal.SIGKILL)  # leaving without goodbye, the worst case
            proc.wait()
        time.sleep(rng.uniform(2.0, 6.0))
    for proc in guests.values():
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    guests.clear()
    return joins


def _summarise(
    reports: list[dict[str, Any]], core: int, joins: int, duration_s: float, rate: float
) -> SoakReport:
    sent = {int(s): t for r in reports for s, t in r["published"].items()}
    latencies: list[float] = []
    expected = 0
    for r in reports:
        got = {int(s): t for s, t in r["received"].items()}
        for s, t in sent.items():
            if s % core == r["index"]:
                continue
            expected += 1
            if s in got:
                latencies.append((got[s] - t) * 1000)
    return make_report(
        duration_s=duration_s,
        rate=rate,
        published=len(sent),
        expected=expected,
        latencies=latencies,
        counters=reports,
        duplicates=0,
        max_queue=max(r["max_outbound_queue"] for r in reports),
        rss_max=max(r["rss_mb"].get("end", 0.0) for r in reports),
        rss_growth=max(r["rss_mb"].get("end", 0.0) - r["rss_mb"].get("warm", 0.0) for r in reports),
        joins=joins,
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    trio.run(node_main, json.loads(sys.argv[1]))
