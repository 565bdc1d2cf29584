"""The training supervisor: the daemon's trio service around `python -m training.worker`.

Owns (ARCHITECTURE.md §1, §4): starting the worker process, the readiness handshake (protocol
version, model id = pinned weights hash, device), sending jobs and matching replies by job id,
relaying progress to a callback and to `statistics()`, restarting a worker that died with
exponential backoff (logged loudly, counted in the statistics), and stopping it on shutdown: cancel
the running job, ask it to exit, then SIGKILL after `stop_timeout_s`. Must not: import torch (the
worker does), block the trio loop, or leave a child process behind on any exit path.

A job whose worker dies fails at once with `JobFailed(WORKER_DIED)`; the next job goes to the
restarted worker. A worker that refuses to start for a reason a restart cannot fix (model mismatch,
4-bit without CUDA) leaves the supervisor in state `failed`, and every job fails with that reason.
This follows vdf/prover.py, the house pattern for a child process driven from trio.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import trio

from chain.errors import ErrorCode, LinguaChainError
from chain.lora import LoraConfig
from chain.params import AggregationScheme
from training import protocol as p

if TYPE_CHECKING:  # trio-stubs in this venv hide trio.TaskStatus from mypy
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

_ROOT: Final = str(Path(__file__).resolve().parent.parent)
_PERMANENT: Final = frozenset({p.JobErrorCode.MODEL_MISMATCH, p.JobErrorCode.UNSUPPORTED})
R = TypeVar("R", p.TrainResult, p.EvaluateResult, p.GenerateResult, p.ExportResult)
ProgressCallback = Callable[[int, p.Progress], None]


class JobFailed(LinguaChainError):
    """Raised when a worker job fails: the worker's error code and message, or WORKER_DIED."""

    def __init__(self, code: p.JobErrorCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How to start the worker: the base model, the chain's LoRA configuration, the device."""

    model_dir: Path
    genesis_hash: bytes
    lora: LoraConfig
    weights_hash: bytes | None = None  # the pinned model id; None: accept what the worker loads
    device: str = "auto"
    quantize: str = "none"
    threads: int = 0
    python: str = sys.executable

    def argv(self) -> list[str]:
        scheme = "ffa-lora" if self.lora.scheme == AggregationScheme.FFA_LORA else "lora-ab"
        argv = [self.python, "-m", "training.worker", "--model", str(self.model_dir)]
        argv += ["--genesis-hash", self.genesis_hash.hex(), "--lora-rank", str(self.lora.rank)]
        argv += ["--lora-alpha", str(self.lora.alpha), "--lora-targets", ",".join(self.lora.targets)]
        argv += ["--scheme", scheme, "--fp-shift", str(self.lora.fp_shift), "--device", self.device]
        argv += ["--quantize", self.quantize, "--threads", str(self.threads)]
        if self.weights_hash is not None:
            argv += ["--weights-hash", self.weights_hash.hex()]
        return argv


@dataclass(frozen=True, slots=True)
class LastJob:
    job_id: int
    kind: str  # "train", "evaluate", "generate", "export"
    outcome: str  # "ok" or the error code's name
    seconds: float
    tokens_per_s: float


@dataclass(frozen=True, slots=True)
class TrainingStatistics:
    state: str  # starting | ready | busy | restarting | failed | stopped
    pid: int | None
    device: str
    dtype: str
    model_id: str  # hex weights hash
    starts: int
    crashes: int
    jobs_ok: int
    jobs_failed: int
    last_job: LastJob | None
    tokens_per_s: float  # of the last progress event or result
    last_error: str


@dataclass(slots=True)
class _Pending:
    kind: str
    started: float
    done: trio.Event = field(default_factory=trio.Event)
    reply: p.Reply | None = None


class _WorkerGone(Exception):
    """Internal: the current worker process ended (EOF, bad frame or failed handshake)."""


class TrainingSupervisor:
    """Runs the worker in the node's nursery: `await nursery.start(supervisor.run)`, then
    `await supervisor.train(...)` etc. from any task; calls are serialised by the worker."""

    def __init__(
        self,
        config: WorkerConfig,
        *,
        on_progress: ProgressCallback | None = None,
        start_timeout_s: float = 300.0,
        stop_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.config = config
        self._on_progress = on_progress
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._proc: trio.Process | None = None
        self._ready: p.Ready | None = None
        self._ready_event = trio.Event()
        self._send_lock = trio.Lock()
        self._pending: dict[int, _Pending] = {}
        self._next_job = 1
        self._state = "starting"
        self._starts = self._crashes = self._jobs_ok = self._jobs_failed = 0
        self._last_job: LastJob | None = None
        self._tokens_per_s = 0.0
        self._last_error = ""
        self._failure: JobFailed | None = None

    # -- the service -----------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the worker and keep one running until cancelled (then stop it)."""
        task_status.started()
        crashes_in_row = 0
        try:
            while True:
                was_ready = await self._one_worker()
                self._fail_pending(p.JobErrorCode.WORKER_DIED, "the training worker exited mid-job")
                if self._failure is not None:
                    await self._stay_failed()
                crashes_in_row = 1 if was_ready else crashes_in_row + 1
                delay = min(self._backoff_max_s, self._backoff_initial_s * 2.0 ** (crashes_in_row - 1))
                self._state = "restarting"
                log.warning(
                    "training worker died; restarting it in %.1f s (%d in a row)", delay, crashes_in_row
                )
                await trio.sleep(delay)
        finally:
            self._state = "stopped"
            self._fail_pending(p.JobErrorCode.WORKER_DIED, "the training supervisor stopped")
            if self._failure is None:  # later callers fail at once instead of waiting forever
                self._failure = JobFailed(p.JobErrorCode.WORKER_DIED, "the training supervisor stopped")
            self._ready_event.set()

    async def _stay_failed(self) -> None:
        self._state = "failed"
        log.error("training worker cannot start: %s (not restarting)", self._failure)
        self._ready_event.set()  # waiting callers wake up and get the failure
        await trio.sleep_forever()

    async def _one_worker(self) -> bool:
        """Start a worker, serve it until it exits; True if it got ready before it ended."""
        self._state = "starting"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(x for x in (_ROOT, env.get("PYTHONPATH", "")) if x)
        pipe = subprocess.PIPE
        try:
            proc = await trio.lowlevel.open_process(
                self.config.argv(), stdin=pipe, stdout=pipe, stderr=pipe, env=env
            )
        except OSError as exc:  # no such interpreter, out of processes: retried with backoff
            self._crashes += 1
            self._last_error = f"cannot start the training worker: {exc}"
            log.error("%s", self._last_error)
            return False
        self._proc = proc
        self._starts += 1
        log.info("training worker started, pid %d", proc.pid)
        stopping = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._relay_stderr, proc)
                try:
                    await self._read_frames(proc)
                except _WorkerGone as exc:
                    self._last_error = str(exc)
                    log.warning("training worker pid %d: %s", proc.pid, exc)
                with trio.move_on_after(2):  # a dying worker's last stderr lines still get logged
                    await proc.wait()
                if proc.returncode is None:
                    proc.send_signal(signal.SIGKILL)  # the stderr relay ends at EOF
        except BaseException:  # cancelled: the node is shutting down
            stopping = True
            raise
        finally:
            with trio.CancelScope(shield=True):
                if stopping:
                    await self._stop_gracefully(proc)
                await _reap(proc)
            self._proc = None
            was_ready, self._ready = self._ready is not None, None
            woken, self._ready_event = self._ready_event, trio.Event()
            woken.set()  # waiters re-check: the failure, or the next worker's event
        if self._failure is None:
            self._crashes += 1
            log.warning("training worker pid %d died (exit code %s)", proc.pid, proc.returncode)
        return was_ready

    async def _read_frames(self, proc: trio.Process) -> None:
        assert proc.stdout is not None
        buffer = p.FrameBuffer()
        with trio.move_on_after(self._start_timeout_s) as handshake:
            await self._handshake(proc.stdout, buffer)
        if handshake.cancelled_caught:
            raise _WorkerGone(f"no ready message within {self._start_timeout_s:.0f} s")
        while True:
            frame = await _next_frame(proc.stdout, buffer)
            if frame is None:
                raise _WorkerGone("the worker closed its pipe")
            self._dispatch(frame)

    async def _handshake(self, stream: trio.abc.ReceiveStream, buffer: p.FrameBuffer) -> None:
        frame = await _next_frame(stream, buffer)
        if frame is None:
            raise _WorkerGone("the worker exited before it was ready")
        msg = frame.message
        if isinstance(msg, p.JobError) and frame.job_id == 0:
            if msg.code in _PERMANENT:
                self._failure = JobFailed(msg.code, msg.message)
            raise _WorkerGone(f"the worker refused to start: {msg.code.name}: {msg.message}")
        if not isinstance(msg, p.Ready):
            raise _WorkerGone(f"expected a ready message, got {type(msg).__name__}")
        problem = self._check_ready(msg)
        if problem:
            self._failure = JobFailed(p.JobErrorCode.MODEL_MISMATCH, problem)
            raise _WorkerGone(problem)
        self._ready = msg
        self._state = "ready"
        self._ready_event.set()
        log.info("training worker ready: model %s on %s (%s)", msg.model_id.hex()[:16], msg.device, msg.dtype)

    def _check_ready(self, msg: p.Ready) -> str:
        if msg.protocol_version != p.PROTOCOL_VERSION:
            return f"worker protocol {msg.protocol_version}, supervisor {p.PROTOCOL_VERSION}"
        pinned = self.config.weights_hash
        if pinned is not None and msg.model_id != pinned:
            return f"worker loaded model {msg.model_id.hex()}, the chain pins {pinned.hex()}"
        lora = self.config.lora
        if (msg.rank, msg.alpha, msg.scheme, msg.fp_shift) != (
            lora.rank,
            lora.alpha,
            lora.scheme,
            lora.fp_shift,
        ):
            return "the worker's LoRA configuration differs from the chain's"
        return ""

    def _dispatch(self, frame: p.Frame) -> None:
        msg = frame.message
        if isinstance(msg, p.Progress):
            self._tokens_per_s = msg.tokens_per_s_milli / 1000
            if self._on_progress is not None:
                self._on_progress(frame.job_id, msg)
            return
        pending = self._pending.pop(frame.job_id, None)
        if pending is None:
            log.debug("reply to job %d that nobody waits for (cancelled)", frame.job_id)
            return
        if isinstance(msg, p.TrainResult | p.EvaluateResult | p.GenerateResult | p.ExportResult | p.JobError):
            pending.reply = msg
        else:
            pending.reply = p.JobError(p.JobErrorCode.INTERNAL, f"unexpected {type(msg).__name__} reply")
        self._finish(frame.job_id, pending)
        pending.done.set()

    def _finish(self, job_id: int, pending: _Pending) -> None:
        reply = pending.reply
        seconds = time.monotonic() - pending.started
        if isinstance(reply, p.JobError) or reply is None:
            self._jobs_failed += 1
            outcome = reply.code.name if reply is not None else "WORKER_DIED"
            rate = 0.0
        else:
            self._jobs_ok += 1
            outcome = "ok"
            rate = getattr(reply, "tokens_per_s_milli", 0) / 1000
            self._tokens_per_s = rate or self._tokens_per_s
        self._last_job = LastJob(job_id, pending.kind, outcome, round(seconds, 3), rate)
        if not self._pending and self._state == "busy":
            self._state = "ready"

    def _fail_pending(self, code: p.JobErrorCode, message: str) -> None:
        for job_id, pending in list(self._pending.items()):
            pending.reply = p.JobError(code, message)
            self._finish(job_id, pending)
            pending.done.set()
        self._pending.clear()

    async def _relay_stderr(self, proc: trio.Process) -> None:
        assert proc.stderr is not None
        buf = b""
        while chunk := await proc.stderr.receive_some(65536):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.strip():
                    log.info("worker %d: %s", proc.pid, line[:500].decode("utf-8", "replace"))
            buf = buf[-4096:]

    async def _stop_gracefully(self, proc: trio.Process) -> None:
        """Cancel the running job, ask the worker to exit, wait `stop_timeout_s` (then _reap kills)."""
        if proc.returncode is None and proc.stdin is not None:
            try:
                for job_id in list(self._pending):
                    await proc.stdin.send_all(p.encode_frame(job_id, p.Cancel()))
                await proc.stdin.send_all(p.encode_frame(0, p.Shutdown()))
                with trio.move_on_after(self._stop_timeout_s):
                    await proc.wait()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # it is gone already
        if proc.returncode is None:
            log.warning(
                "training worker pid %d did not stop in %.0f s; killing it", proc.pid, self._stop_timeout_s
            )
        else:
            log.info("training worker pid %d stopped", proc.pid)

    # -- jobs ------------------------------------------------------------------------------------

    async def wait_ready(self) -> p.Ready:
        """The worker's handshake once it is ready; `JobFailed` if it cannot start at all."""
        while True:
            if self._failure is not None:
                raise self._failure
            if self._ready is not None:
                return self._ready
            await self._ready_event.wait()  # set on ready or failure; replaced when a worker ends

    async def train(self, request: p.Train) -> p.TrainResult:
        return await self._job(request, p.TrainResult)

    async def evaluate(self, request: p.Evaluate) -> p.EvaluateResult:
        return await self._job(request, p.EvaluateResult)

    async def generate(self, request: p.Generate) -> p.GenerateResult:
        return await self._job(request, p.GenerateResult)

    async def export(self, request: p.Export) -> p.ExportResult:
        return await self._job(request, p.ExportResult)

    async def _job(self, request: p.Train | p.Evaluate | p.Generate | p.Export, want: type[R]) -> R:
        """Send one job and wait for its reply. Cancelling the caller cancels the job in the worker."""
        await self.wait_ready()
        job_id, self._next_job = self._next_job, self._next_job + 1
        pending = _Pending(type(request).__name__.lower(), time.monotonic())
        self._pending[job_id] = pending
        self._state = "busy"
        try:
            if not await self._send(job_id, request):
                self._pending.pop(job_id, None)
                pending.reply = p.JobError(p.JobErrorCode.WORKER_DIED, "the training worker is not running")
                self._finish(job_id, pending)
            else:
                await pending.done.wait()
        except BaseException:
            if self._pending.pop(job_id, None) is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await self._send(job_id, p.Cancel())
                if not self._pending and self._state == "busy":
                    self._state = "ready"
            raise
        reply = pending.reply
        if isinstance(reply, want):
            return reply
        if isinstance(reply, p.JobError):
            raise JobFailed(reply.code, reply.message)
        raise JobFailed(p.JobErrorCode.INTERNAL, f"expected {want.__name__}, got {type(reply).__name__}")

    async def _send(self, job_id: int, message: p.Message) -> bool:
        """False if no worker runs; a send into a dying worker is answered by the reader's EOF."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            return False
        try:
            async with self._send_lock:
                await proc.stdin.send_all(p.encode_frame(job_id, message))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the reader sees the EOF and fails the pending job
        return True

    # -- introspection ---------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def statistics(self) -> TrainingStatistics:
        ready = self._ready
        return TrainingStatistics(
            state=self._state,
            pid=self.pid,
            device=ready.device if ready else "",
            dtype=ready.dtype if ready else "",
            model_id=ready.model_id.hex() if ready else "",
            starts=self._starts,
            crashes=self._crashes,
            jobs_ok=self._jobs_ok,
            jobs_failed=self._jobs_failed,
            last_job=self._last_job,
            tokens_per_s=self._tokens_per_s,
            last_error=self._last_error,
        )


async def _next_frame(stream: trio.abc.ReceiveStream, buffer: p.FrameBuffer) -> p.Frame | None:
    """The next frame, None at EOF; `_WorkerGone` for a bad frame (the stream is unusable)."""
    while True:
        frame = buffer.next_frame()
        if isinstance(frame, ErrorCode):
            raise _WorkerGone(f"the worker sent a bad frame ({frame.name})")
        if frame is not None:
            return frame
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        buffer.feed(chunk)


async def _reap(proc: trio.Process) -> None:
    """SIGKILL (if still alive) and wait; close the pipes."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            await stream.aclose()
    await proc.wait()
