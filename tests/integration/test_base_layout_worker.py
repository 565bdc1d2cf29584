"""The daemon's LoRA layout read from lc-tiny's safetensors header (`training.base_model.lora_layout_of`)
is the training worker's handshake layout, byte for byte: a real worker process is started on lc-tiny
and its `Ready` modules go through the daemon's own conversion (`LazyWorker.get`: `lora_layout`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from chain.lora import LoraConfig, LoraLayout, lora_layout
from chain.params import DEVNET, AggregationScheme
from tests.support.worker_client import WorkerClient
from training.base_model import LC_TINY_DIR, lora_layout_of

GENESIS = bytes(range(32))
# the devnet targets plus two whose in and out features differ (768 -> 256, 256 -> 259)
TARGETS = ("q_proj", "v_proj", "down_proj", "lm_head")
PARAMS = dataclasses.replace(DEVNET, lora_targets=TARGETS, aggregation_scheme=AggregationScheme.LORA_AB)


@pytest.fixture(scope="module")
def worker() -> Iterator[WorkerClient]:
    p = PARAMS
    argv = ["--model", str(LC_TINY_DIR), "--genesis-hash", GENESIS.hex(), "--device", "cpu"]
    argv += ["--lora-rank", str(p.lora_rank), "--lora-alpha", str(p.lora_alpha)]
    argv += ["--lora-targets", ",".join(TARGETS), "--scheme", "lora-ab", "--fp-shift", str(p.fp_shift)]
    client = WorkerClient(argv)
    yield client
    client.close()


def handshake_layout(worker: WorkerClient) -> LoraLayout:
    modules = [(m.name, m.in_features, m.out_features) for m in worker.ready.modules]
    return lora_layout(modules, PARAMS)


def test_header_layout_is_the_workers_handshake_layout(worker: WorkerClient) -> None:
    from_worker = handshake_layout(worker)
    from_header = lora_layout_of(LC_TINY_DIR, LoraConfig.from_params(PARAMS))
    assert from_header == from_worker
    assert from_header.exchanged() == from_worker.exchanged()  # names and shapes of every tensor
    assert from_header.max_blob_bytes() == from_worker.max_blob_bytes()
    # the worker's own layout fields, as it reported them
    ready = worker.ready
    assert (ready.rank, ready.alpha, ready.scheme, ready.fp_shift) == (
        from_header.rank,
        from_header.alpha,
        from_header.scheme,
        from_header.fp_shift,
    )
    assert [(m.name, m.in_features, m.out_features) for m in ready.modules] == [
        (m.name, m.in_features, m.out_features) for m in from_header.modules
    ]


def test_every_configured_target_kind_is_in_the_layout(worker: WorkerClient) -> None:
    layout = lora_layout_of(LC_TINY_DIR, LoraConfig.from_params(PARAMS))
    kinds = {m.name.rsplit(".", 1)[-1] for m in layout.modules}
    assert kinds == set(TARGETS)
    shapes = {m.name: (m.in_features, m.out_features) for m in layout.modules}
    assert shapes["lm_head"] == (256, 259)
    assert shapes["model.layers.0.mlp.down_proj"] == (768, 256)
    assert len(layout.modules) == 4 * 3 + 1 == len(worker.ready.modules)
