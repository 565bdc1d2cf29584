"""The gossip soak (issue acceptance): 6 nodes, 50 msg/s of 1-200 KB, peers joining and leaving.

Every node is its own OS process, as real nodes are (`tests.support.soak_procs`); visitors join and are
SIGKILLed every 2-6 s. The full soak is slow: 5 minutes by default (`LC_SOAK_S` shortens it). A short,
gentler run of the same machinery is in the default suite. Also runnable as `scripts/p2p_soak.py
--processes`.
"""

from __future__ import annotations

import os

import pytest

from tests.support.soak import SoakReport
from tests.support.soak_procs import run_soak_procs

pytestmark = [pytest.mark.integration]


def _assert_clean(report: SoakReport) -> None:
    print(report)
    assert report.published == report.offered, report  # no publisher fell behind its schedule
    assert report.expected_deliveries == report.published * 5, report
    assert report.missing == 0, report
    assert report.stream_errors == 0, report
    assert report.rejected == 0, report
    assert report.inbound_dropped == 0, report
    assert report.outbound_dropped == 0, report
    assert report.visitor_joins > 0, report
    assert report.rss_growth_mb_max < 150, report  # bounded memory under load (measured: -12 to +15 MiB)
    assert report.ok


def test_short_soak_in_processes() -> None:
    report = run_soak_procs(15.0, core=6, visitors=2, rate=10, min_kb=1, max_kb=200, seed=3, drain_s=6.0)
    _assert_clean(report)


@pytest.mark.slow
def test_soak_delivers_every_valid_message(request: pytest.FixtureRequest) -> None:
    markexpr = str(request.config.getoption("markexpr") or "")
    if os.environ.get("LC_SLOW") != "1" and "slow" not in markexpr.replace("not slow", ""):
        pytest.skip("slow soak: run with -m slow or LC_SLOW=1")
    duration = float(os.environ.get("LC_SOAK_S", "300"))
    _assert_clean(run_soak_procs(duration, core=6, visitors=2, rate=50, min_kb=1, max_kb=200))
