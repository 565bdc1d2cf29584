"""The `train` job: from the global adapter, on a JSONL file, to a clipped fixed-point update blob.

Owns: the local training loop (AdamW on the trainable LoRA matrices, seeded batch order, progress
after every step, cancellation between steps) and writing the update blob atomically. Must not:
read the request pipe (the request loop passes `is_cancelled`), or return an update that
`chain.lora.check_update_blob` would refuse.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from chain.hashing import H
from chain.lora import update_blob
from chain.types import Hash32, Micro
from training.datafile import DataFileError, Example, read_examples
from training.protocol import JobErrorCode, Progress, Train, TrainResult, micro, milli
from training.worker.model import WorkerError, WorkerModel
from training.worker.update import finish_update

ProgressSink = Callable[[Progress], None]


def load_examples(model: WorkerModel, path: str) -> list[Example]:
    """The examples of a data file, checked against the model's context; `WorkerError(BAD_DATA)`."""
    try:
        return read_examples(path, max_tokens=model.max_len, count_tokens=model.count_tokens)
    except DataFileError as exc:
        raise WorkerError(JobErrorCode.BAD_DATA, str(exc)) from None


def batch_order(n: int, batch_size: int, total_steps: int, seed: int) -> Iterator[list[int]]:
    """`total_steps` batches of example indices: seeded shuffles of all examples, epoch after epoch."""
    rng = random.Random(seed)
    pending: list[int] = []
    for _ in range(total_steps):
        if len(pending) < batch_size:
            order = list(range(n))
            rng.shuffle(order)
            pending += order
        batch, pending = pending[:batch_size], pending[batch_size:]
        yield batch


def total_steps(request: Train, n_examples: int) -> int:
    if request.steps:
        return int(request.steps)
    return max(1, request.epochs) * math.ceil(n_examples / request.batch_size)


def run_train(
    model: WorkerModel, request: Train, progress: ProgressSink, is_cancelled: Callable[[], bool]
) -> TrainResult:
    if request.batch_size < 1 or request.lr_nano == 0 or request.clip_norm_micro == 0:
        raise WorkerError(JobErrorCode.BAD_REQUEST, "batch_size, lr and clip_norm must be positive")
    if request.dp_noise_milli and not 0 < request.dp_delta_nano < 10**9:
        raise WorkerError(JobErrorCode.BAD_REQUEST, "DP noise needs a delta in (0, 1)")
    examples = load_examples(model, request.data_path)
    model.set_adapter(request.adapter_path)
    start_values = model.exchanged()
    steps = total_steps(request, len(examples))
    losses, tokens, seconds = _loop(model, request, examples, steps, progress, is_cancelled)
    delta = {n: v - start_values[n] for n, v in model.exchanged().items()}
    noise = request.dp_noise_milli / 1000
    finished = finish_update(
        delta,
        model.layout,
        clip_norm=request.clip_norm_micro / 1e6,
        noise_multiplier=noise,
        dp_delta=request.dp_delta_nano / 1e9,
    )
    blob = update_blob(finished.tensors)
    write_atomically(Path(request.out_path), blob)
    return TrainResult(
        blob_hash=Hash32(H(blob)),
        byte_size=len(blob),
        n_examples=len(examples),
        steps=steps,
        tokens=tokens,
        train_loss_micro=Micro(micro(float(np.mean(losses)))),
        update_norm_micro=micro(finished.norm),
        dp_epsilon_micro=micro(finished.dp_epsilon),
        tokens_per_s_milli=milli(tokens / max(seconds, 1e-9)),
    )


def _loop(
    model: WorkerModel,
    request: Train,
    examples: list[Example],
    steps: int,
    progress: ProgressSink,
    is_cancelled: Callable[[], bool],
) -> tuple[list[float], int, float]:
    """Run the optimizer steps; (loss per step, tokens seen, seconds)."""
    torch.manual_seed(request.seed)
    params = model.trainable()
    optimizer = torch.optim.AdamW(params, lr=request.lr_nano / 1e9, weight_decay=0.0)
    model.peft.train()
    losses: list[float] = []
    tokens = 0
    started = time.perf_counter()
    for step, indices in enumerate(batch_order(len(examples), request.batch_size, steps, request.seed), 1):
        if is_cancelled():
            raise WorkerError(JobErrorCode.CANCELLED, f"cancelled after {step - 1} of {steps} steps")
        batch = model.collate([examples[i] for i in indices])
        loss = model.peft(**batch).loss
        if not torch.isfinite(loss):
            raise WorkerError(JobErrorCode.BAD_REQUEST, f"the loss diverged at step {step} (lower the lr)")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        tokens += int(batch["attention_mask"].sum())
        rate = tokens / max(time.perf_counter() - started, 1e-9)
        progress(Progress(step, steps, Micro(micro(losses[-1])), milli(rate)))
    model.peft.eval()
    for p in params:
        p.requires_grad_(False)
    return losses, tokens, time.perf_counter() - started


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, rename: a reader never sees half a blob."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WorkerError(JobErrorCode.BAD_REQUEST, f"cannot write {path}: {exc.strerror}") from None
