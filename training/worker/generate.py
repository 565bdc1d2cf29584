"""The `generate` job: text after a prompt with base + adapter, greedy or sampled.

Owns: one call of transformers' `generate` with the adapter of the request. Must not: keep state
between requests (each request names its adapter) or exceed the model's context.
"""

from __future__ import annotations

import torch

from training.protocol import Generate, GenerateResult, JobErrorCode
from training.worker.model import WorkerError, WorkerModel


def run_generate(model: WorkerModel, request: Generate) -> GenerateResult:
    if request.max_new_tokens < 1:
        raise WorkerError(JobErrorCode.BAD_REQUEST, "max_new_tokens must be positive")
    model.set_adapter(request.adapter_path)
    model.peft.eval()
    tok = model.tokenizer
    ids = tok(request.prompt, add_special_tokens=False)["input_ids"]
    if tok.bos_token_id is not None:
        ids = [tok.bos_token_id, *ids]
    if len(ids) + request.max_new_tokens > model.max_len:
        raise WorkerError(
            JobErrorCode.BAD_REQUEST,
            f"{len(ids)} prompt tokens + {request.max_new_tokens} new ones exceed the context "
            f"of {model.max_len}",
        )
    input_ids = torch.tensor([ids], device=model.device)
    sample = request.temperature_milli > 0
    torch.manual_seed(request.seed)
    with torch.no_grad():
        out = model.peft.generate(  # type: ignore[no-untyped-call]
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=int(request.max_new_tokens),
            do_sample=sample,
            temperature=request.temperature_milli / 1000 if sample else None,
            top_k=0 if sample else None,
            top_p=None,
            pad_token_id=model.pad_id,
        )
    new = out[0, len(ids) :].tolist()
    text = str(tok.decode(new, skip_special_tokens=True))
    return GenerateResult(text=text[: 64 * 1024 // 4], n_tokens=len(new))
