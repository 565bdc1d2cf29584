"""Integration: the VDF worker process lives exactly as long as the daemon process that started it.

Owns: the cause of the daemon's occasional "VDF worker died ... restarting" warnings. trio starts
child processes from a cached worker thread that exits after 10 s idle, and the worker used
`PR_SET_PDEATHSIG`, which fires when the forking *thread* exits: healthy workers were SIGKILLed
mid-request. The worker now watches its parent process instead. Must not: sleep for trio's idle
timeout (a plain thread that exits at once shows the same thing).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from tests.functional.framework import wait_until
from tests.support.processes import pid_gone

REPO = Path(__file__).resolve().parents[2]
REQUEST = "prove " + "01" * 32 + " 512 1000\n"


def _spawn_worker() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vdf.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_worker_survives_the_exit_of_the_thread_that_started_it() -> None:
    box: list[subprocess.Popen[str]] = []

    def start() -> None:
        worker = _spawn_worker()
        box.append(worker)
        assert worker.stdout is not None
        box_ready.append(worker.stdout.readline().strip())  # the worker set up its parent watch

    box_ready: list[str] = []
    starter = threading.Thread(target=start)
    starter.start()
    starter.join()  # the forking thread is gone, as trio's idle cached thread would be
    worker = box[0]
    try:
        assert box_ready == ["ready"]
        assert worker.stdout is not None
        assert worker.stdin is not None
        worker.stdin.write(REQUEST)
        worker.stdin.flush()
        answer = worker.stdout.readline()
        assert answer.startswith("ok "), f"worker answered {answer!r}, exit status {worker.poll()}"
    finally:
        worker.kill()
        worker.communicate()  # reaps it and closes both pipes


def test_worker_exits_when_its_parent_process_dies() -> None:
    parent_code = (
        "import subprocess, sys, os\n"
        f"w = subprocess.Popen([sys.executable, '-m', 'vdf.worker'], stdin=subprocess.PIPE,"
        f" stdout=subprocess.PIPE, cwd={str(REPO)!r})\n"
        "w.stdout.readline()\n"
        "print(w.pid, flush=True)\n"
        "os._exit(0)\n"  # dies without closing the pipes or killing the worker
    )
    out = subprocess.run(
        [sys.executable, "-c", parent_code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    pid = int(out.stdout.strip())

    try:
        wait_until(
            lambda: pid_gone(pid), timeout=10, interval=0.05, what=f"orphaned VDF worker {pid} to exit"
        )
    finally:
        if not pid_gone(pid):
            os.kill(pid, 9)
