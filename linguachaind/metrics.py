"""Prometheus metrics of one node (the `/metrics` endpoint of the RPC server).

Owns: a per-node `CollectorRegistry` (several nodes can share one process in tests), gauges read
at scrape time from callbacks the node registers, and RPC request counters. Must not: compute
anything expensive at scrape time or import services.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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

    def observe_rpc(self, method: str, code: int, seconds: float) -> None:
        self.rpc_requests.labels(method=method, code=str(code)).inc()
        self.rpc_seconds.labels(method=method).observe(seconds)

    def render(self) -> bytes:
        out: bytes = generate_latest(self.registry)
        return out
