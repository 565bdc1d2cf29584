"""The async, cancellable VDF prover: chiavdf in a child process driven from trio (PROTOCOL §4.2).

Owns: `VdfProver` (one `python -m vdf.worker` process, restarted with backoff when it crashes, killed
at once when the caller is cancelled) and the one-shot `prove_in_process`. Must not: import chiavdf
(the child does), know chain state, or leave a child process behind (every exit path kills and reaps).

Why a process: chiavdf's prove holds the CPU for the whole computation, cannot be interrupted from
Python, and its memory grows with the iterations. Killing the child is the only instant cancel, and
it returns the memory to the system.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

import trio

from vdf.core import FORM_SIZE, VdfError, bits_ok, iterations_ok

log = logging.getLogger(__name__)

_ROOT: Final = str(Path(__file__).resolve().parent.parent)
_MAX_LINE: Final = 4 * FORM_SIZE + 256
START_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class ProverStatistics:
    proofs: int  # successful proofs
    cancelled: int  # computations killed because the caller was cancelled
    crashes: int  # worker processes that died on their own
    starts: int  # worker processes started
    busy: bool
    pid: int | None


class _LineReader:
    """Newline-delimited reads from a trio receive stream (no line API in trio itself)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buf = bytearray()

    async def readline(self) -> str | None:
        """The next line without its newline, or None at EOF."""
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[: i + 1]
                return line.decode("ascii", "replace")
            if len(self._buf) > _MAX_LINE:
                raise VdfError("VDF worker sent an over-long line")
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                return None
            self._buf += chunk


class VdfProver:
    """Proves VDFs in a child process, one at a time. Use as `async with VdfProver() as prover:`.

    `prove` is cancel-safe: cancelling the calling task kills the child immediately (the next call
    starts a fresh one, about 0.1 s). A child that dies on its own is restarted with exponential
    backoff (`backoff_initial_s` doubling up to `backoff_max_s`) and the request retried, up to
    `max_attempts` times per request; then `VdfError` is raised and the daemon stays up."""

    def __init__(
        self,
        *,
        python: str = sys.executable,
        max_attempts: int = 4,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 5.0,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self._argv = [python, "-m", "vdf.worker"]
        self._observe = observe  # called with the seconds each finished proof took (metrics)
        self._max_attempts = max_attempts
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._lock = trio.Lock()
        self._proc: trio.Process | None = None
        self._reader: _LineReader | None = None
        self._crashes_in_row = 0
        self._proofs = 0
        self._cancelled = 0
        self._crashes = 0
        self._starts = 0
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> VdfProver:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Kill the child (if any). Safe to call twice; `prove` afterwards raises `VdfError`."""
        self._closed = True
        await self._kill()

    @property
    def closed(self) -> bool:
        """True once `aclose()` was called (also from another task while a request runs)."""
        return self._closed

    @property
    def pid(self) -> int | None:
        """The current child's process id (None when no child runs)."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def statistics(self) -> ProverStatistics:
        return ProverStatistics(
            proofs=self._proofs,
            cancelled=self._cancelled,
            crashes=self._crashes,
            starts=self._starts,
            busy=self._lock.locked(),
            pid=self.pid,
        )

    # -- proving -------------------------------------------------------------------------------

    async def prove(self, challenge: bytes, discriminant_bits: int, iterations: int) -> tuple[bytes, bytes]:
        """(output, proof), computed in the child. Raises `VdfError` on bad parameters or when the
        child keeps crashing; `trio.Cancelled` kills the child at once."""
        if not bits_ok(discriminant_bits) or not iterations_ok(iterations):
            raise VdfError(f"unsupported VDF parameters: bits={discriminant_bits!r} iters={iterations!r}")
        request = f"prove {bytes(challenge).hex()} {discriminant_bits} {iterations}\n".encode("ascii")
        async with self._lock:
            for _attempt in range(self._max_attempts):
                if self._closed:
                    raise VdfError("the VDF prover is closed")
                if self._crashes_in_row:
                    await trio.sleep(self._backoff_s(self._crashes_in_row))
                started = time.monotonic()
                answer = await self._exchange(request)
                if answer is None and self.closed:  # aclose() during the request: a planned stop
                    await self._kill()
                    raise VdfError("the VDF prover is closed")
                if answer is None:  # the child died on its own: restart and retry
                    self._crashes += 1
                    self._crashes_in_row += 1
                    status = await self._exit_status()
                    log.warning(
                        "VDF worker died during a request (%s; %d in a row); restarting",
                        status,
                        self._crashes_in_row,
                    )
                    await self._kill()
                    continue
                self._crashes_in_row = 0
                result = self._parse(answer)
                if self._observe is not None:
                    self._observe(time.monotonic() - started)
                return result
            raise VdfError(f"VDF worker crashed {self._max_attempts} times in a row")

    async def _exit_status(self) -> str:
        """How the current child ended, for the log: its exit code or the signal that killed it."""
        proc = self._proc
        if proc is None:
            return "no process"
        with trio.move_on_after(1.0):  # it closed its output: the exit follows at once
            await proc.wait()
        code = proc.returncode
        if code is None:
            return f"pid {proc.pid} closed its output but still runs"
        if code < 0:
            try:
                return f"pid {proc.pid} killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"pid {proc.pid} killed by signal {-code}"
        return f"pid {proc.pid} exited with status {code}"

    def _backoff_s(self, n: int) -> float:
        return float(min(self._backoff_max_s, self._backoff_initial_s * math.pow(2, n - 1)))

    async def _exchange(self, request: bytes) -> str | None:
        """Send one request and read its answer; None if the child died. Kills the child on cancel."""
        try:
            proc, reader = await self._ensure_started()
            assert proc.stdin is not None
            await proc.stdin.send_all(request)
            return await reader.readline()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return None
        except BaseException:  # trio.Cancelled above all: the computation must stop now
            self._cancelled += 1
            await self._kill()
            raise

    def _parse(self, answer: str) -> tuple[bytes, bytes]:
        parts = answer.split(" ", 2)
        if parts[0] == "ok" and len(parts) == 3:
            try:
                output, proof = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
            except ValueError:
                output = proof = b""
            if len(output) == FORM_SIZE and len(proof) == FORM_SIZE:
                self._proofs += 1
                return output, proof
        if parts[0] == "err":
            raise VdfError(f"VDF worker refused the request: {answer[4:]}")
        raise VdfError(f"VDF worker sent an unexpected answer: {answer[:80]!r}")

    async def _ensure_started(self) -> tuple[trio.Process, _LineReader]:
        if self._proc is not None and self._reader is not None and self._proc.returncode is None:
            return self._proc, self._reader
        await self._kill()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH", "")) if p)
        proc = await trio.lowlevel.open_process(
            self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self._proc = proc
        self._starts += 1
        assert proc.stdout is not None
        self._reader = _LineReader(proc.stdout)
        ready: str | None = None
        with trio.move_on_after(START_TIMEOUT_S):
            ready = await self._reader.readline()
        if ready != "ready":
            raise trio.BrokenResourceError(f"VDF worker did not start (said {ready!r})")
        log.debug("VDF worker started, pid %d", proc.pid)
        return proc, self._reader

    async def _kill(self) -> None:
        proc, self._proc, self._reader = self._proc, None, None
        if proc is None:
            return
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):  # reaping after SIGKILL is immediate
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    await stream.aclose()
            await proc.wait()


async def prove_in_process(challenge: bytes, discriminant_bits: int, iterations: int) -> tuple[bytes, bytes]:
    """One-shot: (output, proof) computed in a fresh child process, killed at once on cancel.

    Long-lived callers (the daemon's VDF service) keep one `VdfProver` instead, which saves the
    child's start-up (about 0.1 s) on every call."""
    async with VdfProver() as prover:
        return await prover.prove(challenge, discriminant_bits, iterations)
