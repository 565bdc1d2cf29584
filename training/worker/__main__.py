"""`python -m training.worker --model DIR ...`: load the base once, then serve jobs over a pipe.

Owns: the command line, the ready handshake, the request loop (one job at a time, in order) and a
reader thread that turns `Cancel` frames into a flag the running job checks between steps. Frames go
to the original stdout only; file descriptor 1 is pointed at stderr so a stray print from a library
cannot corrupt the pipe. Must not: outlive its parent (Linux parent-death signal, and EOF on stdin
ends it), or let one failed job end the process: each becomes a `JobError` reply.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from chain.errors import ErrorCode
from chain.lora import LoraConfig
from chain.params import AggregationScheme
from chain.types import Hash32
from training import protocol as p
from training.worker.checks import preflight

if TYPE_CHECKING:  # torch loads only after the preflight checks (a refusal costs no torch import)
    from training.worker.model import ModelOptions, WorkerModel

log = logging.getLogger("training.worker")


def _hex32(text: str) -> str:
    try:
        if text == "" or len(bytes.fromhex(text)) == 32:
            return text
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not 64 hex characters")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m training.worker", description=__doc__)
    ap.add_argument("--model", required=True, type=Path, help="local Hugging Face causal LM directory")
    ap.add_argument("--weights-hash", default="", type=_hex32, help="pinned weights hash: refuse other bases")
    ap.add_argument("--genesis-hash", required=True, type=_hex32, help="genesis hash: seeds the A matrices")
    ap.add_argument("--lora-rank", type=int, default=4)
    ap.add_argument("--lora-alpha", type=int, default=8)
    ap.add_argument("--lora-targets", default="q_proj,v_proj")
    ap.add_argument("--scheme", choices=["ffa-lora", "lora-ab"], default="ffa-lora")
    ap.add_argument("--fp-shift", type=int, default=24)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--quantize", choices=["none", "4bit"], default="none")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: cores - 1, at least 1)")
    return ap.parse_args(argv)


def options_from(args: argparse.Namespace) -> ModelOptions:
    from training.worker.model import ModelOptions

    scheme = AggregationScheme.FFA_LORA if args.scheme == "ffa-lora" else AggregationScheme.LORA_AB
    lora = LoraConfig(
        args.lora_rank,
        args.lora_alpha,
        tuple(t for t in args.lora_targets.split(",") if t),
        scheme,
        args.fp_shift,
    )
    return ModelOptions(
        model_dir=args.model,
        genesis_hash=bytes.fromhex(args.genesis_hash),
        lora=lora,
        expected_hash=bytes.fromhex(args.weights_hash) if args.weights_hash else None,
        device=args.device,
        quantize=args.quantize,
        threads=args.threads,
    )


class Channel:
    """Frames in from stdin (a reader thread), frames out to the pipe (one lock)."""

    def __init__(self, rx: BinaryIO, tx: BinaryIO) -> None:
        self._rx, self._tx = rx, tx
        self._lock = threading.Lock()
        self.requests: queue.Queue[p.Frame | None] = queue.Queue()
        self.cancelled: set[int] = set()

    def send(self, job_id: int, message: p.WorkerMessage) -> None:
        data = p.encode_frame(job_id, message)
        with self._lock:
            self._tx.write(data)
            self._tx.flush()

    def read_forever(self) -> None:
        """Reader thread: queue requests, record cancels; None on EOF or a broken stream."""
        buffer = p.FrameBuffer()
        while True:
            chunk = self._rx.read1(65536) if hasattr(self._rx, "read1") else self._rx.read(65536)
            if not chunk:
                break
            buffer.feed(chunk)
            frame = buffer.next_frame()
            while frame is not None:
                if isinstance(frame, ErrorCode):
                    log.error("bad frame from the parent (%s); stopping", frame.name)
                    self.requests.put(None)
                    return
                if isinstance(frame.message, p.Cancel):
                    self.cancelled.add(frame.job_id)
                else:
                    self.requests.put(frame)
                frame = buffer.next_frame()
        self.requests.put(None)


def ready_message(model: WorkerModel) -> p.Ready:
    lay = model.layout
    return p.Ready(
        protocol_version=p.PROTOCOL_VERSION,
        model_id=Hash32(model.model_id),
        model_dir=str(model.options.model_dir),
        device=model.device_name,
        dtype=model.dtype_name,
        threads=_threads(),
        rank=lay.rank,
        alpha=lay.alpha,
        scheme=lay.scheme,
        fp_shift=lay.fp_shift,
        modules=tuple(p.ModuleInfo(m.name, m.in_features, m.out_features) for m in lay.modules),
    )


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


def handle(model: WorkerModel, channel: Channel, frame: p.Frame) -> p.Reply:
    """The reply to one job; every failure becomes a `JobError`."""
    from training.worker.evaluate import run_evaluate
    from training.worker.export import run_export
    from training.worker.generate import run_generate
    from training.worker.model import WorkerError
    from training.worker.train import run_train

    job, msg = frame.job_id, frame.message
    try:
        if isinstance(msg, p.Train):
            return run_train(model, msg, lambda ev: channel.send(job, ev), lambda: job in channel.cancelled)
        if isinstance(msg, p.Evaluate):
            return run_evaluate(model, msg)
        if isinstance(msg, p.Generate):
            return run_generate(model, msg)
        if isinstance(msg, p.Export):
            return run_export(model, msg)
        return p.JobError(p.JobErrorCode.BAD_REQUEST, f"{type(msg).__name__} is not a job")
    except WorkerError as exc:
        return p.JobError(exc.code, str(exc)[:4096])
    except Exception as exc:  # a bug: report it on the job, keep serving the next one
        log.error("job %d failed:\n%s", job, traceback.format_exc())
        return p.JobError(p.JobErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"[:4096])
    finally:
        channel.cancelled.discard(job)


def serve(model: WorkerModel, channel: Channel) -> None:
    channel.send(0, ready_message(model))
    while True:
        frame = channel.requests.get()
        if frame is None or isinstance(frame.message, p.Shutdown):
            return
        channel.send(frame.job_id, handle(model, channel, frame))


def _die_with_parent() -> None:
    """Exit as soon as the parent daemon is gone, even mid-step (torch releases the GIL meanwhile).

    Not `prctl(PR_SET_PDEATHSIG)` (vdf/worker.py found it first): that signal follows the parent
    *thread* that forked us, and trio forks from a cached worker thread that exits after 10 s idle,
    which SIGKILLed workers still loading the base model on a busy machine (exit code -9 before
    ready). A watchdog thread polls the parent pid instead; EOF on stdin also ends us between jobs."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _claim_stdout() -> BinaryIO:
    """The pipe to the parent, with fd 1 redirected to stderr for everything else."""
    pipe = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return pipe


def main(argv: list[str] | None = None) -> int:
    _die_with_parent()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon stops us itself
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s worker %(message)s")
    args = parse_args(argv)
    pipe = _claim_stdout()
    channel = Channel(sys.stdin.buffer, pipe)
    pinned = bytes.fromhex(args.weights_hash) if args.weights_hash else None
    refusal = preflight(args.model, pinned, args.device, args.quantize)
    if refusal is not None:
        channel.send(0, refusal)
        return 2
    from training.worker.model import WorkerError, WorkerModel

    try:
        model = WorkerModel(options_from(args))
    except WorkerError as exc:
        channel.send(0, p.JobError(exc.code, str(exc)[:4096]))
        return 2
    except (OSError, ValueError) as exc:
        channel.send(0, p.JobError(p.JobErrorCode.UNSUPPORTED, f"cannot load the base model: {exc}"[:4096]))
        return 2
    threading.Thread(target=channel.read_forever, name="frames", daemon=True).start()
    serve(model, channel)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # the reader thread may sit in a blocking read of stdin: do not wait for it
