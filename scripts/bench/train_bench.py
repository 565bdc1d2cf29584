"""Training benchmark: the worker's training tokens/s beside a plain peft loop, and evaluate tokens/s.

Owns: measurements only (prints a table; writes only under a temporary directory). Must not: be
imported by the node.

The baseline is a plain peft training loop in this process on the same base model (lc-tiny unless
`--model`), the same LoRA configuration (FFA-LoRA: A frozen, B trained), the same examples, batch
size, steps and torch thread count, measured in the same run, alternating with the worker so that
load from other processes hits both alike. Worker figures: `loop` is the worker's own tokens/s over
its optimizer steps; `job` divides by the whole job as the daemon sees it through the supervisor
(data check, adapter load, clip, fixed-point blob, atomic write, frames). Overhead = 1 - worker/plain.

    .venv/bin/python scripts/bench/train_bench.py --rounds 5 --steps 15   # 30 min at load average 20
    .venv/bin/python scripts/bench/train_bench.py --quick                 # 10 steps, 2 rounds
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
import trio
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from chain.lora import LoraConfig, LoraModule, frozen_a
from chain.params import DEVNET
from training import protocol as p
from training.base_model import LC_TINY_DIR
from training.supervisor import TrainingSupervisor, WorkerConfig

GENESIS = bytes(32)


def corpus(n: int) -> list[dict[str, str]]:
    """`n` text examples: paragraphs of standard-library docstrings (the same on one Python version)."""
    texts: list[str] = []
    for module in (json, random, statistics, inspect, tempfile, argparse):
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj) or ""
            texts += [para for para in doc.split("\n\n") if 80 <= len(para) <= 400]
    return [{"text": t} for t in sorted(set(texts))[:n]]


def plain_peft_tokens_per_s(model_dir: Path, rows: list[dict[str, str]], args: argparse.Namespace) -> float:
    """A plain peft loop: FFA-LoRA on q/v, AdamW on B, right-padded batches, labels = ids."""
    tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32)
    lora = LoraConfig.from_params(DEVNET)
    config = PeftLoraConfig(
        r=lora.rank, lora_alpha=lora.alpha, target_modules=list(lora.targets), lora_dropout=0.0
    )
    peft = get_peft_model(model, config)
    for name, module in peft.get_base_model().named_modules():
        if hasattr(module, "lora_A"):
            a = module.lora_A["default"].weight
            a.data.copy_(
                torch.from_numpy(frozen_a(GENESIS, LoraModule(name, a.shape[1], a.shape[0]), lora.rank))
            )
            a.requires_grad_(False)
    params = [q for q in peft.parameters() if q.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.0)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    order = list(range(len(rows)))
    random.Random(1).shuffle(order)
    peft.train()
    tokens, started = 0, time.perf_counter()
    for step in range(args.steps):
        batch = [order[(step * args.batch + i) % len(order)] for i in range(args.batch)]
        ids = [
            [tok.bos_token_id, *tok(rows[i]["text"], add_special_tokens=False)["input_ids"], tok.eos_token_id]
            for i in batch
        ]
        width = max(map(len, ids))
        x = torch.tensor([s + [pad] * (width - len(s)) for s in ids])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in ids])
        labels = x.masked_fill(mask == 0, -100)
        loss = peft(input_ids=x, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
    return tokens / (time.perf_counter() - started)


async def worker_rounds(
    model_dir: Path, rows: list[dict[str, str]], data: Path, out: Path, args: argparse.Namespace
) -> dict[str, list[float]]:
    """Alternate worker jobs and plain loops in one run; tokens/s of each."""
    cfg = WorkerConfig(model_dir, GENESIS, LoraConfig.from_params(DEVNET), device="cpu", threads=args.threads)
    figures: dict[str, list[float]] = {"loop": [], "job": [], "plain": [], "evaluate": []}
    supervisor = TrainingSupervisor(cfg)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        ready = await supervisor.wait_ready()
        print(f"worker ready: {ready.device}, {ready.dtype}, {ready.threads} threads", flush=True)
        request = p.Train(str(data), "", str(out), args.steps, 0, args.batch, p.nano(2e-3), 1, 10**6, 0, 0)
        await supervisor.train(dataclasses.replace(request, steps=3))  # warm-up
        plain_peft_tokens_per_s(model_dir, rows, argparse.Namespace(steps=3, batch=args.batch))
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            result = await supervisor.train(request)
            wall = time.perf_counter() - t0
            figures["loop"].append(result.tokens_per_s_milli / 1000)
            figures["job"].append(result.tokens / wall)
            figures["plain"].append(
                await trio.to_thread.run_sync(plain_peft_tokens_per_s, model_dir, rows, args)
            )
            ev = await supervisor.evaluate(p.Evaluate(str(data), "", 8, args.batch))
            figures["evaluate"].append(ev.tokens_per_s_milli / 1000)
            print("  round:", {k: round(v[-1]) for k, v in figures.items()}, flush=True)
        nursery.cancel_scope.cancel()
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=LC_TINY_DIR)
    ap.add_argument("--threads", type=int, default=1, help="torch threads, the same for both")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.rounds = 10, 2
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bench.jsonl"
        rows = corpus(256)
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        figures = trio.run(worker_rounds, args.model, rows, data, Path(tmp) / "u.safetensors", args)
    med = {k: statistics.median(v) for k, v in figures.items()}
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(f"\n{args.model.name}, {len(rows)} examples, batch {args.batch}, {args.steps} steps, ")
    print(f"{args.threads} torch thread(s), {device}; medians of {args.rounds} alternating rounds")
    print(f"{'figure':34} {'tokens/s':>10} {'vs plain peft':>14}")
    for key, label in (
        ("plain", "plain peft loop (baseline)"),
        ("loop", "worker train, its step loop"),
        ("job", "worker train, whole job (supervisor)"),
        ("evaluate", "worker evaluate"),
    ):
        print(f"{label:34} {med[key]:10.0f} {med[key] / med['plain']:13.2f}x")
    print(f"worker overhead (loop): {100 * (1 - med['loop'] / med['plain']):.1f}%")
    print(f"worker overhead (job):  {100 * (1 - med['job'] / med['plain']):.1f}%")


if __name__ == "__main__":
    main()
