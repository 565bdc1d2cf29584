"""A tiny random LLaMA causal LM with a byte-level tokenizer, written to a directory, for worker tests.

Used where a test needs any local Hugging Face model quickly (and where lc-tiny's pretrained weights
are not the point). Imports torch and transformers: only tests of the worker tier import it.
"""

from __future__ import annotations

from pathlib import Path

SPECIALS = ("<pad>", "<s>", "</s>")


def _byte_level_tokenizer() -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token=None
    )


def write_tiny_llama(directory: Path, *, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    """Save a random LlamaForCausalLM (about 0.1M parameters) and its tokenizer into `directory`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _byte_level_tokenizer()
    vocab_size = len(tokenizer)  # type: ignore[arg-type]
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)  # type: ignore[attr-defined]
    return directory


def base_model_dir(scratch: Path) -> Path:
    """lc-tiny when it ships (training/lc_tiny/), else a tiny random LLaMA written under `scratch`."""
    try:
        from training.base_model import LC_TINY_DIR  # type: ignore[import-not-found,unused-ignore]

        if (Path(LC_TINY_DIR) / "config.json").exists():
            return Path(LC_TINY_DIR)
    except ImportError:
        pass
    return write_tiny_llama(scratch / "tiny-llama")


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sample_rows(n_text: int = 24, n_pairs: int = 8) -> list[dict[str, str]]:
    """A small, repetitive corpus a model can fit in a few steps."""
    rows = [{"text": f"the quick brown fox jumps over the lazy dog number {i % 4}."} for i in range(n_text)]
    rows += [{"prompt": f"Q: what is {i} plus one? A:", "completion": f" {i + 1}."} for i in range(n_pairs)]
    return rows
