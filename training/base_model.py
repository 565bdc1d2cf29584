"""Base models by hash (PROTOCOL §6.1): the shipped `lc-tiny` directory, its pinned hash, and `weights_hash`.

Owns: the definition of a model's identity, `weights_hash(model_dir)`, the location of the shipped
`lc-tiny` model (`LC_TINY_DIR`) with its pinned hash (`LC_TINY_WEIGHTS_HASH`, the value devnet
genesis files carry), `resolve_base_model`, which turns a genesis `base_model` entry into a checked
directory, and `lora_layout_of`, the chain's LoRA layout over a base read from its safetensors headers
only (so the daemon checks learning-unit blobs exactly without a training worker). Must not: import
torch, transformers or anything heavy (the daemon imports this module), load a model's tensors, or
touch the network.

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
import json
import struct
from pathlib import Path
from typing import Final

from chain.errors import LinguaChainError
from chain.lora import LoraConfig, LoraLayout, lora_layout

LC_TINY_NAME: Final = "lc-tiny"
LC_TINY_DIR: Final = Path(__file__).resolve().parent / "lc_tiny"
# weights_hash(LC_TINY_DIR); tests/unit/test_lc_tiny.py checks it. Rebuilding lc-tiny changes it.
LC_TINY_WEIGHTS_HASH: Final = "f23d59a95e3ae7797cdf2c23e498fa950dbbd8ac8e139965de545ac1067d8027"

WEIGHTS_DOMAIN: Final = b"LC/weights/1"
_CHUNK: Final = 1 << 20
# safetensors' own bound on a header (its MAX_HEADER_SIZE); a 70B model's header is well under 1 MB
MAX_SAFETENSORS_HEADER: Final = 100_000_000


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


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from the JSON header of a safetensors file (an 8-byte little-endian
    length, then that many bytes of JSON), read under `MAX_SAFETENSORS_HEADER`; no tensor data is
    read. Raises `BaseModelError` on a header that is not safetensors."""
    with Path(path).open("rb") as f:
        prefix = f.read(8)
        if len(prefix) != 8:
            raise BaseModelError(f"{path}: too short for a safetensors header")
        (size,) = struct.unpack("<Q", prefix)
        if not 2 <= size <= MAX_SAFETENSORS_HEADER:
            bound = MAX_SAFETENSORS_HEADER
            raise BaseModelError(f"{path}: safetensors header of {size} bytes (at most {bound})")
        raw = f.read(size)
    if len(raw) != size:
        raise BaseModelError(f"{path}: safetensors header truncated ({len(raw)} of {size} bytes)")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise BaseModelError(f"{path}: safetensors header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise BaseModelError(f"{path}: safetensors header is not a JSON object")
    shapes: dict[str, tuple[int, ...]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise BaseModelError(f"{path}: tensor {name!r} has no valid shape in the header")
        shapes[name] = tuple(shape)
    return shapes


def linear_weights(model_dir: Path) -> list[tuple[str, int, int]]:
    """`(module name, in_features, out_features)` of every 2-D `<module>.weight` tensor in the base's
    safetensors files (all shards), as `torch.nn.Linear` stores it: shape `(out, in)`. The module
    names are the checkpoint's tensor names less `.weight`, which are `model.named_modules()` names
    for standard Hugging Face causal LMs (lc-tiny's equality is tested against the worker)."""
    files = weight_files(Path(model_dir))
    if not files[0].name.endswith(".safetensors"):
        raise BaseModelError(f"base model directory {model_dir}: the layout is read from *.safetensors only")
    linear: dict[str, tuple[int, int]] = {}
    for path in files:
        for name, shape in safetensors_shapes(path).items():
            if not name.endswith(".weight") or len(shape) != 2:
                continue
            module = name[: -len(".weight")]
            if module in linear:
                raise BaseModelError(f"base model {model_dir}: tensor {name!r} is in two weight files")
            linear[module] = (shape[1], shape[0])
    return [(m, i, o) for m, (i, o) in linear.items()]


def lora_layout_of(model_dir: Path, lora: LoraConfig) -> LoraLayout:
    """The chain's LoRA layout over the base in `model_dir`, from its safetensors headers alone: the
    same `LoraLayout` the training worker builds from the loaded model at its handshake. Raises
    `BaseModelError` when the headers cannot be read or no module matches `lora.targets`."""
    try:
        return lora_layout(linear_weights(model_dir), lora)
    except ValueError as e:
        raise BaseModelError(f"base model directory {model_dir}: {e}") from None
