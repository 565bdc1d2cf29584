"""Fault tests across hosts: real daemons, each in its own network namespace (tests/netns/lab.py).

Owns: kill -9 of the leader mid-round (the backup proposes, the killed node restarts and catches up
without proposing at heights already final, nothing final is lost) and partitions (1 of 4: the
majority finalises, the minority does not; after healing everyone converges and no final block is
reverted; 2 vs 2: nobody finalises, after healing finality resumes). The default suite runs each
scenario sized down (`QUICK`: fewer final blocks to wait for; 2 vs 2 only in the slow test); the
`slow` variants wait for more. Must not: sleep to wait (every wait is a predicate with a deadline,
generous for a loaded CI box) or leave a namespace or process behind. Skips with the reason where
namespaces cannot be created (not root, no CAP_NET_ADMIN, not Linux).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.functional.framework import wait_until
from tests.netns.lab import Lab, events, unavailable_reason

pytestmark = pytest.mark.functional  # the slow mark is per test

_REASON = unavailable_reason()
needs_netns = pytest.mark.skipif(_REASON is not None, reason=f"network namespaces: {_REASON}")


@contextmanager
def running_lab(root: Path, n: int) -> Iterator[Lab]:
    lab = Lab(root, n)
    ok = False
    try:
        lab.create_network()
        lab.init_nodes(genesis_delay_s=6.0 + 2 * n)
        for k in range(n):
            lab.start(k)
        for k in range(n):
            lab.wait_ready(k)
        yield lab
        ok = True
    finally:
        lab.stop_all()
        lab.destroy_network()
        if not ok:
            for k in range(n):
                sys.stderr.write(f"\n===== node{k} debug.log (tail) =====\n{lab.tail(k, n=40)}\n")
                sys.stderr.write(f"===== node{k} stderr =====\n{lab.tail(k, 'stderr.log', 20)}\n")


def info(lab: Lab, k: int) -> dict[str, Any]:
    result: dict[str, Any] = lab.nodes[k].call("getblockchaininfo")
    return result


def final_hashes(lab: Lab, k: int, upto: int) -> dict[int, str]:
    node = lab.nodes[k]
    return {h: node.call("getblockhash", h) for h in range(1, upto + 1)}


@dataclass(frozen=True, slots=True)
class Size:
    """How much of a scenario to wait for: final blocks before the fault and during it."""

    before: int  # final height every node reaches before the fault
    during: int  # final blocks the majority adds during the fault


QUICK = Size(before=2, during=2)  # the default suite: the same assertions, fewer blocks
LONG = Size(before=3, during=3)


def wait_final(lab: Lab, nodes: list[int], height: int, timeout: float = 180) -> None:
    wait_until(
        lambda: all(info(lab, k)["final_height"] >= height for k in nodes),
        timeout=timeout,
        what=f"final height {height} on nodes {nodes}",
    )


def wait_converged(lab: Lab, nodes: list[int], timeout: float = 180) -> None:
    wait_until(
        lambda: len({info(lab, k)["best_hash"] for k in nodes}) == 1,
        timeout=timeout,
        what=f"one best block on nodes {nodes}",
    )


def assert_final_kept(lab: Lab, k: int, before: dict[int, str]) -> None:
    after = {h: lab.nodes[k].call("getblockhash", h) for h in before}
    reverted = {h: (before[h][:12], after[h][:12]) for h in before if before[h] != after[h]}
    assert not reverted, f"node{k} reverted final blocks (height: before, after): {reverted}"


@needs_netns
def test_kill_leader_and_catch_up(tmp_path: Path) -> None:
    kill_leader_mid_round(tmp_path, QUICK)


@pytest.mark.slow
@needs_netns
def test_kill_leader_mid_round(tmp_path: Path) -> None:
    kill_leader_mid_round(tmp_path, LONG)


def kill_leader_mid_round(tmp_path: Path, size: Size) -> None:
    with running_lab(tmp_path, 4) as lab:
        everyone = list(range(4))
        wait_final(lab, everyone, size.before)
        # The leader: the proposer of the newest block; kill it while its round is in progress.
        tip = lab.nodes[0].call("getblockheader", info(lab, 0)["best_hash"])
        keys = {lab.nodes[k].call("getnodeinfo")["validator_pubkey"]: k for k in everyone}
        victim = keys.get(tip["proposer"], 0)
        before = info(lab, victim)
        kept = final_hashes(lab, victim, before["final_height"])
        lab.kill(victim)
        others = [k for k in everyone if k != victim]
        start = max(info(lab, k)["height"] for k in others)

        def backup_proposed() -> bool:
            tip_now = info(lab, others[0])["height"]
            heads = [lab.nodes[others[0]].call("getblockheader", h) for h in range(start + 1, tip_now + 1)]
            assert all(h["proposer"] != tip["proposer"] for h in heads), "a dead node proposed"
            return any(h["rank"] >= 1 for h in heads)

        wait_until(backup_proposed, timeout=180, what="a block from a rank >= 1 backup proposer")
        wait_final(lab, others, before["final_height"] + size.during)
        final_at_restart = max(info(lab, k)["final_height"] for k in others)
        restarted_at = time.time()
        lab.start(victim)
        lab.wait_ready(victim)
        after = info(lab, victim)
        assert after["height"] >= before["height"], (before, after)  # nothing it had accepted is lost
        assert_final_kept(lab, victim, kept)
        wait_final(lab, everyone, max(info(lab, k)["final_height"] for k in others) + 1)
        wait_converged(lab, everyone)
        for k in others:
            assert_final_kept(lab, k, kept)
        # Behind after its restart, it proposed nothing at a height the others had finalised (issue
        # 15 finding: a catching-up node did, as soon as it started and before its syncer ran; the
        # producer now holds back until its chain holds the final block its peers agree on)
        log = lab.nodes[victim].datadir / "debug.log"
        stale = [
            f for ts, name, f in events(log)
            if ts >= restarted_at and name == "block_proposed" and int(f["height"]) <= final_at_restart
        ]  # fmt: skip
        assert not stale, f"node{victim} proposed at heights final before its restart: {stale}"


@needs_netns
def test_partition_one_of_four_and_heal(tmp_path: Path) -> None:
    with running_lab(tmp_path, 4) as lab:
        partition_one_of_four(lab, QUICK)


@pytest.mark.slow
@needs_netns
def test_partition_one_of_four_then_two_against_two(tmp_path: Path) -> None:
    with running_lab(tmp_path, 4) as lab:
        partition_one_of_four(lab, LONG)
        two_against_two(lab)


def partition_one_of_four(lab: Lab, size: Size) -> None:
    """1 of 4: the majority (3/4 of the stake) keeps finalising, node3 cannot; after healing all
    converge and nothing final is reverted."""
    everyone = list(range(4))
    wait_final(lab, everyone, size.before)
    lab.partition([[0, 1, 2], [3]])
    tip_at_cut = max(info(lab, k)["height"] for k in everyone)
    wait_final(lab, [0, 1, 2], tip_at_cut + size.during)
    wait_until(lambda: info(lab, 3)["height"] > tip_at_cut, timeout=120, what="node3 keeps proposing alone")
    assert info(lab, 3)["final_height"] <= tip_at_cut, "the minority finalised a block made after the cut"
    kept = {k: final_hashes(lab, k, info(lab, k)["final_height"]) for k in everyone}
    lab.heal_partition()
    wait_converged(lab, everyone)
    wait_final(lab, everyone, max(info(lab, k)["final_height"] for k in everyone) + 1)
    for k in everyone:
        assert_final_kept(lab, k, kept[k])


def two_against_two(lab: Lab) -> None:
    """2 against 2: neither half holds 2/3 of the stake: nobody finalises; after healing finality
    resumes and nothing final is reverted."""
    everyone = list(range(4))
    lab.partition([[0, 1], [2, 3]])
    tip_at_cut = max(info(lab, k)["height"] for k in everyone)
    wait_until(
        lambda: all(info(lab, k)["height"] >= tip_at_cut + 4 for k in everyone),
        timeout=180,
        what="both halves keep proposing",
    )
    finals = {k: info(lab, k)["final_height"] for k in everyone}
    assert all(f <= tip_at_cut for f in finals.values()), (tip_at_cut, finals)
    kept = {k: final_hashes(lab, k, finals[k]) for k in everyone}
    lab.heal_partition()
    wait_converged(lab, everyone, timeout=180)
    wait_final(lab, everyone, tip_at_cut + 2, timeout=180)  # finality resumes after healing
    for k in everyone:
        assert_final_kept(lab, k, kept[k])
