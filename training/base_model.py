"""Base models by hash (PROTOCOL §6.1): the shipped `lc-tiny` directory, its pinned hash, and `weights_hash`.

Owns: the definition of a model's identity, `weights_hash(model_dir)`, the location of the shipped
`lc-tiny` model (`LC_TINY_DIR`) with its pinned hash (`LC_TINY_WEIGHTS_HASH`, the value devnet
genesis files carry), and `resolve_base_model`, which turns a genesis `base_model` entry into a checked
directory. Must not: import torch, transformers or anything heavy (the daemon imports this module to
build genesis files), load a model, or touch the network.

The weights hash, precisely. The weight files of a directory are its regular files (not recursive)
whose names end in `.safetensors`; when there is none, those ending in `.bin`. With `H` = BLAKE2b-256
(PROTOCOL §1.2) and the files sorted by the bytes of their UTF-8 names:

    weights_hash = H( b"LC/weights/1"
                      || for each weight file f:
                             u16_be(len(name_f)) || name_f || u64_be(len(bytes_f)) || bytes_f )

Only the weights are hashed: `config.json`, the tokenizer files and the model card may be edited
without changing the id (a different tokenizer on the same weights is the operator's business; for
`lc-tiny` they ship together).
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Final

from chain.errors import LinguaChainError

LC_TINY_NAME: Final = "lc-tiny"
LC_TINY_DIR: Final = Path(__file__).resolve().parent / "lc_tiny"
# weights_hash(LC_TINY_DIR); tests/unit/test_lc_tiny.py checks it. Rebuilding lc-tiny changes it.
LC_TINY_WEIGHTS_HASH: Final = "f23d59a95e3ae7797cdf2c23e498fa950dbbd8ac8e139965de545ac1067d8027"

WEIGHTS_DOMAIN: Final = b"LC/weights/1"
_CHUNK: Final = 1 << 20


class BaseModelError(LinguaChainError):
    """Raised when a base model directory is missing, has no weight files, or its weights hash is not
    the pinned one."""


def weight_files(model_dir: Path) -> list[Path]:
    """The files `weights_hash` covers, in hashing order (see the module docstring)."""
    if not model_dir.is_dir():
        raise BaseModelError(f"base model directory {model_dir} does not exist or is not a directory")
    files = [p for p in model_dir.iterdir() if p.is_file()]
    chosen = [p for p in files if p.name.endswith(".safetensors")] or [
        p for p in files if p.name.endswith(".bin")
    ]
    if not chosen:
        raise BaseModelError(f"base model directory {model_dir} holds no *.safetensors or *.bin weight file")
    return sorted(chosen, key=lambda p: p.name.encode())


def weights_hash(model_dir: Path) -> bytes:
    """BLAKE2b-256 identity of the weight files of `model_dir` (32 bytes; definition in the module doc)."""
    h = hashlib.blake2b(WEIGHTS_DOMAIN, digest_size=32)
    for path in weight_files(Path(model_dir)):
        name = path.name.encode()
        size = path.stat().st_size
        h.update(struct.pack(">H", len(name)) + name + struct.pack(">Q", size))
        seen = 0
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                seen += len(chunk)
        if seen != size:
            raise BaseModelError(f"weight file {path} changed size while it was hashed")
    return h.digest()


def _as_hex(value: bytes | str, what: str) -> str:
    text = value.hex() if isinstance(value, bytes) else value.lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise BaseModelError(f"{what} must be 32 bytes (64 hex characters), got {value!r}")
    return text


def resolve_base_model(
    name: str, local_path: Path | None = None, *, expected_hash: bytes | str | None = None
) -> Path:
    """The checked directory of a genesis base model.

    `lc-tiny` resolves to the shipped `LC_TINY_DIR` (or `local_path` when given) and is checked
    against `expected_hash`, by default the pinned `LC_TINY_WEIGHTS_HASH`. Any other name needs
    `local_path`, a Hugging Face model directory, and `expected_hash` (the genesis pins every base).
    Raises `BaseModelError` naming both hashes when they differ."""
    if name == LC_TINY_NAME:
        model_dir = Path(local_path) if local_path is not None else LC_TINY_DIR
        pinned = expected_hash if expected_hash is not None else LC_TINY_WEIGHTS_HASH
        expected = _as_hex(pinned, "expected hash")
    else:
        if local_path is None:
            raise BaseModelError(f"base model {name!r} is not built in: give the path of its local directory")
        if expected_hash is None:
            raise BaseModelError(f"base model {name!r}: the expected weights hash (genesis) is required")
        model_dir, expected = Path(local_path), _as_hex(expected_hash, "expected hash")
    actual = weights_hash(model_dir).hex()
    if actual != expected:
        raise BaseModelError(
            f"base model {name!r} at {model_dir}: weights hash {actual} differs from the expected {expected}"
        )
    return model_dir
