"""From trained weights to the update blob: clip, optional DP noise, fixed point (PROTOCOL §6.3).

Owns: `finish_update` (numpy, no torch, so unit tests run it without a model) and `dp_epsilon` (the
Gaussian mechanism's epsilon from dp-accounting's RDP accountant). Must not: hand-compute epsilon,
or draw DP noise from a predictable seed outside tests.

Privacy model: one release per training job of the whole update, clipped to L2 norm `clip_norm`,
plus N(0, (sigma * clip_norm)^2) noise on every coordinate. Neighbouring inputs are this node's data
with and without any subset of it (the DP-FedAvg user-level convention: the update moves by at most
`clip_norm`). The epsilon is for one release; a node that publishes k updates composes them (the
accountant's `compose(event, k)`), which the node accounts across rounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import dp_accounting
import numpy as np
import numpy.typing as npt

from chain.lora import INT32_MAX, INT32_MIN, LoraLayout, from_fixed, to_fixed

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class FinishedUpdate:
    tensors: dict[str, npt.NDArray[np.int32]]  # the layout's exchanged tensors, fixed point
    raw_norm: float  # L2 norm of trained minus global, before clipping
    norm: float  # L2 norm of the encoded update
    dp_epsilon: float  # 0.0 without noise


def dp_epsilon(noise_multiplier: float, delta: float, releases: int = 1) -> float:
    """Epsilon of `releases` Gaussian mechanisms with `noise_multiplier` at `delta` (RDP accountant)."""
    if noise_multiplier <= 0:
        raise ValueError("the noise multiplier must be positive")
    if not 0 < delta < 1:
        raise ValueError("delta must lie in (0, 1)")
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(noise_multiplier), releases)
    return float(accountant.get_epsilon(delta))


def l2_norm(tensors: Mapping[str, npt.NDArray[np.floating]]) -> float:
    return math.sqrt(sum(float(np.sum(np.square(t, dtype=np.float64))) for t in tensors.values()))


def finish_update(
    delta: Mapping[str, FloatArray],
    layout: LoraLayout,
    *,
    clip_norm: float,
    noise_multiplier: float = 0.0,
    dp_delta: float = 1e-5,
    rng: np.random.Generator | None = None,
) -> FinishedUpdate:
    """Clip `delta` (trained minus global, by exchanged tensor name) to `clip_norm`, add Gaussian
    noise of std `noise_multiplier * clip_norm` when the multiplier is positive, encode in fixed
    point. Without noise the encoded norm is at most `clip_norm` (rounding never pushes it over)."""
    names = [s.name for s in layout.exchanged()]
    if sorted(delta) != names:
        raise ValueError(f"update tensors {sorted(delta)} differ from the layout's {names}")
    if clip_norm <= 0:
        raise ValueError("clip_norm must be positive")
    raw_norm = l2_norm(delta)
    scale = min(1.0, clip_norm / raw_norm) if raw_norm > 0 else 1.0
    clipped = {n: np.asarray(delta[n], dtype=np.float64) * scale for n in names}
    epsilon = 0.0
    if noise_multiplier > 0:
        if rng is None:
            rng = np.random.default_rng()  # OS entropy: DP noise must not be predictable
        std = noise_multiplier * clip_norm
        clipped = {n: v + rng.normal(0.0, std, v.shape) for n, v in clipped.items()}
        epsilon = dp_epsilon(noise_multiplier, dp_delta)
        encoded = {n: to_fixed(v, layout.fp_shift) for n, v in clipped.items()}
    else:
        encoded = _encode_within(clipped, layout.fp_shift, clip_norm)
    norm = l2_norm({n: from_fixed(v, layout.fp_shift) for n, v in encoded.items()})
    return FinishedUpdate(encoded, raw_norm, norm, epsilon)


def _encode_within(
    values: dict[str, FloatArray], fp_shift: int, bound: float
) -> dict[str, npt.NDArray[np.int32]]:
    """Round to nearest; if that lands above `bound`, round toward zero instead (never increases a
    coordinate's magnitude, so the norm stays at most the clipped float norm)."""
    encoded = {n: to_fixed(v, fp_shift) for n, v in values.items()}
    if l2_norm({n: from_fixed(v, fp_shift) for n, v in encoded.items()}) <= bound:
        return encoded
    shrink = 1.0 - 1e-9  # absorbs the float error of the clip scaling itself
    return {
        n: np.clip(np.trunc(np.ldexp(v * shrink, fp_shift)), INT32_MIN, INT32_MAX).astype(np.int32)
        for n, v in values.items()
    }
