"""`training.base_model`'s header reader: the LoRA layout from safetensors headers alone (sharded
bases included), and clear `BaseModelError`s for headers that are oversized, truncated, not JSON, or
bases without safetensors or without the configured targets. Equality with the training worker's
layout on lc-tiny: tests/integration/test_base_layout_worker.py."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from chain.lora import LoraConfig
from chain.params import AggregationScheme
from training.base_model import (
    MAX_SAFETENSORS_HEADER,
    BaseModelError,
    linear_weights,
    lora_layout_of,
    safetensors_shapes,
)

CONFIG = LoraConfig(4, 8, ("q_proj", "v_proj"), AggregationScheme.FFA_LORA, 24)


def _save(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    safetensors.numpy.save_file({k: np.zeros(s, dtype=np.float32) for k, s in shapes.items()}, str(path))


def _raw(path: Path, header: bytes, declared: int | None = None) -> Path:
    size = len(header) if declared is None else declared
    path.write_bytes(struct.pack("<Q", size) + header)
    return path


def test_sharded_base_gives_every_target_with_in_and_out_features(tmp_path: Path) -> None:
    _save(
        tmp_path / "model-00001-of-00002.safetensors", {"m.l.0.q_proj.weight": (6, 3), "m.norm.weight": (3,)}
    )
    _save(
        tmp_path / "model-00002-of-00002.safetensors",
        {"m.l.0.v_proj.weight": (2, 3), "m.l.0.k_proj.weight": (2, 3)},
    )
    layout = lora_layout_of(tmp_path, CONFIG)
    assert [(m.name, m.in_features, m.out_features) for m in layout.modules] == [
        ("m.l.0.q_proj", 3, 6),
        ("m.l.0.v_proj", 3, 2),
    ]
    assert [s.name for s in layout.exchanged()] == [
        "base_model.model.m.l.0.q_proj.lora_B.weight",
        "base_model.model.m.l.0.v_proj.lora_B.weight",
    ]


def test_metadata_and_non_matrix_tensors_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    safetensors.numpy.save_file(
        {"a.q_proj.weight": np.zeros((2, 2), np.float32), "a.q_proj.bias": np.zeros((2,), np.float32)},
        str(path),
        metadata={"format": "pt"},
    )
    assert safetensors_shapes(path) == {"a.q_proj.weight": (2, 2), "a.q_proj.bias": (2,)}
    assert linear_weights(tmp_path) == [("a.q_proj", 2, 2)]


def test_a_tensor_in_two_shards_is_refused(tmp_path: Path) -> None:
    _save(tmp_path / "a.safetensors", {"x.q_proj.weight": (2, 2)})
    _save(tmp_path / "b.safetensors", {"x.q_proj.weight": (2, 2)})
    with pytest.raises(BaseModelError, match="two weight files"):
        lora_layout_of(tmp_path, CONFIG)


def test_a_base_without_the_targets_is_refused(tmp_path: Path) -> None:
    _save(tmp_path / "model.safetensors", {"x.k_proj.weight": (2, 2)})
    with pytest.raises(BaseModelError, match="lora_targets"):
        lora_layout_of(tmp_path, CONFIG)


def test_a_pickle_only_base_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(BaseModelError, match="safetensors only"):
        lora_layout_of(tmp_path, CONFIG)


def test_an_oversized_header_length_is_refused_before_reading(tmp_path: Path) -> None:
    path = _raw(tmp_path / "model.safetensors", b"{}", declared=MAX_SAFETENSORS_HEADER + 1)
    with pytest.raises(BaseModelError, match="at most"):
        safetensors_shapes(path)


@pytest.mark.parametrize(
    ("header", "declared", "message"),
    [
        (b'{"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}', 4096, "truncated"),
        (b"{not json", None, "not JSON"),
        (b"[1, 2]", None, "not a JSON object"),
        (json.dumps({"a": {"shape": [2, -1]}}).encode(), None, "no valid shape"),
        (json.dumps({"a": {"dtype": "F32"}}).encode(), None, "no valid shape"),
    ],
)
def test_bad_headers_get_a_clear_error(
    tmp_path: Path, header: bytes, declared: int | None, message: str
) -> None:
    path = _raw(tmp_path / "model.safetensors", header, declared)
    with pytest.raises(BaseModelError, match=message):
        safetensors_shapes(path)


def test_a_file_shorter_than_the_length_prefix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x01\x02")
    with pytest.raises(BaseModelError, match="too short"):
        safetensors_shapes(path)
