"""The gossip soak: steady load with large messages while peers join and leave (test and script).

Owns: `run_soak`: `core` nodes on loopback (a line plus one chord, so gossip must relay), each
publishing in turn at `rate` messages per second on the block topic with payloads of `min_kb` to
`max_kb` (the first 40 bytes are a sequence number and the hash of the rest, checked by the
validator), while `visitors` extra nodes repeatedly join and leave; then counts, per core node, the
messages that came out of its inbound queue, and every stream error and rejection. Used by
`tests/integration/test_p2p_soak.py` (slow) and `scripts/p2p_soak.py`. Must not: be imported by
production code.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import psutil
import trio

from chain.errors import ErrorCode
from p2p.messages.gossip import GossipKind
from p2p.testing import NetNode, TestNetwork, open_test_network
from tests.support.waiting import wait_until

WARM_UP_S: Final = 30.0  # memory is measured from this far into the load (or a third of it)


def warm_up_s(duration_s: float) -> float:
    return min(WARM_UP_S, duration_s / 3)


@dataclass(frozen=True, slots=True)
class SoakReport:
    duration_s: float
    offered: int  # rate * duration: what the schedule asked the publishers to send
    published: int
    expected_deliveries: int
    deliveries: int
    missing: int
    duplicates: int
    rejected: int
    stream_errors: int
    inbound_dropped: int
    outbound_dropped: int
    validator_timeouts: int  # valid messages refused once because validation ran out of time
    copies_received: int  # every copy that reached a core node's gossip gate, duplicates included
    duplicates_skipped: int  # queued copies not sent because the peer had the message already
    idontwant_sent: int  # early IDONTWANT announcements (messages of 16 KiB or more)
    publish_paced: int  # publishes that waited for room in an outbound queue
    max_outbound_queue: int  # longest per-peer outbound queue seen (RPCs)
    rss_mb_max: float  # largest resident memory of a core node's process at the end of the load
    rss_growth_mb_max: float  # largest growth of that from `warm_up_s` into the load to its end
    latency_p50_ms: float
    latency_p95_ms: float
    visitor_joins: int

    @property
    def ok(self) -> bool:
        """Every offered message published (no publisher paced behind schedule), every one delivered
        to every core node, no stream error, reject or queue drop."""
        return (
            self.published >= self.offered
            and self.missing == 0
            and self.rejected == 0
            and self.stream_errors == 0
            and self.inbound_dropped == 0
            and self.outbound_dropped == 0
        )


COUNTERS: Final = (
    "rejected",
    "stream_errors",
    "inbound_dropped",
    "outbound_dropped",
    "validator_timeouts",
    "copies_received",
    "duplicates_skipped",
    "idontwant_sent",
    "publish_paced",
)


def node_counters(node: NetNode) -> dict[str, int]:
    """One node's error and traffic counters (`COUNTERS`), as the report sums them."""
    stats = node.svc.statistics()
    gossip = stats.gossip
    return {
        "rejected": node.validator.rejected,
        "stream_errors": stats.offences["malformed"] + stats.offences["oversized"],
        "inbound_dropped": gossip.inbound_dropped,
        "outbound_dropped": gossip.outbound_dropped,
        "validator_timeouts": gossip.validator_timeouts,
        "copies_received": gossip.received,
        "duplicates_skipped": gossip.duplicates_skipped,
        "idontwant_sent": gossip.idontwant_sent,
        "publish_paced": gossip.publish_paced,
    }


def make_report(
    *,
    duration_s: float,
    rate: float,
    published: int,
    expected: int,
    latencies: Sequence[float],
    counters: Sequence[Mapping[str, int]],
    duplicates: int,
    max_queue: int,
    rss_max: float,
    rss_growth: float,
    joins: int,
) -> SoakReport:
    """The report of either soak: `latencies` (ms) of the deliveries that happened out of `expected`,
    `counters` of every core node summed."""
    totals = {key: sum(c[key] for c in counters) for key in COUNTERS}
    return SoakReport(
        duration_s=duration_s,
        offered=int(duration_s * rate),
        published=published,
        expected_deliveries=expected,
        deliveries=len(latencies),
        missing=expected - len(latencies),
        duplicates=duplicates,
        **totals,
        max_outbound_queue=max_queue,
        rss_mb_max=rss_max,
        rss_growth_mb_max=rss_growth,
        latency_p50_ms=statistics.median(latencies) if latencies else 0.0,
        latency_p95_ms=statistics.quantiles(latencies, n=20)[18] if len(latencies) > 20 else 0.0,
        visitor_joins=joins,
    )


def _payload(seq: int, size: int) -> bytes:
    body = os.urandom(max(0, size - 40))
    return seq.to_bytes(8, "big") + hashlib.blake2b(body, digest_size=32).digest() + body


def _check(raw: bytes) -> ErrorCode | None:
    if len(raw) < 40 or hashlib.blake2b(raw[40:], digest_size=32).digest() != raw[8:40]:
        return ErrorCode.BAD_MESSAGE
    return None


async def run_soak(
    duration_s: float = 300.0,
    *,
    core: int = 6,
    visitors: int = 2,
    rate: float = 50.0,
    min_kb: int = 1,
    max_kb: int = 200,
    seed: int = 1,
    drain_s: float = 60.0,
) -> SoakReport:
    rng = random.Random(seed)
    sent_at: dict[int, float] = {}
    got: dict[int, dict[int, float]] = {}
    duplicates = 0
    joins = 0
    max_queue = 0
    process = psutil.Process()
    rss_warm = rss_end = 0.0
    async with open_test_network() as net:
        nodes = [net.add_node() for _ in range(core)]
        for node in nodes:
            node.validator.keep_accepted = False
            node.validator.block_check = _check
            await net.start(node)
        for a, b in itertools.pairwise(nodes):
            await net.connect(a, b)
        await net.connect(nodes[0], nodes[-1])
        await wait_until(lambda: all(n.svc.gossip.mesh_size(GossipKind.BLOCK) > 0 for n in nodes), 30)

        async def drain(node: NetNode) -> None:
            nonlocal duplicates
            seen = got.setdefault(node.index, {})
            async for msg in node.svc.inbound:
                seq = int.from_bytes(msg.data[:8], "big")
                if seq in seen:
                    duplicates += 1
                seen[seq] = trio.current_time()

        async def churn(net: TestNetwork, stop_at: float) -> None:
            nonlocal joins
            guests = [net.add_node() for _ in range(visitors)]
            for g in guests:
                g.validator.keep_accepted = False
                g.validator.block_check = _check
            while trio.current_time() < stop_at - 15:
                guest = rng.choice(guests)
                if guest.cancel is None:
                    await net.start(guest)
                    joins += 1
                    nursery.start_soon(_drain_quietly, guest)
                    for target in rng.sample(nodes, 2):
                        await guest.svc.add_peer(target.addr)
                else:
                    await net.stop(guest)
                await trio.sleep(rng.uniform(2.0, 6.0))
            for g in guests:
                await net.stop(g)

        async with trio.open_nursery() as nursery:
            for node in nodes:
                nursery.start_soon(drain, node)
            start = trio.current_time()
            stop_at = start + duration_s
            nursery.start_soon(churn, net, stop_at)
            seq = 0
            while trio.current_time() < stop_at:
                publisher = nodes[seq % core]
                size = rng.randint(min_kb * 1024, max_kb * 1024)
                raw = _payload(seq, size)
                sent_at[seq] = trio.current_time()
                await publisher.svc.publish_block(raw)
                max_queue = max(max_queue, publisher.svc.statistics().gossip.outbound_queued)
                if not rss_warm and trio.current_time() >= start + warm_up_s(duration_s):
                    rss_warm = process.memory_info().rss / 2**20
                seq += 1
                next_at = start + seq / rate
                await trio.sleep(max(0.0, next_at - trio.current_time()))
            rss_end = process.memory_info().rss / 2**20
            expected = {(i, s) for s in sent_at for i in range(core) if i != s % core}
            with trio.move_on_after(drain_s):
                await wait_until(lambda: all(s in got.get(i, {}) for i, s in expected), drain_s, poll_s=0.2)
            nursery.cancel_scope.cancel()
        latencies = [(got[i][s] - sent_at[s]) * 1000 for i, s in expected if s in got.get(i, {})]
        report = make_report(
            duration_s=duration_s,
            rate=rate,
            published=len(sent_at),
            expected=len(expected),
            latencies=latencies,
            counters=[node_counters(n) for n in nodes],
            duplicates=duplicates,
            max_queue=max_queue,
            rss_max=rss_end,  # all nodes share this process
            rss_growth=rss_end - rss_warm if rss_warm else 0.0,
            joins=joins,
        )
    return report


async def _drain_quietly(node: NetNode) -> None:
    if node.service is None:
        return
    async for _ in node.service.inbound:
        pass
