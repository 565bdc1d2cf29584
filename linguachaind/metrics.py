"""Prometheus metrics of one node (the `/metrics` endpoint of the RPC server).

Owns: a per-node `CollectorRegistry` (several nodes can share one process in tests), gauges read
at scrape time from callbacks the node registers, RPC request counters, VDF prove times, and
`PartsCollector`, which reads the chain tip, gossip, sync and mempool counters from the node's
parts at scrape time. Must not: compute anything expensive at scrape time or import services
(parts are duck-typed; a part not started yet is skipped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# GossipStats fields exported as counters (the rest are instantaneous and exported as gauges).
GOSSIP_COUNTERS = (
    "published",
    "received",
    "accepted",
    "rejected",
    "rate_limited",
    "inbound_dropped",
    "outbound_dropped",
    "duplicates_skipped",
    "idontwant_sent",
    "sent_direct",
)
GOSSIP_GAUGES = ("in_flight", "outbound_queued")


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._gauges: dict[str, Gauge] = {}
        self.rpc_requests = Counter(
            "linguachain_rpc_requests",
            "JSON-RPC requests by method and result code",
            ["method", "code"],
            registry=self.registry,
        )
        self.rpc_seconds = Histogram(
            "linguachain_rpc_seconds",
            "JSON-RPC handling time",
            ["method"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.02, 0.1, 0.5, 2.0),
        )
        self.vdf_prove_seconds = Histogram(
            "linguachain_vdf_prove_seconds",
            "time to compute one VDF proof in the worker process (finished proofs only)",
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
        )

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A gauge `linguachain_<name>` whose value is `read()` at scrape time (0 if it raises)."""
        g = Gauge(f"linguachain_{name}", help_text, registry=self.registry)

        def safe() -> float:
            try:
                return float(read())
            except Exception:  # a component not ready yet must not break the scrape
                return 0.0

        g.set_function(safe)
        self._gauges[name] = g

    def watch(self, parts: Any) -> None:
        """Export what the node's parts know (tip time, gossip, sync, mempool; see `PartsCollector`)."""
        self.registry.register(PartsCollector(parts))

    def observe_vdf(self, seconds: float) -> None:
        """One finished VDF proof and how long its computation took (`VdfProver(observe=...)`)."""
        self.vdf_prove_seconds.observe(seconds)

    def observe_rpc(self, method: str, code: int, seconds: float) -> None:
        self.rpc_requests.labels(method=method, code=str(code)).inc()
        self.rpc_seconds.labels(method=method).observe(seconds)

    def render(self) -> bytes:
        out: bytes = generate_latest(self.registry)
        return out


class PartsCollector(Collector):
    """Reads the node's parts at scrape time: each figure is one cheap attribute or `statistics()`
    call. Parts that are not started yet (None) contribute nothing."""

    def __init__(self, parts: Any) -> None:
        self._parts = parts

    def collect(self) -> Iterator[Metric]:
        yield from self._chain()
        yield from self._p2p()
        yield from self._mempool()
        yield from self._trainer()

    def _chain(self) -> Iterator[Metric]:
        store = getattr(self._parts, "store", None)
        if store is None:
            return
        from chain.header import round_for_height

        height = int(store.tip[1])
        yield _gauge("linguachain_round", "round of the best block (PROTOCOL §4.1)", round_for_height(height))
        header = store.get_header(store.tip[0])
        if header is not None:
            yield _gauge(
                "linguachain_best_block_timestamp_seconds",
                "timestamp of the best block (alert on time() minus this)",
                header.timestamp_ms / 1000,
            )

    def _p2p(self) -> Iterator[Metric]:
        p2p = getattr(self._parts, "p2p", None)
        if p2p is None:
            return
        stats = p2p.statistics()
        for name in GOSSIP_COUNTERS:
            counter = CounterMetricFamily(f"linguachain_gossip_{name}", f"gossip messages {name}")
            counter.add_metric([], float(getattr(stats.gossip, name, 0)))
            yield counter
        for name in GOSSIP_GAUGES:
            yield _gauge(f"linguachain_gossip_{name}", f"gossip {name} now", getattr(stats.gossip, name, 0))
        yield _gauge("linguachain_peers_banned", "peers banned now", stats.banned)
        sync = stats.sync
        yield _gauge("linguachain_sync_target_height", "best height a peer reports", sync.target_height)
        yield _gauge("linguachain_syncing", "1 while catching up with peers", 1.0 if sync.syncing else 0.0)
        imported = CounterMetricFamily("linguachain_sync_blocks_imported", "blocks fetched from peers")
        imported.add_metric([], float(sync.blocks_imported))
        yield imported

    def _mempool(self) -> Iterator[Metric]:
        pool = getattr(self._parts, "mempool", None)
        if pool is None:
            return
        stats = pool.statistics()
        yield _gauge("linguachain_mempool_senders", "distinct senders in the mempool", stats.senders)
        for name in ("accepted_total", "rejected_total", "evicted_total", "expired_total"):
            counter = CounterMetricFamily(f"linguachain_mempool_{name[:-6]}", f"mempool items {name[:-6]}")
            counter.add_metric([], float(getattr(stats, name)))
            yield counter

    def _trainer(self) -> Iterator[Metric]:
        trainer = getattr(self._parts, "trainer", None)
        if trainer is None:
            return
        stats = trainer.statistics()
        yield _gauge("linguachain_training_enabled", "1 while the trainer may train", float(stats.enabled))
        yield _gauge("linguachain_training_step", "step of the training job in flight", stats.step)
        yield _gauge("linguachain_training_total_steps", "steps of that job", stats.total_steps)
        yield _gauge("linguachain_training_loss", "training loss of the last step", stats.loss_micro / 1e6)
        yield _gauge("linguachain_training_tokens_per_second", "training tokens/s", stats.tokens_per_s)
        yield _gauge("linguachain_training_version", "base of the last update (-1)", stats.trained_version)
        for name in ("units_submitted", "units_refused", "jobs_failed"):
            counter = CounterMetricFamily(f"linguachain_training_{name}", f"trainer {name.replace('_', ' ')}")
            counter.add_metric([], float(getattr(stats, name)))
            yield counter


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=float(value))
