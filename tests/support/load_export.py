"""Run in a fresh process: load an exported adapter and merged model with transformers + peft only.

Usage: python load_export.py BASE_DIR ADAPTER_DIR MERGED_DIR PROMPT. Prints one JSON line with the
largest logit difference between base + adapter and the merged model, and both greedy texts.
Imports nothing from LinguaChain on purpose: this is what a user outside the project does.
"""

from __future__ import annotations

import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> None:
    base_dir, adapter_dir, merged_dir, prompt = sys.argv[1:5]
    tok = AutoTokenizer.from_pretrained(adapter_dir, local_files_only=True)
    peft = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True), adapter_dir
    )
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, local_files_only=True)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    if tok.bos_token_id is not None:
        ids = [tok.bos_token_id, *ids]
    x = torch.tensor([ids])
    with torch.no_grad():
        diff = (peft(input_ids=x).logits - merged(input_ids=x).logits).abs().max().item()
        texts = []
        for model in (peft, merged):
            out = model.generate(
                input_ids=x,
                attention_mask=torch.ones_like(x),
                max_new_tokens=8,
                do_sample=False,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            )
            texts.append(tok.decode(out[0, len(ids) :].tolist(), skip_special_tokens=True))
    print(json.dumps({"max_logit_diff": diff, "peft_text": texts[0], "merged_text": texts[1]}))


if __name__ == "__main__":
    main()
