"""chain.lora: frozen A vector, fixed point, layout, and the strict update-blob check (PROTOCOL §6.2)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from chain.errors import ErrorCode
from chain.lora import (
    LoraLayout,
    LoraModule,
    Update,
    check_update_blob,
    from_fixed,
    frozen_a,
    lora_layout,
    tensor_name,
    to_fixed,
    update_blob,
)
from chain.params import DEVNET, AggregationScheme

GENESIS = bytes(range(32))
MODULES = [
    ("model.layers.0.self_attn.q_proj", 64, 64),
    ("model.layers.0.self_attn.k_proj", 64, 32),
    ("model.layers.0.self_attn.v_proj", 64, 32),
    ("model.layers.0.mlp.up_proj", 64, 128),
    ("lm_head", 64, 259),
]

# The pinned vector: A of one module for GENESIS (PROTOCOL §6.2). Changing the generator breaks it.
PINNED_MODULE = LoraModule("model.layers.0.self_attn.q_proj", 64, 64)
PINNED_FIRST = [-0.042546674609184265, -0.010323630645871162, 0.07737123221158981, 0.04390593245625496]
PINNED_HASH = "039ea8782ea5f59efd91ef7af3875d8738112a88ca88e824be9fe584de861870"


def layout(scheme: AggregationScheme = AggregationScheme.FFA_LORA) -> LoraLayout:
    return lora_layout(MODULES, dataclasses.replace(DEVNET, aggregation_scheme=scheme))


def a_digest(a: np.ndarray) -> str:
    return hashlib.blake2b(a.astype("<f4").tobytes(), digest_size=32).hexdigest()


def valid_update(lay: LoraLayout, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {s.name: rng.integers(-(2**20), 2**20, s.shape, dtype=np.int32) for s in lay.exchanged()}


def forge(tensors: dict[str, np.ndarray], header_patch: dict[str, object] | None = None) -> bytes:
    """A blob written by hand: safetensors layout with an arbitrary header."""
    header: dict[str, object] = {}
    data = b""
    for name, array in sorted(tensors.items()):
        raw = np.ascontiguousarray(array).tobytes()
        dtype = {np.dtype(np.int32): "I32", np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
        header[name] = {
            "dtype": dtype[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    header.update(header_patch or {})
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


# -- frozen A ------------------------------------------------------------------------------------


def test_frozen_a_matches_the_pinned_vector() -> None:
    a = frozen_a(GENESIS, PINNED_MODULE, 4)
    assert a.shape == (4, 64)
    assert a.dtype == np.float32
    assert a[0, :4].tolist() == PINNED_FIRST
    assert a_digest(a) == PINNED_HASH


def test_frozen_a_depends_on_genesis_and_module_and_follows_peft_bounds() -> None:
    a = frozen_a(GENESIS, PINNED_MODULE, 4)
    renamed = dataclasses.replace(PINNED_MODULE, name="model.layers.1.self_attn.q_proj")
    other_module = frozen_a(GENESIS, renamed, 4)
    other_chain = frozen_a(bytes(32), PINNED_MODULE, 4)
    assert not np.array_equal(a, other_module)
    assert not np.array_equal(a, other_chain)
    bound = 1 / np.sqrt(64)
    assert np.all(np.abs(a) <= bound)
    big = frozen_a(GENESIS, LoraModule("m", 1024, 8), 16)
    big_bound = 1 / np.sqrt(1024)
    assert abs(float(big.mean())) < 0.01 * big_bound  # uniform and centred
    assert abs(float(big.std()) - big_bound / np.sqrt(3)) < 0.02 * big_bound


# -- fixed point ---------------------------------------------------------------------------------


@given(hnp.arrays(np.float64, st.integers(1, 64), elements=st.floats(-100.0, 100.0)))
def test_fixed_point_round_trips_within_one_step(w: np.ndarray) -> None:
    shift = DEVNET.fp_shift
    back = from_fixed(to_fixed(w, shift), shift)
    assert np.all(np.abs(back - w) <= 2.0**-shift)


def test_fixed_point_clamps_to_int32_and_refuses_nan() -> None:
    q = to_fixed(np.array([1e12, -1e12, 0.5]), 24)
    assert q.dtype == np.int32
    assert q.tolist() == [2**31 - 1, -(2**31), 2**23]
    with pytest.raises(ValueError, match="NaN"):
        to_fixed(np.array([np.nan]), 24)


# -- layout --------------------------------------------------------------------------------------


def test_layout_ffa_exchanges_b_only_and_lora_ab_both() -> None:
    ffa = layout()
    assert ffa.target_names == ("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj")
    assert [(s.name, s.shape) for s in ffa.exchanged()] == [
        (tensor_name("model.layers.0.self_attn.q_proj", "B"), (64, 4)),
        (tensor_name("model.layers.0.self_attn.v_proj", "B"), (32, 4)),
    ]
    assert ffa.exchanged()[0].name == "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
    ab = layout(AggregationScheme.LORA_AB)
    assert len(ab.exchanged()) == 4
    assert (tensor_name("model.layers.0.self_attn.v_proj", "A"), (4, 64)) in [
        (s.name, s.shape) for s in ab.exchanged()
    ]


def test_layout_without_targets_is_refused() -> None:
    with pytest.raises(ValueError, match="lora_targets"):
        lora_layout([("model.embed", 4, 4)], DEVNET)


# -- check_update_blob ---------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", [AggregationScheme.FFA_LORA, AggregationScheme.LORA_AB])
def test_a_valid_blob_round_trips(scheme: AggregationScheme) -> None:
    lay = layout(scheme)
    tensors = valid_update(lay)
    blob = update_blob(tensors)
    assert len(blob) <= lay.max_blob_bytes()
    got = check_update_blob(blob, lay)
    assert isinstance(got, Update)
    assert got.equals(Update(tuple(sorted(tensors.items()))))
    assert forge(tensors) == blob  # the canonical form is the plain safetensors layout


def test_rejects_a_wrong_name_a_missing_and_an_extra_tensor() -> None:
    lay = layout()
    tensors = valid_update(lay)
    first = lay.exchanged()[0].name
    renamed = {k.replace("q_proj", "k_proj"): v for k, v in tensors.items()}
    assert check_update_blob(update_blob(renamed), lay) == ErrorCode.UPDATE_WRONG_TENSORS
    missing = {k: v for k, v in tensors.items() if k != first}
    assert check_update_blob(update_blob(missing), lay) == ErrorCode.UPDATE_WRONG_TENSORS
    extra = {**tensors, "base_model.model.extra.lora_B.weight": np.zeros((1, 1), np.int32)}
    assert check_update_blob(update_blob(extra), lay) == ErrorCode.UPDATE_WRONG_TENSORS


def test_rejects_a_wrong_shape_and_a_wrong_dtype() -> None:
    lay = layout()
    tensors = valid_update(lay)
    first = lay.exchanged()[0].name
    transposed = {**tensors, first: np.ascontiguousarray(tensors[first].T)}
    assert check_update_blob(update_blob(transposed), lay) == ErrorCode.UPDATE_WRONG_SHAPE
    as_float = {**tensors, first: tensors[first].astype(np.float32)}
    assert check_update_blob(forge(as_float), lay) == ErrorCode.UPDATE_WRONG_DTYPE
    with pytest.raises(ValueError, match="int32"):
        update_blob(as_float)


def test_rejects_an_oversized_blob_before_parsing_it() -> None:
    lay = layout()
    blob = update_blob(valid_update(lay))
    assert check_update_blob(blob + b"\0" * lay.max_blob_bytes(), lay) == ErrorCode.BLOB_TOO_LARGE
    huge_header = struct.pack("<Q", 2**40) + b"{}"
    assert check_update_blob(huge_header, lay) == ErrorCode.BAD_UPDATE_HEADER


def test_rejects_metadata_and_header_tricks() -> None:
    lay = layout()
    tensors = valid_update(lay)
    first, second = (s.name for s in lay.exchanged())

    def entry(shape: list[object], offsets: list[int], **extra: object) -> dict[str, object]:
        return {"dtype": "I32", "shape": shape, "data_offsets": offsets, **extra}

    cases = {
        "metadata": forge(tensors, {"__metadata__": {"note": "x"}}),
        "empty metadata": forge(tensors, {"__metadata__": {}}),
        "overlap": forge(tensors, {second: entry([32, 4], [0, 512])}),
        "out of range": forge(tensors, {second: entry([32, 4], [1536, 2048])}),
        "extra key": forge(tensors, {first: entry([64, 4], [0, 1024], x=1)}),
        "float shape": forge(tensors, {first: entry([64.0, 4], [0, 1024])}),
        "truncated": update_blob(tensors)[:-4],
        "trailing": update_blob(tensors) + b"\0\0\0\0",
        "not json": struct.pack("<Q", 8) + b"{{{{{{{{",
        "too short": b"\1\0",
    }
    for what, blob in cases.items():
        assert check_update_blob(blob, lay) == ErrorCode.BAD_UPDATE_HEADER, what
    duplicated = update_blob(tensors).replace(b'{"base', b'{"' + first.encode() + b'":{},"base', 1)
    assert check_update_blob(duplicated, lay) in (ErrorCode.BAD_UPDATE_HEADER, ErrorCode.BLOB_TOO_LARGE)


def test_rejects_non_canonical_padding() -> None:
    lay = layout()
    blob = update_blob(valid_update(lay))
    (n,) = struct.unpack("<Q", blob[:8])
    padded = struct.pack("<Q", n + 8) + blob[8 : 8 + n] + b" " * 8 + blob[8 + n :]
    assert check_update_blob(padded, lay) == ErrorCode.NON_CANONICAL


@given(st.binary(max_size=600))
def test_never_raises_on_garbage(garbage: bytes) -> None:
    lay = layout()
    assert isinstance(check_update_blob(garbage, lay), ErrorCode)
    assert isinstance(check_update_blob(update_blob(valid_update(lay))[:8] + garbage, lay), ErrorCode)
