"""Integration: the training worker lives exactly as long as the process that started it, not the
thread (the regression of bf9c457: `PR_SET_PDEATHSIG` follows the forking *thread*, and trio forks
from a cached thread that exits after 10 s idle, so a worker still loading lc-tiny on a busy machine
was SIGKILLed before ready, again and again). The worker watches its parent process instead, like
vdf/worker.py (tests/integration/test_vdf_worker_lifetime.py). Must not: sleep for trio's idle
timeout (a plain thread that exits at once shows the same thing).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.functional.framework import wait_until
from tests.support.processes import pid_gone
from training import protocol as p

pytestmark = pytest.mark.slow  # loads lc-tiny (torch import): 10-80 s on the shared 2-core box

REPO = Path(__file__).resolve().parents[2]
ARGV = ["-m", "training.worker", "--model", str(REPO / "training" / "lc_tiny"), "--genesis-hash", "00" * 32]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def test_worker_survives_the_exit_of_the_thread_that_started_it() -> None:
    box: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        box.append(
            subprocess.Popen(
                [sys.executable, *ARGV, "--threads", "1"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=REPO,
                env=ENV,
            )
        )

    starter = threading.Thread(target=start)
    starter.start()
    starter.join()  # the forking thread is gone, as trio's idle cached thread would be
    worker = box[0]
    try:
        assert worker.stdout is not None
        header = worker.stdout.read(4)  # the Ready frame comes after the model loaded
        assert len(header) == 4, f"the worker ended before it was ready (exit status {worker.wait()})"
        (n,) = struct.unpack(">I", header)
        frame = p.decode_frame(worker.stdout.read(n))
        assert isinstance(frame, p.Frame)
        assert isinstance(frame.message, p.Ready)
    finally:
        worker.kill()
        worker.communicate()


def test_worker_exits_when_its_parent_process_dies() -> None:
    parent_code = (
        "import subprocess, sys, os\n"
        f"w = subprocess.Popen([sys.executable, *{ARGV!r}], stdin=subprocess.PIPE,"
        f" stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd={str(REPO)!r})\n"
        "print(w.pid, flush=True)\n"
        "os._exit(0)\n"  # dies at once, without closing the pipes or killing the worker
    )
    out = subprocess.run(
        [sys.executable, "-c", parent_code], capture_output=True, text=True, timeout=60, env=ENV
    )
    pid = int(out.stdout.strip())

    wait_until(lambda: pid_gone(pid), timeout=120, what=f"the orphaned training worker {pid} to exit")
