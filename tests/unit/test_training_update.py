"""training.worker.update: clipping bound, DP noise scale and epsilon, fixed-point blob (PROTOCOL §6.3).

Numpy only: the update post-processing runs without torch, so these stay unit tests.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from dp_accounting import GaussianDpEvent
from dp_accounting.rdp import RdpAccountant

from chain.lora import Update, check_update_blob, from_fixed, lora_layout, update_blob
from chain.params import DEVNET, AggregationScheme
from training.worker.update import dp_epsilon, finish_update, l2_norm

MODULES = [(f"model.layers.{i}.self_attn.{m}", 256, 256) for i in range(4) for m in ("q_proj", "v_proj")]
LAYOUT = lora_layout(MODULES, DEVNET)


def delta(scale: float, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {s.name: rng.normal(0, scale, s.shape) for s in LAYOUT.exchanged()}


def decoded_norm(tensors: dict[str, np.ndarray]) -> float:
    return l2_norm({n: from_fixed(v, LAYOUT.fp_shift) for n, v in tensors.items()})


@pytest.mark.parametrize("clip", [1e-3, 0.05, 1.0])
def test_the_encoded_update_is_clipped_to_clip_norm(clip: float) -> None:
    raw = delta(0.1)
    out = finish_update(raw, LAYOUT, clip_norm=clip)
    assert out.raw_norm == pytest.approx(l2_norm(raw))
    assert out.raw_norm > clip
    assert decoded_norm(out.tensors) <= clip
    assert out.norm == pytest.approx(clip, rel=1e-2)  # truncation costs under half a step per coordinate
    assert out.dp_epsilon == 0.0
    blob = update_blob(out.tensors)
    assert isinstance(check_update_blob(blob, LAYOUT), Update)


def test_a_small_update_is_not_scaled() -> None:
    raw = delta(1e-4)
    out = finish_update(raw, LAYOUT, clip_norm=10.0)
    for name, value in raw.items():
        assert np.all(np.abs(from_fixed(out.tensors[name], LAYOUT.fp_shift) - value) <= 2.0**-LAYOUT.fp_shift)


def test_dp_noise_has_the_declared_scale() -> None:
    """Zero update + noise: the coordinates are N(0, (sigma * clip)^2) (fixed seed, 16k samples)."""
    sigma, clip = 0.8, 0.05
    zero = {n: np.zeros_like(v) for n, v in delta(1.0).items()}
    out = finish_update(
        zero, LAYOUT, clip_norm=clip, noise_multiplier=sigma, dp_delta=1e-5, rng=np.random.default_rng(7)
    )
    samples = np.concatenate([from_fixed(v, LAYOUT.fp_shift).ravel() for v in out.tensors.values()])
    assert samples.size == 8 * 256 * 4
    std = sigma * clip
    # the sample std of n normals is within 4 standard errors (std / sqrt(2n)) of the true one
    assert abs(samples.std() - std) < 4 * std / np.sqrt(2 * samples.size)
    assert abs(samples.mean()) < 4 * std / np.sqrt(samples.size)
    kurtosis = float(np.mean(((samples - samples.mean()) / samples.std()) ** 4))
    assert abs(kurtosis - 3.0) < 0.3  # Gaussian, not uniform (1.8) or Laplace (6)
    assert out.dp_epsilon == pytest.approx(dp_epsilon(sigma, 1e-5))


def test_epsilon_comes_from_the_rdp_accountant() -> None:
    accountant = RdpAccountant()
    accountant.compose(GaussianDpEvent(1.1))
    assert dp_epsilon(1.1, 1e-5) == pytest.approx(accountant.get_epsilon(1e-5))
    assert dp_epsilon(2.0, 1e-5) < dp_epsilon(1.0, 1e-5)
    assert dp_epsilon(1.0, 1e-5, releases=10) > dp_epsilon(1.0, 1e-5)
    with pytest.raises(ValueError, match="delta"):
        dp_epsilon(1.0, 0.0)


def test_wrong_tensor_names_are_a_bug_not_a_blob() -> None:
    raw = delta(0.1)
    raw.pop(next(iter(raw)))
    with pytest.raises(ValueError, match="differ"):
        finish_update(raw, LAYOUT, clip_norm=1.0)
    lora_ab = lora_layout(MODULES, dataclasses.replace(DEVNET, aggregation_scheme=AggregationScheme.LORA_AB))
    with pytest.raises(ValueError, match="differ"):
        finish_update(delta(0.1), lora_ab, clip_norm=1.0)
