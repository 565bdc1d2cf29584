"""Functional: Ctrl-C on the foreground `scripts/devnet` and repeated signals give an ordered stop.

Owns: the operator's way of stopping nodes by signal. A terminal's Ctrl-C sends SIGINT to the whole
foreground process group; the devnet tool then sends each node SIGTERM. Every node must log the
whole ordered stop (`store_closed`, then `stopped`) and leave no `.cookie`, `.rpcport` or pid file.
A daemon that gets SIGINT and SIGTERM back to back (a terminal plus a supervisor) must not be cut
short by the second one. `linguachaind stop` must not trust a stale pid file.
Must not: depend on block production (only on the daemons starting and stopping).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.functional.framework import PYTHON, REPO, TestNode, reap_all, wait_until

pytestmark = pytest.mark.functional

RUNTIME_FILES = (".cookie", ".rpcport", "linguachaind.pid")


def _assert_ordered_stop(datadir: Path) -> None:
    lines = (datadir / "debug.log").read_text(errors="replace").splitlines()
    last_stop = max(i for i, line in enumerate(lines) if "EVENT stopping" in line)
    tail = "\n".join(lines[last_stop:])
    assert "EVENT store_closed name=chain" in tail, f"{datadir.name} did not close its chain store:\n{tail}"
    assert lines[-1].endswith("EVENT stopped"), f"{datadir.name}'s log does not end with the stop:\n{tail}"
    left = [name for name in RUNTIME_FILES if (datadir / name).exists()]
    assert not left, f"{datadir.name} left {left}"


def test_ctrl_c_on_foreground_devnet_stops_every_node_in_order(tmp_path: Path) -> None:
    root = tmp_path / "dn"
    out_path = tmp_path / "devnet.out"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [PYTHON, "-m", "linguachaind.devnet_tool", "run", "--nodes", "3", "--dir", str(root)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            start_new_session=True,  # its own process group, like a shell's foreground job
        )
    try:

        def following() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"devnet exited early:\n{out_path.read_text(errors='replace')}")
            return "Ctrl-C stops every node" in out_path.read_text(errors="replace")

        wait_until(following, timeout=120, what="the devnet to start its 3 nodes")
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        assert proc.wait(timeout=90) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run([PYTHON, "-m", "linguachaind.devnet_tool", "down", "--dir", str(root)], cwd=REPO)
    text = out_path.read_text(errors="replace")
    assert "stopped; the chain stays in" in text
    assert "Traceback" not in text
    for k in range(3):
        _assert_ordered_stop(root / f"node{k}")


def test_second_signal_during_shutdown_does_not_cut_it_short(tmp_path: Path) -> None:
    node = TestNode(0, tmp_path / "node0")
    node.datadir.mkdir()
    try:
        node.start()
        assert node.process is not None
        node.process.send_signal(signal.SIGINT)
        node.process.send_signal(signal.SIGTERM)  # arrives while the first one's stop runs
        assert node.stop_node(timeout=60) == 0
    finally:
        reap_all()
    _assert_ordered_stop(node.datadir)
    log = (node.datadir / "debug.log").read_text()
    # Both signals are pending together, and their handlers may run in either order: whichever runs
    # first starts the stop, the other is logged and ignored.
    first = [name for name in ("SIGINT", "SIGTERM") if f"received {name}, stopping" in log]
    second = [
        name
        for name in ("SIGINT", "SIGTERM")
        if f"received {name} while stopping: the ordered stop continues" in log
    ]
    assert len(first) == 1, (first, second)
    assert sorted(first + second) == ["SIGINT", "SIGTERM"], (first, second)


def test_stop_refuses_a_stale_pid_file(tmp_path: Path) -> None:
    """A pid file left by a killed daemon names a pid that may belong to someone else now."""
    node = TestNode(0, tmp_path / "node0")
    node.datadir.mkdir()
    bystander = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(120)"])
    try:
        node.start()
        node.kill()
        (node.datadir / "linguachaind.pid").write_text(f"{bystander.pid}\n")  # the pid was reused
        out = subprocess.run(
            [PYTHON, "-m", "linguachaind", "stop", "--datadir", str(node.datadir), "--timeout", "5"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert out.returncode == 1
        assert out.stderr.startswith(f"error: no linguachaind is running on {node.datadir}")
        assert "stale linguachaind.pid" in out.stderr
        assert bystander.poll() is None, "stop signalled a process that is not this datadir's daemon"
        assert not (node.datadir / "linguachaind.pid").exists()

        node.start()
        out = subprocess.run(
            [PYTHON, "-m", "linguachaind", "stop", "--datadir", str(node.datadir)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=90,
        )
        assert out.returncode == 0, out.stderr
        assert "(pid" in out.stdout
        assert "RPC stop" in out.stdout
        assert node.stop_node() == 0
        _assert_ordered_stop(node.datadir)
    finally:
        bystander.kill()
        bystander.wait()
        reap_all()
