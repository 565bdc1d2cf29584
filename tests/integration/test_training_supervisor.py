"""training.supervisor with real worker processes: SIGKILL mid-job, restart, A matrices, refusals.

Each worker start imports torch (several seconds on 2 cores), so this file starts as few as it can.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import trio
from safetensors.numpy import load_file

from chain.lora import LoraConfig, LoraModule, frozen_a, tensor_name
from chain.params import DEVNET
from tests.support.tiny_lm import base_model_dir, sample_rows, write_jsonl
from tests.support.waiting import wait_until
from training import protocol as p
from training.supervisor import JobFailed, TrainingSupervisor, WorkerConfig

GENESIS = bytes(range(32))
LORA = LoraConfig.from_params(DEVNET)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return base_model_dir(tmp_path_factory.mktemp("base"))


def config(model_dir: Path, *, weights_hash: bytes | None = None, quantize: str = "none") -> WorkerConfig:
    return WorkerConfig(
        model_dir, GENESIS, LORA, weights_hash=weights_hash, device="cpu", quantize=quantize, threads=1
    )


def exported_a(directory: Path) -> dict[str, np.ndarray]:
    tensors = load_file(str(directory / "adapter_model.safetensors"))
    return {k: v for k, v in tensors.items() if ".lora_A." in k}


@pytest.mark.slow  # two worker starts and a kill: about 50 s on two busy cores
async def test_sigkill_mid_job_fails_the_job_and_restarts_an_identical_worker(
    model_dir: Path, tmp_path: Path
) -> None:
    progress: list[tuple[int, p.Progress]] = []
    supervisor = TrainingSupervisor(
        config(model_dir), on_progress=lambda job, ev: progress.append((job, ev)), backoff_initial_s=0.1
    )
    with trio.fail_after(400):
        ready = await _sigkill_scenario(supervisor, progress, tmp_path)
    assert supervisor.statistics().state == "stopped"
    assert supervisor.pid is None
    first, second = tmp_path / "first", tmp_path / "second"

    # Two worker processes derived the same A matrices, equal to chain.lora's (PROTOCOL §6.2).
    a1, a2 = exported_a(first), exported_a(second)
    assert a1.keys() == a2.keys()
    assert len(a1) == len(ready.modules)
    for module in ready.modules:
        name = tensor_name(module.name, "A")
        expected = frozen_a(
            GENESIS, LoraModule(module.name, module.in_features, module.out_features), LORA.rank
        )
        assert np.array_equal(a1[name], a2[name])
        assert np.array_equal(a1[name], expected)


async def _sigkill_scenario(
    supervisor: TrainingSupervisor, progress: list[tuple[int, p.Progress]], tmp_path: Path
) -> p.Ready:
    data = write_jsonl(tmp_path / "d.jsonl", sample_rows())
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        ready = await supervisor.wait_ready()
        assert supervisor.statistics().state == "ready"
        assert supervisor.statistics().model_id == ready.model_id.hex()
        first = await supervisor.export(p.Export("", str(tmp_path / "first"), False))
        pid = supervisor.pid
        assert pid is not None

        async def kill_on_first_progress() -> None:
            await wait_until(lambda: bool(progress), timeout_s=120)
            os.kill(pid, signal.SIGKILL)

        nursery.start_soon(kill_on_first_progress)
        long_job = p.Train(
            str(data), "", str(tmp_path / "u.safetensors"), 100_000, 0, 4, 1_000_000, 1, 10**6, 0, 0
        )
        with pytest.raises(JobFailed) as failed:
            await supervisor.train(long_job)
        assert failed.value.code == p.JobErrorCode.WORKER_DIED
        assert "exited mid-job" in failed.value.message
        assert not (tmp_path / "u.safetensors").exists()

        second = await supervisor.export(p.Export("", str(tmp_path / "second"), False))
        stats = supervisor.statistics()
        assert stats.starts == 2
        assert stats.crashes == 1
        assert stats.pid not in (None, pid)
        assert stats.state == "ready"
        assert stats.last_job is not None
        assert (stats.last_job.kind, stats.last_job.outcome) == ("export", "ok")
        assert stats.jobs_failed == 1
        assert Path(first.adapter_dir) == tmp_path / "first"
        assert Path(second.adapter_dir) == tmp_path / "second"
        nursery.cancel_scope.cancel()
    return ready


async def test_a_base_with_another_weights_hash_is_refused_for_good(model_dir: Path) -> None:
    supervisor = TrainingSupervisor(config(model_dir, weights_hash=b"\x11" * 32), backoff_initial_s=0.1)
    with trio.fail_after(300):
        await _refused_scenario(supervisor)


async def _refused_scenario(supervisor: TrainingSupervisor) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        with pytest.raises(JobFailed) as refused:
            await supervisor.wait_ready()
        assert refused.value.code == p.JobErrorCode.MODEL_MISMATCH
        assert "11" * 32 in refused.value.message
        with pytest.raises(JobFailed):
            await supervisor.generate(p.Generate("x", "", 1, 0, 0))
        stats = supervisor.statistics()
        assert (stats.state, stats.starts) == ("failed", 1)
        nursery.cancel_scope.cancel()


async def test_four_bit_on_cpu_is_refused_with_a_clear_error(model_dir: Path) -> None:
    supervisor = TrainingSupervisor(config(model_dir, quantize="4bit"))
    with trio.fail_after(300):
        await _four_bit_scenario(supervisor)


async def _four_bit_scenario(supervisor: TrainingSupervisor) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        with pytest.raises(JobFailed) as refused:
            await supervisor.wait_ready()
        assert refused.value.code == p.JobErrorCode.UNSUPPORTED
        assert "4bit" in refused.value.message
        assert "CUDA" in refused.value.message
        nursery.cancel_scope.cancel()


async def test_a_worker_that_cannot_be_spawned_is_retried_with_backoff(model_dir: Path) -> None:
    cfg = WorkerConfig(model_dir, GENESIS, LORA, device="cpu", python="/nonexistent/python3")
    supervisor = TrainingSupervisor(cfg, backoff_initial_s=0.01, backoff_max_s=0.05)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            await wait_until(lambda: supervisor.statistics().crashes >= 3)
            stats = supervisor.statistics()
            assert stats.state in ("starting", "restarting")
            assert "cannot start the training worker" in stats.last_error
            with trio.move_on_after(0.2) as waited:
                await supervisor.wait_ready()  # blocks: no worker is ready
            assert waited.cancelled_caught
            nursery.cancel_scope.cancel()
    assert supervisor.statistics().state == "stopped"
    with pytest.raises(JobFailed, match="stopped"):
        await supervisor.wait_ready()
