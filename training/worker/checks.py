"""Start-up checks of the worker that need no torch: refuse early and cheaply what cannot work.

Owns: `preflight` (a pinned weights hash that differs, 4-bit quantisation on the CPU) and the
wording of those refusals, shared with model.py (which repeats the device check once torch can
tell whether a GPU exists). Must not: import torch, transformers or peft.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from training.base_model import BaseModelError, weights_hash
from training.protocol import JobError, JobErrorCode

FOUR_BIT_NEEDS_CUDA: Final = (
    'quantize = "4bit" needs a CUDA GPU (bitsandbytes); this worker runs on the CPU: '
    'set quantize = "none" or run on a GPU'
)


def mismatch_message(model_dir: Path, found: bytes, pinned: bytes) -> str:
    return f"the base model in {model_dir} has weights hash {found.hex()}, but {pinned.hex()} is pinned"


def preflight(model_dir: Path, pinned: bytes | None, device: str, quantize: str) -> JobError | None:
    """Why the worker must not start (before importing torch), or None."""
    if quantize == "4bit" and device == "cpu":
        return JobError(JobErrorCode.UNSUPPORTED, FOUR_BIT_NEEDS_CUDA)
    if pinned is None:
        return None
    try:
        found = weights_hash(model_dir)
    except BaseModelError as exc:
        return JobError(JobErrorCode.UNSUPPORTED, str(exc))
    if found != pinned:
        return JobError(JobErrorCode.MODEL_MISMATCH, mismatch_message(model_dir, found, pinned))
    return None
