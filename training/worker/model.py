"""The loaded base model with its LoRA adapter: load once, swap adapter values per job.

Owns: `WorkerModel` (base + peft LoRA with the chain's layout, FFA-LoRA A matrices from chain.lora,
device, dtype, tokenizer), loading and checking a global adapter blob, reading the exchanged
tensors back, and turning examples into padded batches. Must not: talk to the parent (the request
loop does), train or evaluate (train.py, evaluate.py), or touch the network (`local_files_only`).

Adapter values are relative to version 0 (PROTOCOL §6.1): B as is (version 0: zero), and under
`lora-ab` A minus its frozen initial value. A global adapter blob is a sum of updates, so it has the
update format and passes the same `check_update_blob`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from chain.errors import ErrorCode
from chain.lora import (
    LoraConfig,
    LoraLayout,
    check_update_blob,
    from_fixed,
    frozen_a_all,
    lora_layout,
    tensor_name,
)
from chain.params import AggregationScheme
from training.base_model import BaseModelError, weights_hash
from training.datafile import Example
from training.protocol import JobErrorCode
from training.worker.checks import FOUR_BIT_NEEDS_CUDA, mismatch_message

log = logging.getLogger(__name__)

IGNORE = -100  # the label of a position that carries no loss (prompt, padding)


class WorkerError(Exception):
    """Raised when a job cannot run; `code` says why on the wire."""

    def __init__(self, code: JobErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ModelOptions:
    model_dir: Path
    genesis_hash: bytes
    lora: LoraConfig
    expected_hash: bytes | None = None  # refuse a base whose weights hash differs
    device: str = "auto"  # auto | cpu | cuda
    quantize: str = "none"  # none | 4bit
    threads: int = 0  # 0 = cores - 1, at least 1


def default_threads() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


def pick_device(device: str, quantize: str) -> tuple[torch.device, torch.dtype]:
    """The device and compute dtype; `WorkerError(UNSUPPORTED)` for an impossible combination."""
    if device not in ("auto", "cpu", "cuda"):
        raise WorkerError(JobErrorCode.BAD_REQUEST, f"device must be auto, cpu or cuda, not {device!r}")
    if quantize not in ("none", "4bit"):
        raise WorkerError(JobErrorCode.BAD_REQUEST, f"quantize must be none or 4bit, not {quantize!r}")
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise WorkerError(JobErrorCode.UNSUPPORTED, "device = cuda, but torch sees no CUDA GPU")
    use_cuda = cuda and device != "cpu"
    if quantize == "4bit" and not use_cuda:
        raise WorkerError(JobErrorCode.UNSUPPORTED, FOUR_BIT_NEEDS_CUDA)
    if use_cuda:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.device("cuda", 0), dtype
    return torch.device("cpu"), torch.float32


class WorkerModel:
    """The base model with its LoRA adapter attached once; jobs swap the adapter's values."""

    def __init__(self, options: ModelOptions) -> None:
        self.options = options
        torch.set_num_threads(options.threads or default_threads())
        self.device, self.dtype = pick_device(options.device, options.quantize)
        try:
            self.model_id = weights_hash(options.model_dir)
        except BaseModelError as exc:
            raise WorkerError(JobErrorCode.UNSUPPORTED, str(exc)) from None
        if options.expected_hash is not None and self.model_id != options.expected_hash:
            message = mismatch_message(options.model_dir, self.model_id, options.expected_hash)
            raise WorkerError(JobErrorCode.MODEL_MISMATCH, message)
        self.tokenizer = _load_tokenizer(options.model_dir)
        base = _load_base(options.model_dir, self.device, self.dtype, options.quantize)
        self.max_len = int(getattr(base.config, "max_position_embeddings", 0) or 1024)
        linear = [
            (name, m.in_features, m.out_features)
            for name, m in base.named_modules()
            if isinstance(m, torch.nn.Linear)
        ]
        try:
            self.layout: LoraLayout = lora_layout(linear, options.lora)
        except ValueError as exc:
            raise WorkerError(JobErrorCode.UNSUPPORTED, str(exc)) from None
        peft_config = PeftLoraConfig(
            r=self.layout.rank,
            lora_alpha=self.layout.alpha,
            target_modules=list(self.layout.target_names),
            lora_dropout=0.0,
            bias="none",
            task_type="CAUSAL_LM",
        )
        self.peft: PeftModel = get_peft_model(base, peft_config)
        self.a0 = frozen_a_all(options.genesis_hash, self.layout)
        inner: torch.nn.Module = self.peft.get_base_model()
        self._lora = {m.name: inner.get_submodule(m.name) for m in self.layout.modules}
        self.set_adapter("")

    @property
    def dtype_name(self) -> str:
        return "4bit" if self.options.quantize == "4bit" else str(self.dtype).removeprefix("torch.")

    @property
    def device_name(self) -> str:
        if self.device.type == "cuda":
            return f"cuda:0 ({torch.cuda.get_device_name(0)})"
        return "cpu"

    def lora_params(self, matrix: str) -> dict[str, torch.nn.Parameter]:
        """Module name -> the `lora_A` or `lora_B` weight of the default adapter."""
        return {name: getattr(mod, f"lora_{matrix}")["default"].weight for name, mod in self._lora.items()}

    def trainable(self) -> list[torch.nn.Parameter]:
        """B only (FFA-LoRA) or A and B (lora-ab); everything else frozen."""
        for p in self.peft.parameters():
            p.requires_grad_(False)
        out = list(self.lora_params("B").values())
        if self.layout.scheme == AggregationScheme.LORA_AB:
            out += list(self.lora_params("A").values())
        for p in out:
            p.requires_grad_(True)
        return out

    def set_adapter(self, blob_path: str) -> None:
        """Load a global adapter ("" = version 0); `WorkerError(BAD_ADAPTER)` if it fails the check."""
        values = self._read_adapter(blob_path) if blob_path else {}
        shift = self.layout.fp_shift
        with torch.no_grad():
            for name, a in self.lora_params("A").items():
                delta = values.get(tensor_name(name, "A"))
                start = a0 = self.a0[name].astype(np.float64)
                if delta is not None:
                    start = a0 + from_fixed(delta, shift)
                a.copy_(torch.from_numpy(start).to(a.dtype))
            for name, b in self.lora_params("B").items():
                q = values.get(tensor_name(name, "B"))
                b.copy_(
                    torch.from_numpy(from_fixed(q, shift)).to(b.dtype)
                    if q is not None
                    else torch.zeros_like(b)
                )

    def _read_adapter(self, path: str) -> dict[str, npt.NDArray[np.int32]]:
        limit = self.layout.max_blob_bytes()
        try:
            with open(path, "rb") as f:
                blob = f.read(limit + 1)
        except OSError as exc:
            raise WorkerError(
                JobErrorCode.BAD_ADAPTER, f"cannot read adapter {path}: {exc.strerror}"
            ) from None
        update = check_update_blob(blob, self.layout)
        if isinstance(update, ErrorCode):
            raise WorkerError(JobErrorCode.BAD_ADAPTER, f"adapter {path} is invalid: {update.name}")
        return update.as_dict()

    def exchanged(self) -> dict[str, npt.NDArray[np.float64]]:
        """The exchanged tensors' current values relative to version 0, by tensor name."""
        out = {tensor_name(n, "B"): _np(b) for n, b in self.lora_params("B").items()}
        if self.layout.scheme == AggregationScheme.LORA_AB:
            for n, a in self.lora_params("A").items():
                out[tensor_name(n, "A")] = _np(a) - self.a0[n].astype(np.float64)
        return out

    # -- tokens ----------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + 2

    def encode(self, example: Example) -> tuple[list[int], list[int]]:
        """(input ids, labels): BOS if the tokenizer has one, prompt, completion, EOS; labels only on
        completion and EOS (for a text example the completion is the whole text)."""
        tok = self.tokenizer
        prompt = tok(example.prompt, add_special_tokens=False)["input_ids"] if example.prompt else []
        completion = tok(example.completion, add_special_tokens=False)["input_ids"]
        head = ([tok.bos_token_id] if tok.bos_token_id is not None else []) + list(prompt)
        tail = list(completion) + ([tok.eos_token_id] if tok.eos_token_id is not None else [])
        ids = (head + tail)[: self.max_len]
        labels = ([IGNORE] * len(head) + tail)[: self.max_len]
        return ids, labels

    def collate(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        """Right-padded input ids, attention mask and labels on the model's device."""
        pairs = [self.encode(e) for e in examples]
        width = max(len(ids) for ids, _ in pairs)
        pad = self.pad_id
        ids = [i + [pad] * (width - len(i)) for i, _ in pairs]
        mask = [[1] * len(i) + [0] * (width - len(i)) for i, _ in pairs]
        labels = [lab + [IGNORE] * (width - len(lab)) for _, lab in pairs]
        return {
            "input_ids": torch.tensor(ids, device=self.device),
            "attention_mask": torch.tensor(mask, device=self.device),
            "labels": torch.tensor(labels, device=self.device),
        }

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return int(pad if pad is not None else 0)


def _np(t: torch.Tensor) -> npt.NDArray[np.float64]:
    return t.detach().to(device="cpu", dtype=torch.float64).numpy()


def _load_tokenizer(model_dir: Path) -> PreTrainedTokenizerBase:
    tok: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    return tok


def _load_base(model_dir: Path, device: torch.device, dtype: torch.dtype, quantize: str) -> Any:
    kwargs: dict[str, Any] = {"local_files_only": True, "dtype": dtype}
    if quantize == "4bit":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True,
        )
        kwargs["device_map"] = {"": 0}
    model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    if quantize != "4bit":
        model = model.to(device)
    if quantize == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]
            model, use_gradient_checkpointing=False
        )
    model.config.use_cache = False
    log.info("loaded base model %s on %s as %s", model_dir, device, dtype)
    return model
