"""The shipped `lc-tiny` base model (PROTOCOL §6.1): pinned hash, shape, offline loading, pretraining,
byte-level tokenizer, and the weights-hash rules of training/base_model.py."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from linguachaind.devgenesis import lc_tiny_weights_hash
from training.base_model import (
    LC_TINY_DIR,
    LC_TINY_WEIGHTS_HASH,
    BaseModelError,
    resolve_base_model,
    weight_files,
    weights_hash,
)

ROOT = Path(__file__).resolve().parents[2]
MAX_WEIGHTS_BYTES = 32 * 1024 * 1024


def test_shipped_weights_hash_to_the_pinned_constant() -> None:
    assert weights_hash(LC_TINY_DIR).hex() == LC_TINY_WEIGHTS_HASH
    assert lc_tiny_weights_hash() == LC_TINY_WEIGHTS_HASH  # what devnet genesis files pin
    assert resolve_base_model("lc-tiny") == LC_TINY_DIR


def test_weights_are_one_small_safetensors_file() -> None:
    files = weight_files(LC_TINY_DIR)
    assert [f.name for f in files] == ["model.safetensors"]
    assert 0 < files[0].stat().st_size <= MAX_WEIGHTS_BYTES


def test_config_is_llama_with_3_to_8_million_parameters() -> None:
    from safetensors import safe_open

    config = json.loads((LC_TINY_DIR / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["vocab_size"] == 259
    with safe_open(str(LC_TINY_DIR / "model.safetensors"), framework="pt") as f:
        params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
    assert 3_000_000 <= params <= 8_000_000


# Runs in a fresh interpreter so that HF_HUB_OFFLINE is read at import, as an operator's node would.
_OFFLINE_PROBE = r"""
import json, math, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from scripts.build_lc_tiny import iter_held_out_docstrings
model_dir = sys.argv[1]
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir)
model.eval()
torch.set_num_threads(1)
total, count = 0.0, 0
with torch.no_grad():
    for doc in iter_held_out_docstrings(24):
        ids = tok(doc, truncation=True, max_length=512, return_tensors="pt")["input_ids"]
        n = ids.shape[1] - 1
        total += float(model(input_ids=ids, labels=ids).loss) * n
        count += n
out = model.generate(**tok("Return the", return_tensors="pt"), max_new_tokens=16, do_sample=False)
print(json.dumps({"loss": total / count, "tokens": count, "model": type(model).__name__,
                  "generated": tok.decode(out[0], skip_special_tokens=True)}))
"""


def test_loads_offline_and_is_pretrained_on_held_out_stdlib_docstrings() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", _OFFLINE_PROBE, str(LC_TINY_DIR)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["model"] == "LlamaForCausalLM"
    assert result["tokens"] > 3000
    # Uniform over bytes is ln 256 = 5.55 and the corpus unigram about 3.3 nats per byte; a random or
    # barely trained base sits there. A pretrained lc-tiny is far below both.
    assert result["loss"] < 2.6, result
    assert result["generated"].startswith("Return the")


@pytest.mark.parametrize(
    "text",
    [
        "Return the sum of x and y.",
        "  leading spaces,\ttabs\r\nand newlines\n\n",
        "emoji 👩‍👩‍👧 flags 🇩🇪 accents é ä ñ, CJK 中文, RTL שלום",
        "NUL \x00 DEL \x7f, U+FFFD \ufffd, ZWSP \u200b, combining e\u0301",
        "literal control strings stay text: </s><s><pad>",
        "",
    ],
)
def test_tokenizer_is_byte_level_and_round_trips(text: str) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(LC_TINY_DIR), local_files_only=True)
    ids = tok(text)["input_ids"]
    assert ids == [tok.bos_token_id, *text.encode("utf-8")]
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (256, 257, 258)


def test_tokenizer_decodes_invalid_utf8_byte_sequences_without_failing() -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(LC_TINY_DIR), local_files_only=True)
    # A lone continuation byte, a truncated 4-byte sequence and an overlong encoding, then ASCII.
    text = tok.decode([0x80, 0xF0, 0x9F, 0xC0, 0xAF, 65])
    assert isinstance(text, str)
    assert text.endswith("A")
    assert "\ufffd" in text


def test_weights_hash_changes_when_one_byte_of_a_weight_file_changes(tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(LC_TINY_DIR, copy)
    assert weights_hash(copy).hex() == LC_TINY_WEIGHTS_HASH
    (copy / "README.md").write_text("an edited card does not change the id\n")
    assert weights_hash(copy).hex() == LC_TINY_WEIGHTS_HASH
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "model.safetensors").write_bytes(bytes(data))
    tampered = weights_hash(copy).hex()
    assert tampered != LC_TINY_WEIGHTS_HASH
    with pytest.raises(BaseModelError) as err:
        resolve_base_model("lc-tiny", copy)
    assert tampered in str(err.value)
    assert LC_TINY_WEIGHTS_HASH in str(err.value)


def test_weights_hash_covers_names_and_sizes_and_falls_back_to_bin(tmp_path: Path) -> None:
    (tmp_path / "a.safetensors").write_bytes(b"xy")
    (tmp_path / "b.safetensors").write_bytes(b"z")
    first = weights_hash(tmp_path)
    (tmp_path / "a.safetensors").write_bytes(b"x")
    (tmp_path / "b.safetensors").write_bytes(b"yz")  # same concatenation, other boundary
    assert weights_hash(tmp_path) != first
    (tmp_path / "b.safetensors").rename(tmp_path / "c.safetensors")
    assert len({weights_hash(tmp_path), first}) == 2
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pytorch_model.bin").write_bytes(b"weights")
    (bin_dir / "config.json").write_text("{}")
    assert [p.name for p in weight_files(bin_dir)] == ["pytorch_model.bin"]
    (bin_dir / "model.safetensors").write_bytes(b"weights")
    assert [p.name for p in weight_files(bin_dir)] == ["model.safetensors"]  # safetensors win


def test_resolve_base_model_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BaseModelError, match=r"no \*\.safetensors or \*\.bin"):
        weights_hash(tmp_path)
    with pytest.raises(BaseModelError, match="does not exist"):
        resolve_base_model("lc-tiny", tmp_path / "missing")
    with pytest.raises(BaseModelError, match="path of its local directory"):
        resolve_base_model("org/some-model", expected_hash="ab" * 32)
    with pytest.raises(BaseModelError, match="expected weights hash"):
        resolve_base_model("org/some-model", LC_TINY_DIR)
    with pytest.raises(BaseModelError, match="64 hex characters"):
        resolve_base_model("org/some-model", LC_TINY_DIR, expected_hash="xyz")
    pinned = bytes.fromhex(LC_TINY_WEIGHTS_HASH)
    assert resolve_base_model("org/some-model", LC_TINY_DIR, expected_hash=pinned) == LC_TINY_DIR
    with pytest.raises(BaseModelError, match="differs from the expected " + "ab" * 32):
        resolve_base_model("org/some-model", LC_TINY_DIR, expected_hash="ab" * 32)
