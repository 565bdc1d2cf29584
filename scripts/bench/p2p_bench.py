#!/usr/bin/env python3
"""p2p benchmark (docs/networking.md): gossip latency to 10 nodes and blob throughput, beside raw
loopback TCP measured in the same run.

    .venv/bin/python scripts/bench/p2p_bench.py [--nodes 10] [--blob-mib 32] [--relay 300] [--json]

Gossip: node 0 publishes messages of 1 KB and 256 KB, one at a time, on the block topic of a network
where each node dials 3 others; latency = publish to arrival in each other node's inbound queue.
Relay: on a line of 3 nodes, node 0 publishes `--relay` messages of 100 KB back to back; throughput =
messages (and MB) per second arriving at node 2, through one relay. Blob: a fresh node downloads a
blob from 1 peer, then another fresh node from 3 peers. Baseline: one trio TCP connection on
127.0.0.1 moving the blob's number of bytes. All nodes share this one process (and its one core),
like the integration tests.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import statistics
import sys
import time
from typing import Any

import trio
import trio.lowlevel

from p2p.messages.gossip import GossipKind
from p2p.testing import NetNode, TestNetwork, open_test_network, wait_for


async def raw_tcp_mb_s(total: int) -> float:
    """Throughput of one plain TCP stream on loopback, bytes moved by trio."""
    done = trio.Event()
    received = 0

    async def handler(stream: trio.SocketStream) -> None:
        nonlocal received
        while received < total:
            data = await stream.receive_some(1 << 20)
            if not data:
                break
            received += len(data)
        done.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        chunk = os.urandom(1 << 20)
        start = time.perf_counter()
        sent = 0
        while sent < total:
            await client.send_all(chunk)
            sent += len(chunk)
        await done.wait()
        elapsed = time.perf_counter() - start
        await client.aclose()
        nursery.cancel_scope.cancel()
    return total / elapsed / 1e6


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else (values[0] if values else 0.0)


async def gossip_latency(net: TestNetwork, nodes: list[NetNode], size: int, count: int) -> dict[str, float]:
    arrivals: dict[int, dict[int, float]] = {n.index: {} for n in nodes[1:]}

    async def drain(node: NetNode) -> None:
        async for msg in node.svc.inbound:
            arrivals[node.index][int.from_bytes(msg.data[:8], "big")] = time.perf_counter()

    latencies: list[float] = []
    async with trio.open_nursery() as nursery:
        for node in nodes[1:]:
            nursery.start_soon(drain, node)
        for seq in range(count):
            raw = seq.to_bytes(8, "big") + os.urandom(size - 8)
            start = time.perf_counter()
            await nodes[0].svc.publish_block(raw)
            await wait_for(lambda s=seq: all(s in a for a in arrivals.values()), 30, poll_s=0.001)  # type: ignore[misc]
            latencies.extend((a[seq] - start) * 1000 for a in arrivals.values())
            await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    return {"p50_ms": statistics.median(latencies), "p95_ms": pct(latencies, 95), "samples": len(latencies)}


async def relay_throughput(net: TestNetwork, count: int, size: int) -> dict[str, float]:
    line = [net.add_node() for _ in range(3)]
    for node in line:
        node.validator.keep_accepted = False
        node.validator.block_check = lambda raw: None
        await net.start(node)
    await net.connect(line[0], line[1])
    await net.connect(line[1], line[2])
    await wait_for(lambda: all(n.svc.gossip.mesh_size(GossipKind.BLOCK) > 0 for n in line), 30)
    payloads = [seq.to_bytes(8, "big") + os.urandom(size - 8) for seq in range(count)]
    arrived: set[int] = set()

    async def drain() -> None:
        async for msg in line[2].svc.inbound:
            arrived.add(int.from_bytes(msg.data[:8], "big"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        start = time.perf_counter()
        for raw in payloads:
            await line[0].svc.publish_block(raw)
            await trio.lowlevel.checkpoint()
        await wait_for(lambda: len(arrived) >= count, 300, poll_s=0.005)
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    for node in line:
        await net.stop(node)
    return {"msg_s": count / elapsed, "mb_s": count * size / elapsed / 1e6}


async def blob_mb_s(net: TestNetwork, sources: list[NetNode], blob_hash: Any, size: int) -> float:
    fetcher = net.add_node()
    await net.start(fetcher)
    for s in sources:
        await net.connect(fetcher, s)
    start = time.perf_counter()
    result = await fetcher.svc.fetch_blob(blob_hash)
    elapsed = time.perf_counter() - start
    assert result.error is None, result
    await net.stop(fetcher)
    return size / elapsed / 1e6


async def bench(n_nodes: int, blob_mib: int, small: int, large: int, relay: int) -> dict[str, Any]:
    rng = random.Random(7)
    out: dict[str, Any] = {}
    blob_size = blob_mib * 1024 * 1024
    out["raw_tcp_mb_s"] = await raw_tcp_mb_s(blob_size)
    async with open_test_network() as net:
        nodes = [net.add_node() for _ in range(n_nodes)]
        for node in nodes:
            node.validator.keep_accepted = False
            node.validator.block_check = lambda raw: None
            await net.start(node)
        for i, node in enumerate(nodes):
            for j in rng.sample([k for k in range(n_nodes) if k != i], 3):
                await node.svc.add_peer(nodes[j].addr)
        await wait_for(lambda: all(n.svc.gossip.mesh_size(GossipKind.BLOCK) > 0 for n in nodes), 30)
        out["gossip_1kb"] = await gossip_latency(net, nodes, 1024, small)
        out["gossip_256kb"] = await gossip_latency(net, nodes, 256 * 1024, large)
        for node in nodes:
            await net.stop(node)
        out["relay_100kb"] = await relay_throughput(net, relay, 100 * 1024)
        data = os.urandom(blob_size)
        servers = [net.add_node() for _ in range(3)]
        for s in servers:
            blob_hash = await s.blobs.put_bytes(data)
            await net.start(s)
        out["blob_1_peer_mb_s"] = await blob_mb_s(net, servers[:1], blob_hash, blob_size)
        out["blob_3_peers_mb_s"] = await blob_mb_s(net, servers, blob_hash, blob_size)
    out["blob_1_peer_vs_raw_tcp"] = out["blob_1_peer_mb_s"] / out["raw_tcp_mb_s"]
    out["blob_3_peers_vs_raw_tcp"] = out["blob_3_peers_mb_s"] / out["raw_tcp_mb_s"]
    out["relay_vs_raw_tcp"] = out["relay_100kb"]["mb_s"] / out["raw_tcp_mb_s"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--blob-mib", type=int, default=32)
    parser.add_argument("--small", type=int, default=100, help="1 KB messages (default 100)")
    parser.add_argument("--large", type=int, default=30, help="256 KB messages (default 30)")
    parser.add_argument(
        "--relay", type=int, default=300, help="100 KB messages through a relay (default 300)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = trio.run(bench, args.nodes, args.blob_mib, args.small, args.large, args.relay)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    g1, g2 = result["gossip_1kb"], result["gossip_256kb"]
    print(f"raw loopback TCP (baseline)      {result['raw_tcp_mb_s']:8.1f} MB/s")
    for label, g in ((" 1 KB", g1), ("256 KB", g2)):
        print(
            f"gossip {label} to {args.nodes - 1} nodes  p50 {g['p50_ms']:7.1f} ms   p95 {g['p95_ms']:7.1f} ms"
        )
    relay = result["relay_100kb"]
    print(
        f"gossip 100 KB through 1 relay    {relay['mb_s']:8.1f} MB/s   ({relay['msg_s']:.0f} msg/s)"
        f"   ratio to raw TCP {result['relay_vs_raw_tcp']:.3f}"
    )
    print(
        f"blob {args.blob_mib} MiB from 1 peer          {result['blob_1_peer_mb_s']:8.1f} MB/s"
        f"   ratio to raw TCP {result['blob_1_peer_vs_raw_tcp']:.3f}"
    )
    print(
        f"blob {args.blob_mib} MiB from 3 peers         {result['blob_3_peers_mb_s']:8.1f} MB/s"
        f"   ratio to raw TCP {result['blob_3_peers_vs_raw_tcp']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
