"""The `evaluate` job: per-example mean token loss of base + adapter, in score batches (PROTOCOL §6.5).

Owns: the loss of each example (mean over its labelled tokens: the completion of a prompt/completion
example, the whole text of a text example), the split of the examples in file order into `n_batches`
contiguous batches (batch i holds examples [i*n//k, (i+1)*n//k)), each batch's mean in micro-units,
and exact match. Must not: depend on the forward-pass batch size beyond float noise, or shuffle.

Exact match: greedy decoding reproduces the completion exactly when, at every completion position,
the most likely next token given the true prefix is the true token. That is read off the same
teacher-forced forward pass as the loss, so it costs no generation.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from chain.types import Micro
from training.datafile import Example
from training.protocol import Evaluate, EvaluateResult, JobErrorCode, micro, milli
from training.worker.model import IGNORE, WorkerError, WorkerModel
from training.worker.train import load_examples


def batch_bounds(n: int, k: int) -> list[tuple[int, int]]:
    return [(i * n // k, (i + 1) * n // k) for i in range(k)]


def run_evaluate(model: WorkerModel, request: Evaluate) -> EvaluateResult:
    if request.n_batches < 1 or request.batch_size < 1:
        raise WorkerError(JobErrorCode.BAD_REQUEST, "n_batches and batch_size must be positive")
    examples = load_examples(model, request.data_path)
    if len(examples) < request.n_batches:
        raise WorkerError(
            JobErrorCode.BAD_DATA, f"{len(examples)} examples cannot fill {request.n_batches} score batches"
        )
    model.set_adapter(request.adapter_path)
    model.peft.eval()
    started = time.perf_counter()
    losses: list[float] = []
    exact: list[bool] = []
    n_tokens = 0
    with torch.no_grad():
        for lo in range(0, len(examples), request.batch_size):
            chunk = examples[lo : lo + request.batch_size]
            chunk_losses, chunk_exact, chunk_tokens = example_losses(model, chunk)
            losses += chunk_losses
            exact += chunk_exact
            n_tokens += chunk_tokens
    seconds = max(time.perf_counter() - started, 1e-9)
    batch_losses = tuple(
        Micro(micro(sum(losses[a:b]) / (b - a))) for a, b in batch_bounds(len(examples), request.n_batches)
    )
    pairs = [ok for ok, e in zip(exact, examples, strict=True) if e.kind == "pair"]
    return EvaluateResult(
        batch_losses_micro=batch_losses,
        n_examples=len(examples),
        n_tokens=n_tokens,
        n_pairs=len(pairs),
        n_exact=sum(pairs),
        tokens_per_s_milli=milli(n_tokens / seconds),
    )


def example_losses(model: WorkerModel, examples: list[Example]) -> tuple[list[float], list[bool], int]:
    """(mean token loss per example, exact match per example, tokens processed) in one forward pass."""
    batch = model.collate(examples)
    logits = model.peft(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, :-1, :].float()
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE
    safe = targets.masked_fill(~mask, 0)
    token_loss = F.cross_entropy(logits.transpose(1, 2), safe, reduction="none") * mask
    counts = mask.sum(dim=1).clamp(min=1)
    per_example = (token_loss.sum(dim=1) / counts).tolist()
    hits = ((logits.argmax(dim=-1) == safe) | ~mask).all(dim=1).tolist()
    return [float(x) for x in per_example], [bool(h) for h in hits], int(batch["attention_mask"].sum())
