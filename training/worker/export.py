"""The `export` job: the current global model as files that plain transformers and peft load.

Owns: writing a PEFT adapter directory (`adapter_config.json` + `adapter_model.safetensors`, A and B
as peft names them, the base named by its local path) and, with `merged`, a full model directory
(base weights + scaling * B @ A, with the tokenizer). Must not: change the live model: the merge runs
on a fresh float32 CPU copy of the base (so it also works for a 4-bit base), which costs the
memory of one more base model for the duration of the export.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from training.protocol import Export, ExportResult, JobErrorCode
from training.worker.model import WorkerError, WorkerModel


def run_export(model: WorkerModel, request: Export) -> ExportResult:
    out = Path(request.out_dir)
    model.set_adapter(request.adapter_path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        model.peft.save_pretrained(str(out))
        model.tokenizer.save_pretrained(str(out))
    except OSError as exc:
        raise WorkerError(JobErrorCode.BAD_REQUEST, f"cannot write {out}: {exc.strerror}") from None
    merged_dir = ""
    if request.merged:
        merged_dir = str(out / "merged")
        base = AutoModelForCausalLM.from_pretrained(
            str(model.options.model_dir), local_files_only=True, dtype=torch.float32
        )
        merged = PeftModel.from_pretrained(base, str(out)).merge_and_unload()
        merged.save_pretrained(merged_dir)
        model.tokenizer.save_pretrained(merged_dir)
    return ExportResult(adapter_dir=str(out), merged_dir=merged_dir)
