#!/usr/bin/env python3
"""How far do honest evaluations of the same adapter on the same test set disagree? (PROTOCOL §5.3,
§6.5: `score_tolerance_micro` and `score_slash_tolerance_micro` must sit far above this.)

Owns: a measurement only (prints a table). Must not: be imported by the project.

Scores lc-tiny plus a random non-zero adapter on up to 128 text examples (paragraphs of this
repository's docs) in 8 score batches, exactly as the worker's `evaluate` does (per-example mean
token loss, batch means in micro-units), under configurations that differ the way machines do:
forward batch size (padding changes the matmul shapes), thread count, and arithmetic (float32 as
on any CPU node, bfloat16 as the worker uses on a CUDA GPU), against a float64 reference.

    nice -n 10 .venv/bin/python scripts/bench/score_variation.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from chain.consensus.scoring import batch_bounds
from chain.lora import LoraConfig, to_fixed, update_blob
from chain.params import DEVNET
from training.datafile import Example
from training.worker.evaluate import example_losses
from training.worker.model import ModelOptions, WorkerModel

ROOT = Path(__file__).resolve().parents[2]
N_BATCHES = 8


def examples(limit: int = 128) -> list[Example]:
    out: list[Example] = []
    for path in sorted((ROOT / "docs").glob("*.md")):
        for para in path.read_text().split("\n\n"):
            text = " ".join(para.split())
            if 80 <= len(text) <= 600 and not text.startswith("|"):
                out.append(Example("text", "", text, len(out) + 1))
    return out[:limit]


def batch_scores(model: WorkerModel, data: list[Example], forward_batch: int) -> list[int]:
    losses: list[float] = []
    with torch.no_grad():
        for lo in range(0, len(data), forward_batch):
            losses += example_losses(model, data[lo : lo + forward_batch])[0]
    return [round(sum(losses[a:b]) / (b - a) * 1e6) for a, b in batch_bounds(len(data), N_BATCHES)]


def main() -> None:
    data = examples()
    model = WorkerModel(
        ModelOptions(
            ROOT / "training" / "lc_tiny", b"\x00" * 32, LoraConfig.from_params(DEVNET), device="cpu"
        )
    )
    rng = np.random.default_rng(1)
    tensors = {
        s.name: to_fixed(rng.normal(0, 0.02, s.shape), DEVNET.fp_shift) for s in model.layout.exchanged()
    }
    with tempfile.NamedTemporaryFile(suffix=".safetensors") as f:
        f.write(update_blob(tensors))
        f.flush()
        model.set_adapter(f.name)
    model.peft.eval()
    runs: dict[str, list[int]] = {}
    model.peft.double()
    runs["float64, batch 16 (reference)"] = batch_scores(model, data, 16)
    model.peft.float()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for fb in (1, 16, 64):
            runs[f"float32, {threads} thread(s), batch {fb}"] = batch_scores(model, data, fb)
    model.peft.to(torch.bfloat16)
    runs["bfloat16 (as on a CUDA worker), batch 16"] = batch_scores(model, data, 16)
    ref = np.array(runs["float64, batch 16 (reference)"])
    print(f"{len(data)} examples, {N_BATCHES} score batches; reference batch scores (micro): {ref.tolist()}")
    print(f"{'configuration':<44} {'max |batch - float64|':>22} {'|total - float64|':>18}")
    for name, scores in runs.items():
        diff = np.abs(np.array(scores) - ref)
        total = abs(sum(scores) // N_BATCHES - int(ref.sum()) // N_BATCHES)
        print(f"{name:<44} {int(diff.max()):>19} µ {total:>15} µ")
    f32 = [np.array(s) for n, s in runs.items() if n.startswith("float32")]
    spread = max(int(np.abs(a - b).max()) for a in f32 for b in f32)
    print(f"largest disagreement between two float32 configurations: {spread} micro")


if __name__ == "__main__":
    main()
