"""Functional: the devnet learns by default (issue 14 acceptance), with real daemons, real training
workers on lc-tiny, the bundled sample data and the CLI.

Owns: `scripts/devnet up` (python -m linguachaind.devnet_tool) of 4 validators with 3 started; then
(1) every trainer announces learning units that the other nodes admit (blob fetched by hash and
checked) and that blocks include; (2) at least two non-no-op versions, each scoring better than its
predecessor on the same test set, with the same adapter hash on every node for every version; (3)
unit and data authors are paid and `rewards explain` says why; (4) node 3, started later, catches
up, fetches the current adapter by hash and trains from the current version. Must not: sleep (every
wait is a predicate with a deadline) or mock anything.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from linguachain_cli.rpc import RpcClient
from tests.functional.framework import PYTHON, REPO, reap_all, wait_until

pytestmark = [pytest.mark.functional, pytest.mark.slow]

LEARN_TIMEOUT_S = 600.0  # the acceptance bound: two improved versions within 10 minutes


def _devnet(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "linguachaind.devnet_tool", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )


def _cli(datadir: Path, *args: str) -> Any:
    out = subprocess.run(
        [PYTHON, "-m", "linguachain_cli.main", "--datadir", str(datadir), "--json", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "dn"
    try:
        up = _devnet("up", "--nodes", "4", "--start", "3", "--dir", str(root))
        assert up.returncode == 0, up.stderr + up.stdout
        assert "test data:" in up.stdout, up.stdout  # node 0 submitted the held-out file
        yield root
    finally:
        _devnet("down", "--dir", str(root))
        reap_all()


def _improved(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in history if not v["noop"]]


@pytest.mark.timeout(1800)  # the acceptance's 10 minutes, then the late node's catching up
def test_devnet_learns_pays_and_a_late_node_trains(devnet: Path) -> None:
    nodes = [devnet / f"node{k}" for k in range(4)]
    rpcs = [RpcClient.from_datadir(d, timeout=60) for d in nodes[:3]]

    # (1) units: announced by every trainer, admitted elsewhere, included in blocks.
    def units_in_blocks() -> bool:
        infos = [r.call("gettraininginfo")["trainer"] for r in rpcs]
        return all(i["units_submitted"] >= 1 for i in infos)

    wait_until(units_in_blocks, timeout=LEARN_TIMEOUT_S, interval=2, what="a learning unit from every node")

    # (2) two improved versions, each better than its predecessor on the same test set.
    def two_improved() -> list[dict[str, Any]] | None:
        history = _cli(nodes[0], "model", "history")
        improved = _improved(history)
        return history if len(improved) >= 2 else None

    history = wait_until(two_improved, timeout=LEARN_TIMEOUT_S, interval=3, what="two improved versions")
    for v in _improved(history):
        assert v["units"] >= 1
        assert 0 < v["score_micro"] < v["previous_score_micro"], v
    versions = [v["version"] for v in _improved(history)]
    assert versions == sorted(versions)
    assert versions[0] == 1

    # Every node holds the same adapter hash for every version (once final on all of them).
    height = max(v["height"] for v in history)
    wait_until(
        lambda: all(r.call("getblockchaininfo")["final_height"] >= height for r in rpcs),
        timeout=120,
        what="the versions final on every node",
    )
    per_node = [
        {v["height"]: v["adapter_hash"] for v in _cli(d, "model", "history") if v["height"] <= height}
        for d in nodes[:3]
    ]
    assert per_node[0] == per_node[1] == per_node[2]
    info = _cli(nodes[1], "model", "info")
    assert info["version"] >= 2

    # (3) unit authors and the data author are paid, and `rewards explain` says why.
    addresses = {v["validator_pubkey"]: v["address"] for v in rpcs[0].call("getvalidators")}
    mine = [addresses[r.call("getnodeinfo")["validator_pubkey"]] for r in rpcs]

    def paid() -> set[tuple[int, str]]:
        reasons = set()
        for k, address in enumerate(mine):
            explained = _cli(nodes[0], "rewards", "explain", address)
            reasons |= {(k, str(r["reason"])) for r in explained["rewards"]}
        learners = {k for k, reason in reasons if reason == "learning_contributor"}
        return reasons if learners == {0, 1, 2} and (0, "data_contributor") in reasons else set()

    wait_until(paid, timeout=LEARN_TIMEOUT_S, interval=5, what="every unit author and the data author paid")

    # (4) a node started later catches up and trains from the current version.
    late = _devnet("start-node", "--dir", str(devnet), "--node", "3")
    assert late.returncode == 0, late.stderr
    late_rpc = RpcClient.from_datadir(nodes[3], timeout=60)

    def late_trained() -> bool:
        current = rpcs[0].call("getmodelinfo")["version"]
        trainer = late_rpc.call("gettraininginfo")["trainer"]
        return bool(trainer["units_submitted"] >= 1 and trainer["trained_version"] >= current - 1 >= 1)

    wait_until(late_trained, timeout=LEARN_TIMEOUT_S, interval=2, what="the late node's first unit")
