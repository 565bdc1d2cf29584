"""The training worker process (`python -m training.worker`) on a real model: train, evaluate,
generate, export, cancel, bad input (issue 13 acceptance). One worker serves the whole module."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from chain.hashing import H
from chain.lora import LoraLayout, LoraModule, Update, check_update_blob, from_fixed, update_blob
from chain.params import AggregationScheme
from tests.support.tiny_lm import base_model_dir, sample_rows, write_jsonl
from tests.support.worker_client import ROOT, WorkerClient
from training import protocol as p
from training.worker.update import dp_epsilon, l2_norm

GENESIS = bytes(range(32))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return base_model_dir(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="module")
def worker(base: Path) -> Iterator[WorkerClient]:
    client = WorkerClient(["--model", str(base), "--genesis-hash", GENESIS.hex(), "--device", "cpu"])
    yield client
    client.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "d.jsonl", sample_rows())


def layout_of(ready: p.Ready) -> LoraLayout:
    modules = tuple(LoraModule(m.name, m.in_features, m.out_features) for m in ready.modules)
    return LoraLayout(ready.rank, ready.alpha, ready.scheme, ready.fp_shift, modules)


def train(
    data: Path, out: Path, *, steps: int = 30, clip: int = 10**6, noise: int = 0, adapter: str = ""
) -> p.Train:
    return p.Train(str(data), adapter, str(out), steps, 0, 8, p.nano(2e-2), 3, clip, noise, p.nano(1e-5))


def mean_loss(result: p.Reply) -> float:
    assert isinstance(result, p.EvaluateResult), result
    return sum(result.batch_losses_micro) / len(result.batch_losses_micro) / 1e6


def test_ready_describes_the_model_and_the_ffa_layout(worker: WorkerClient) -> None:
    ready = worker.ready
    assert ready.protocol_version == p.PROTOCOL_VERSION
    assert (ready.device, ready.dtype, ready.scheme) == ("cpu", "float32", AggregationScheme.FFA_LORA)
    assert ready.modules
    assert all(m.name.endswith(("q_proj", "v_proj")) for m in ready.modules)


def test_training_lowers_the_loss_on_its_own_data(worker: WorkerClient, data: Path, tmp_path: Path) -> None:
    before = worker.job(p.Evaluate(str(data), "", 4, 16))
    out = tmp_path / "update.safetensors"
    result = worker.job(train(data, out, steps=20))
    assert isinstance(result, p.TrainResult), result
    first_loss = worker.progress[0].loss_micro
    assert [e.step for e in worker.progress] == list(range(1, 21))
    assert all(e.tokens_per_s_milli > 0 for e in worker.progress)
    blob = out.read_bytes()
    assert (result.blob_hash, result.byte_size) == (H(blob), len(blob))
    assert (result.n_examples, result.steps, result.dp_epsilon_micro) == (32, 20, 0)
    assert isinstance(check_update_blob(blob, layout_of(worker.ready)), Update)
    after = worker.job(p.Evaluate(str(data), str(out), 4, 16))
    assert mean_loss(after) < mean_loss(before) - 0.001
    # training from the trained adapter starts from it: the same first batch (same seed) has a lower loss
    again = worker.job(train(data, tmp_path / "u2.safetensors", steps=1, adapter=str(out)))
    assert isinstance(again, p.TrainResult)
    assert worker.progress[0].loss_micro < first_loss


def test_the_update_is_clipped_and_dp_noise_is_declared(
    worker: WorkerClient, data: Path, tmp_path: Path
) -> None:
    lay = layout_of(worker.ready)
    clipped = worker.job(train(data, tmp_path / "c.safetensors", steps=5, clip=1_000))
    assert isinstance(clipped, p.TrainResult), clipped
    update = check_update_blob((tmp_path / "c.safetensors").read_bytes(), lay)
    assert isinstance(update, Update)
    norm = l2_norm({n: from_fixed(v, lay.fp_shift) for n, v in update.tensors})
    assert norm <= 1e-3
    assert clipped.update_norm_micro <= 1_000
    noised = worker.job(train(data, tmp_path / "n.safetensors", steps=2, clip=1_000, noise=1_500))
    assert isinstance(noised, p.TrainResult), noised
    assert noised.dp_epsilon_micro == p.micro(dp_epsilon(1.5, 1e-5))
    n_coords = sum(s.shape[0] * s.shape[1] for s in lay.exchanged())
    expected = 1.5 * 1e-3 * np.sqrt(n_coords)  # the noise dominates the clipped update
    assert abs(noised.update_norm_micro / 1e6 - expected) < 0.2 * expected


def test_cancel_stops_training_between_steps(worker: WorkerClient, data: Path, tmp_path: Path) -> None:
    job = worker.submit(train(data, tmp_path / "x.safetensors", steps=100_000))
    frame = worker.read()
    assert frame is not None
    assert isinstance(frame.message, p.Progress)
    worker.send(job, p.Cancel())
    reply = worker.wait(job)
    assert isinstance(reply, p.JobError)
    assert reply.code == p.JobErrorCode.CANCELLED
    assert not (tmp_path / "x.safetensors").exists()
    assert isinstance(worker.job(p.Generate("a", "", 2, 0, 0)), p.GenerateResult)


def test_bad_data_and_bad_adapters_fail_the_job_not_the_worker(
    worker: WorkerClient, data: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 3}\n')
    reply = worker.job(train(bad, tmp_path / "o.safetensors"))
    assert isinstance(reply, p.JobError)
    assert reply.code == p.JobErrorCode.BAD_DATA
    assert f"{bad}:2" in reply.message
    long = write_jsonl(tmp_path / "long.jsonl", [{"text": "x" * 100_000}])
    reply = worker.job(p.Evaluate(str(long), "", 1, 1))
    assert isinstance(reply, p.JobError)
    assert "over the context" in reply.message
    lay = layout_of(worker.ready)
    wrong = update_blob({s.name: np.zeros((s.shape[1], s.shape[0]), np.int32) for s in lay.exchanged()})
    (tmp_path / "wrong.safetensors").write_bytes(wrong)
    reply = worker.job(p.Evaluate(str(data), str(tmp_path / "wrong.safetensors"), 1, 8))
    assert isinstance(reply, p.JobError)
    assert reply.code == p.JobErrorCode.BAD_ADAPTER
    assert "UPDATE_WRONG_SHAPE" in reply.message
    assert isinstance(worker.job(p.Evaluate(str(data), "", 1, 8)), p.EvaluateResult)


def test_evaluate_is_deterministic_and_independent_of_the_forward_batch(
    worker: WorkerClient, data: Path
) -> None:
    first = worker.job(p.Evaluate(str(data), "", 8, 16))
    second = worker.job(p.Evaluate(str(data), "", 8, 16))
    single = worker.job(p.Evaluate(str(data), "", 8, 1))
    assert isinstance(first, p.EvaluateResult)
    assert isinstance(second, p.EvaluateResult)
    assert isinstance(single, p.EvaluateResult)
    assert dataclasses.replace(first, tokens_per_s_milli=0) == dataclasses.replace(
        second, tokens_per_s_milli=0
    )
    assert len(first.batch_losses_micro) == 8
    assert (first.n_examples, first.n_pairs) == (32, 8)
    assert 0 <= first.n_exact <= first.n_pairs
    for a, b in zip(first.batch_losses_micro, single.batch_losses_micro, strict=True):
        assert abs(a - b) <= 50  # micro-units: float noise only (PROTOCOL §6.5 tolerance is 20 000)


@pytest.mark.slow  # a second torch process: about 40 s on two busy cores
def test_export_loads_with_plain_transformers_and_peft_in_a_fresh_process(
    worker: WorkerClient, base: Path, data: Path, tmp_path: Path
) -> None:
    update = tmp_path / "u.safetensors"
    assert isinstance(worker.job(train(data, update, steps=10)), p.TrainResult)
    exported = worker.job(p.Export(str(update), str(tmp_path / "export"), True))
    assert isinstance(exported, p.ExportResult), exported
    greedy = worker.job(p.Generate("the quick", str(update), 8, 0, 0))
    assert isinstance(greedy, p.GenerateResult)
    assert greedy.n_tokens == 8
    assert greedy == worker.job(p.Generate("the quick", str(update), 8, 0, 0))
    script = ROOT / "tests" / "support" / "load_export.py"
    out = subprocess.run(
        [sys.executable, str(script), str(base), exported.adapter_dir, exported.merged_dir, "the quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["max_logit_diff"] < 1e-3
    assert report["peft_text"] == greedy.text
    assert report["merged_text"] == greedy.text


@pytest.mark.slow  # its own worker process
def test_lora_ab_trains_and_exchanges_both_matrices(base: Path, data: Path, tmp_path: Path) -> None:
    client = WorkerClient(
        ["--model", str(base), "--genesis-hash", GENESIS.hex(), "--device", "cpu", "--scheme", "lora-ab"]
    )
    try:
        lay = layout_of(client.ready)
        assert lay.scheme == AggregationScheme.LORA_AB
        assert len(lay.exchanged()) == 2 * len(lay.modules)
        out = tmp_path / "ab.safetensors"
        result = client.job(train(data, out, steps=3))
        assert isinstance(result, p.TrainResult), result
        update = check_update_blob(out.read_bytes(), lay)
        assert isinstance(update, Update)
        moved = {name.rsplit(".", 2)[-2] for name, value in update.tensors if np.any(value != 0)}
        assert moved == {"lora_A", "lora_B"}
    finally:
        client.close()
