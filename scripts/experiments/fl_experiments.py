"""Learning experiments (issue 14): federated rounds with the chain's own learning code, no chain.

Owns: driving federated rounds over the bundled non-IID shards (data/sample/nodeK.jsonl) and
scoring each version on the held-out data/sample/test.jsonl; writing one PNG (test loss per
version) and one JSON of the figures per experiment into docs/experiments/. Must not: be imported
by the node, or implement any learning math of its own.

The math is the chain's: each node's update is a `Train` job of the real training worker process
(`python -m training.worker`, driven through training/supervisor.py exactly as the daemon drives it),
its blob is checked by `chain.lora.check_update_blob`, the units are combined by
`chain.consensus.aggregation.aggregate` (integer fixed point, the chain parameters' rule) and added to
the adapter by `next_adapter`, and test loss is the worker's `Evaluate` job over
`n_score_batches` batches with `chain.consensus.scoring.total_score`, as a VERSION block scores it.
The adversary distorts its blob with the devnet's `linguachaind.services.trainer.distort`.
What is left out is the blockchain around it (transactions, blocks, VDFs, votes, fees, rewards):
the chain adds consensus on these steps, not different math.

Experiments (`--experiment`, repeatable):
1. `central`: federated FFA-LoRA (fedavg) over the 3 shards vs one trainer on the pooled shards
   with the same total optimizer steps per version (3 x steps); the fraction of the central
   test-loss improvement that federated recovers.
2. `scheme`: FFA-LoRA vs lora-ab, both federated with fedavg.
3. `adversary`: node 2 sends its update sign-flipped and scaled x10, under fedavg and under the
   robust rules (trimmed-mean, norm-filtered fedavg); the honest fedavg run beside them.

    nice -n 15 .venv/bin/python scripts/experiments/fl_experiments.py --experiment 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import numpy.typing as npt
import trio

from chain.consensus.aggregation import UnitUpdate, aggregate, next_adapter
from chain.consensus.scoring import total_score
from chain.errors import ErrorCode
from chain.hashing import H
from chain.lora import LoraConfig, LoraLayout, check_update_blob, lora_layout
from chain.params import DEVNET, AggregationRule, AggregationScheme, ChainParams
from chain.types import UnitId
from linguachaind.services.trainer import Adversary, distort
from training import protocol as wp
from training.base_model import LC_TINY_DIR
from training.supervisor import TrainingSupervisor, WorkerConfig

ROOT = Path(__file__).resolve().parents[2]
GENESIS = bytes(H(b"linguachain experiments"))
SCHEMES = {"ffa-lora": AggregationScheme.FFA_LORA, "lora-ab": AggregationScheme.LORA_AB}
RULES = {
    "fedavg": AggregationRule.FEDAVG,
    "trimmed-mean": AggregationRule.TRIMMED_MEAN,
    "norm-filtered": AggregationRule.NORM_FILTERED_FEDAVG,
}
Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Run:
    """One federated (or central) run: how it trains and what it is called in the figures."""

    label: str
    scheme: str = "ffa-lora"
    rule: str = "fedavg"
    central: bool = False
    adversary: bool = False


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    model_dir: Path
    out_dir: Path
    versions: int
    steps: int
    batch_size: int
    lr: float
    threads: int
    eval_batch: int

    def params(self, run: Run) -> ChainParams:
        return dataclasses.replace(
            DEVNET, aggregation_scheme=SCHEMES[run.scheme], aggregation_rule=RULES[run.rule]
        )

    def shards(self) -> list[Path]:
        return sorted(self.data_dir.glob("node*.jsonl"))


def layout_from_ready(ready: wp.Ready, params: ChainParams) -> LoraLayout:
    modules = ((m.name, m.in_features, m.out_features) for m in ready.modules)
    return lora_layout(modules, LoraConfig.from_params(params))


async def train_unit(
    sup: TrainingSupervisor, s: Settings, data: Path, adapter: str, out: Path, steps: int, seed: int
) -> tuple[bytes, int]:
    """One node's update blob (the worker's Train job) and its example count."""
    request = wp.Train(
        data_path=str(data),
        adapter_path=adapter,
        out_path=str(out),
        steps=steps,
        epochs=1,
        batch_size=s.batch_size,
        lr_nano=wp.nano(s.lr),
        seed=seed,
        clip_norm_micro=DEVNET.clip_norm_micro,
        dp_noise_milli=0,
        dp_delta_nano=0,
    )
    result = await sup.train(request)
    return await trio.Path(out).read_bytes(), result.n_examples


async def test_loss(sup: TrainingSupervisor, s: Settings, adapter: str) -> float:
    """The test set's score as a VERSION block computes it (mean of per-batch mean losses)."""
    req = wp.Evaluate(str(s.data_dir / "test.jsonl"), adapter, DEVNET.n_score_batches, s.eval_batch)
    result = await sup.evaluate(req)
    return total_score(result.batch_losses_micro) / 1e6


def as_unit(blob: bytes, layout: LoraLayout, n_examples: int) -> UnitUpdate:
    update = check_update_blob(blob, layout)
    if isinstance(update, ErrorCode):
        raise RuntimeError(f"the worker wrote an invalid update blob: {update.name}")
    return UnitUpdate(UnitId(H(blob)), update.as_dict(), n_examples, staleness=0)


async def one_version(
    sup: TrainingSupervisor, s: Settings, run: Run, layout: LoraLayout, adapter: str, version: int, work: Path
) -> dict[str, UnitUpdate]:
    """The units of one round by author: 3 nodes on their shards, or one trainer on the pooled shards."""
    if run.central:
        pooled = work / "pooled.jsonl"
        if not pooled.exists():
            await trio.Path(pooled).write_bytes(b"".join(p.read_bytes() for p in s.shards()))
        steps = s.steps * len(s.shards())
        blob, n = await train_unit(sup, s, pooled, adapter, work / "central.blob", steps, 1000 + version)
        return {"central": as_unit(blob, layout, n)}
    units: dict[str, UnitUpdate] = {}
    for k, shard in enumerate(s.shards()):
        out, seed = work / f"node{k}.blob", 1000 * k + version
        blob, n = await train_unit(sup, s, shard, adapter, out, s.steps, seed)
        if run.adversary and k == len(s.shards()) - 1:
            blob = distort(distort(blob, layout, Adversary.SIGN_FLIP), layout, Adversary.SCALE)
        units[f"node{k}"] = as_unit(blob, layout, n)
    return units


@dataclass(frozen=True, slots=True)
class Curve:
    """A run's test loss and excluded units (`nodeK (REASON)`) per version, index = version."""

    losses: list[float]
    excluded: list[list[str]]


async def run_rounds(s: Settings, run: Run, work: Path, log: Log) -> Curve:
    """Test loss of versions 0..`s.versions` of one run, through one worker process."""
    params = s.params(run)
    lora = LoraConfig.from_params(params)
    config = WorkerConfig(s.model_dir, GENESIS, lora, device="cpu", threads=s.threads)
    sup = TrainingSupervisor(config)
    curve = Curve([], [[]])
    losses = curve.losses
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        layout = layout_from_ready(await sup.wait_ready(), params)
        shapes = {spec.name: spec.shape for spec in layout.exchanged()}
        adapter_path, current = "", {n: _zeros(shape) for n, shape in shapes.items()}
        losses.append(await test_loss(sup, s, adapter_path))
        log(f"[{run.label}] version 0: test loss {losses[0]:.4f}")
        for version in range(1, s.versions + 1):
            started = time.monotonic()
            units = await one_version(sup, s, run, layout, adapter_path, version, work)
            agg = aggregate(params, list(units.values()), shapes)
            author = {bytes(u.unit_id): k for k, u in units.items()}
            out = [f"{author[bytes(e.unit_id)]} ({e.reason.name})" for e in agg.excluded]
            curve.excluded.append(out)
            current, blob, _ = next_adapter(current, agg)
            adapter_file = work / f"{run.label}-v{version}.blob"
            await trio.Path(adapter_file).write_bytes(blob)
            adapter_path = str(adapter_file)
            losses.append(await test_loss(sup, s, adapter_path))
            log(
                f"[{run.label}] version {version}: test loss {losses[-1]:.4f} "
                f"({len(agg.included)} in, excluded {out or 'none'}, {time.monotonic() - started:.0f} s)"
            )
        nursery.cancel_scope.cancel()
    return curve


def _zeros(shape: tuple[int, int]) -> npt.NDArray[np.int32]:
    return np.zeros(shape, dtype=np.int32)


# -- experiments ---------------------------------------------------------------------------------

EXPERIMENTS: dict[str, tuple[str, tuple[Run, ...]]] = {
    "1": ("central", (Run("federated FFA-LoRA"), Run("central (pooled shards)", central=True))),
    "2": ("scheme", (Run("federated FFA-LoRA"), Run("federated lora-ab", scheme="lora-ab"))),
    "3": (
        "adversary",
        (
            Run("federated FFA-LoRA"),
            Run("fedavg, 1 of 3 adversarial", adversary=True),
            Run("trimmed-mean, 1 of 3 adversarial", rule="trimmed-mean", adversary=True),
            Run("norm-filtered, 1 of 3 adversarial", rule="norm-filtered", adversary=True),
        ),
    ),
}


def figures(name: str, curves: dict[str, list[float]]) -> dict[str, object]:
    """The JSON figures of one experiment: curves, final losses, improvements and the headline."""
    base = next(iter(curves.values()))[0]
    out: dict[str, object] = {
        "experiment": name,
        "test_loss": curves,
        "final_test_loss": {k: round(v[-1], 4) for k, v in curves.items()},
        "improvement": {k: round(base - v[-1], 4) for k, v in curves.items()},
    }
    if name == "central":
        fed, cen = (base - v[-1] for v in curves.values())
        out["fraction_recovered"] = round(fed / cen, 3) if cen > 0 else None
    return out


def plot(name: str, curves: dict[str, list[float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for label, losses in curves.items():
        ax.plot(range(len(losses)), losses, marker="o", label=label)
    ax.set_xlabel("version")
    ax.set_ylabel("test loss (mean token loss, test.jsonl)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


async def run_experiments(s: Settings, chosen: Sequence[str], work: Path, log: Log) -> dict[str, Path]:
    """Run the chosen experiments (a run shared by several is computed once); their JSON paths."""
    memo: dict[Run, Curve] = {}
    written: dict[str, Path] = {}
    s.out_dir.mkdir(parents=True, exist_ok=True)
    for key in chosen:
        name, runs = EXPERIMENTS[key]
        curves: dict[str, list[float]] = {}
        for run in runs:
            if run not in memo:
                memo[run] = await run_rounds(s, run, work, log)
            curves[run.label] = [round(x, 6) for x in memo[run].losses]
        result = figures(name, curves)
        result["excluded_per_version"] = {r.label: memo[r].excluded for r in runs}
        result["settings"] = settings_json(s)
        path = s.out_dir / f"{name}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        title = f"{name}: {len(s.shards())} non-IID shards, {s.steps} steps/node/version, lc-tiny"
        plot(name, curves, s.out_dir / f"{name}.png", title)
        log(f"experiment {key} ({name}): {json.dumps(result['final_test_loss'])}")
        if "fraction_recovered" in result:
            log(f"  fraction of the central improvement recovered: {result['fraction_recovered']}")
        written[name] = path
    return written


def settings_json(s: Settings) -> dict[str, object]:
    return {
        "data_dir": _rel(s.data_dir),
        "model": _rel(s.model_dir),
        "versions": s.versions,
        "steps_per_node": s.steps,
        "batch_size": s.batch_size,
        "lr": s.lr,
        "threads": s.threads,
        "clip_norm_micro": DEVNET.clip_norm_micro,
        "n_score_batches": DEVNET.n_score_batches,
        "lora_rank": DEVNET.lora_rank,
        "adversary": "node 2: sign-flip then x10 (linguachaind.services.trainer.distort)",
    }


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, list[str]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", action="append", choices=sorted(EXPERIMENTS), help="default: all")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data" / "sample")
    ap.add_argument("--model", type=Path, default=LC_TINY_DIR)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "experiments")
    ap.add_argument("--versions", type=int, default=5, help="versions after version 0")
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps per node per version")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-2, help="the devnet's train_lr")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the worker")
    ap.add_argument("--eval-batch", type=int, default=16, help="examples per evaluate forward pass")
    a = ap.parse_args(argv)
    s = Settings(
        a.data_dir, a.model, a.out_dir, a.versions, a.steps, a.batch_size, a.lr, a.threads, a.eval_batch
    )
    if not s.shards() or not (s.data_dir / "test.jsonl").exists():
        ap.error(f"{s.data_dir} needs node*.jsonl shards and a test.jsonl")
    return s, sorted(set(a.experiment or EXPERIMENTS))


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    import tempfile

    s, chosen = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lc-fl-") as tmp:
        return trio.run(run_experiments, s, chosen, Path(tmp), lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
