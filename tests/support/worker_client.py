"""A blocking client of one `python -m training.worker` process, for tests that share one worker.

pytest-trio fixtures cannot outlive a test, and a worker start costs seconds of torch import on two
cores, so worker tests share this synchronous client in a module-scoped fixture. The daemon uses
training.supervisor instead (tested with real processes in tests/integration/test_training_supervisor.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from training import protocol as p

ROOT = Path(__file__).resolve().parents[2]


class WorkerClient:
    def __init__(self, argv_tail: list[str]) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "training.worker", *argv_tail],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
        )
        self._buffer = p.FrameBuffer()
        self._next = 1
        first = self.read()
        assert first is not None, "the worker exited before it was ready"
        if not isinstance(first.message, p.Ready):
            self.close()
            raise RuntimeError(f"the worker did not start: {first.message}")
        self.ready: p.Ready = first.message
        self.progress: list[p.Progress] = []

    def read(self) -> p.Frame | None:
        assert self.proc.stdout is not None
        while True:
            frame = self._buffer.next_frame()
            if frame is not None:
                assert isinstance(frame, p.Frame), frame
                return frame
            chunk = self.proc.stdout.read1(65536)  # type: ignore[attr-defined]
            if not chunk:
                return None
            self._buffer.feed(chunk)

    def send(self, job_id: int, message: p.Message) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(p.encode_frame(job_id, message))
        self.proc.stdin.flush()

    def submit(self, message: p.Message) -> int:
        job_id, self._next = self._next, self._next + 1
        self.send(job_id, message)
        return job_id

    def wait(self, job_id: int) -> p.Reply:
        while True:
            frame = self.read()
            assert frame is not None, "the worker died"
            if isinstance(frame.message, p.Progress):
                self.progress.append(frame.message)
                continue
            assert frame.job_id == job_id, (frame, job_id)
            reply = frame.message
            assert isinstance(
                reply, p.TrainResult | p.EvaluateResult | p.GenerateResult | p.ExportResult | p.JobError
            )
            return reply

    def job(self, message: p.Message) -> p.Reply:
        self.progress = []
        return self.wait(self.submit(message))

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(0, p.Shutdown())
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
