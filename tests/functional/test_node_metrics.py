"""Functional: `/metrics` of a running node carries what an operator alerts on (issue 16 item 10).

Owns: checking the exported names and that they move: best block time, height, final height,
peers, gossip counters, sync figures, VDF prove time, mempool figures, RPC counters. The text must
parse as the Prometheus exposition format. Must not: check exact values that depend on timing.
"""

from __future__ import annotations

import http.client
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.functional.framework import TestNode, reap_all, wait_until

pytestmark = pytest.mark.functional

EXPECTED = {
    "linguachain_up",
    "linguachain_height",
    "linguachain_final_height",
    "linguachain_round",
    "linguachain_best_block_timestamp_seconds",
    "linguachain_peers",
    "linguachain_mempool_size",
    "linguachain_mempool_senders",
    "linguachain_mempool_accepted",
    "linguachain_gossip_published",
    "linguachain_gossip_received",
    "linguachain_gossip_rejected",
    "linguachain_sync_target_height",
    "linguachain_vdf_prove_seconds",
    "linguachain_rpc_requests",
}


def _scrape(port: int) -> dict[str, dict[str, float]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    finally:
        conn.close()
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(body):
        out[family.name] = {s.name: s.value for s in family.samples}
    return out


def test_metrics_cover_the_operator_figures(tmp_path: Path) -> None:
    node = TestNode(0, tmp_path / "node0")
    node.datadir.mkdir()
    try:
        node.start()
        wait_until(lambda: node.getblockchaininfo()["final_height"] >= 2, timeout=90, what="final height 2")
        metrics = _scrape(node.rpc.port)
        missing = EXPECTED - set(metrics)
        assert not missing, f"/metrics lacks {sorted(missing)}"
        assert metrics["linguachain_height"]["linguachain_height"] >= 2
        assert metrics["linguachain_final_height"]["linguachain_final_height"] >= 2
        assert metrics["linguachain_vdf_prove_seconds"]["linguachain_vdf_prove_seconds_count"] >= 1
        tip_time = metrics["linguachain_best_block_timestamp_seconds"][
            "linguachain_best_block_timestamp_seconds"
        ]
        assert abs(time.time() - tip_time) < 60  # the devnet makes a block every second
        assert metrics["linguachain_gossip_published"]["linguachain_gossip_published_total"] >= 1
    finally:
        node.stop_node()
        reap_all()
