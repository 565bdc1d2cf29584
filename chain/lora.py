"""FFA-LoRA and the learning-unit blob: frozen A matrices, fixed point, layout, one strict validator.

Owns (PROTOCOL §1.4, §3.4, §6.2): the LoRA layout a chain's parameters define over a base model's
linear modules (`lora_layout`), the tensor names that travel (`tensor_name`), the frozen A matrices
derived from `H(genesis_hash || module name)` (`frozen_a`), the fixed-point encoding of weights
(`to_fixed` / `from_fixed`), the canonical update blob (`update_blob`) and its one strict check
(`check_update_blob`). Must not: import torch or any other project package, read files, or trust a
blob's bytes before its header has been parsed under a size bound.

Why SHAKE-256 for A: the A matrices must be bit-identical on every machine, because averaging B is
only averaging `B @ A` when every node holds the same A. SHAKE-256 (FIPS 202, in `hashlib`) is an
extendable-output function: one call expands the 32-byte seed into as many bytes as the matrix needs,
and its bytes are the same on every platform and Python version. The bytes become floats by integer
arithmetic and exactly rounded IEEE operations only. numpy's `Generator` was not chosen: its bit
generators are stable, but NEP 19 allows its distribution methods (`uniform`, `normal`) to change
their output between numpy versions.

The distribution is peft's default for A (`kaiming_uniform(a=sqrt(5))`): uniform on
`[-1/sqrt(in_features), 1/sqrt(in_features))`. B starts at zero, so version 0 is the base model.

Blob format: a safetensors file whose tensors are exactly the layout's exchanged tensors (names of
peft's adapter files, e.g. `base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight`), dtype
int32 in fixed point, no `__metadata__`, in the canonical byte form `safetensors.numpy.save` writes.
Only that one byte string is valid for a given update, so blob hashes identify updates.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import safetensors.numpy

from chain.errors import ErrorCode
from chain.hashing import H
from chain.params import AggregationScheme, ChainParams

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
MAX_HEADER_BYTES: Final = 1 << 20  # a bound on any layout's header, whatever the model
_HEADER_BYTES_PER_TENSOR: Final = 160  # JSON of one entry beyond its name (generous)
_A_DOMAIN: Final = b"LC/lora-A/1"

Int32Array = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.floating]


# -- layout ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoraModule:
    """One adapted linear layer of the base model, named as in `model.named_modules()`."""

    name: str
    in_features: int
    out_features: int


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One tensor of an update blob: its name and exact shape."""

    name: str
    shape: tuple[int, int]

    @property
    def n_bytes(self) -> int:
        return self.shape[0] * self.shape[1] * 4


@dataclass(frozen=True, slots=True)
class LoraLayout:
    """The chain's LoRA configuration applied to one base model (PROTOCOL §6.2)."""

    rank: int
    alpha: int
    scheme: AggregationScheme
    fp_shift: int
    modules: tuple[LoraModule, ...]  # sorted by name

    @property
    def scaling(self) -> float:
        """peft's `lora_alpha / r`: the adapter adds `scaling * B @ A` to the weight."""
        return self.alpha / self.rank

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modules)

    def exchanged(self) -> tuple[TensorSpec, ...]:
        """The tensors an update carries, sorted by name: B only (FFA-LoRA) or A and B (lora-ab)."""
        specs = [TensorSpec(tensor_name(m.name, "B"), (m.out_features, self.rank)) for m in self.modules]
        if self.scheme == AggregationScheme.LORA_AB:
            specs += [TensorSpec(tensor_name(m.name, "A"), (self.rank, m.in_features)) for m in self.modules]
        return tuple(sorted(specs, key=lambda s: s.name))

    def max_blob_bytes(self) -> int:
        """The size bound of a valid blob: the data plus a generous bound on the header."""
        specs = self.exchanged()
        header = 64 + sum(len(s.name.encode()) + _HEADER_BYTES_PER_TENSOR for s in specs)
        return 8 + min(header, MAX_HEADER_BYTES) + sum(s.n_bytes for s in specs)


def tensor_name(module: str, matrix: str) -> str:
    """The name peft gives the `matrix` ("A" or "B") of `module` in an adapter file (PROTOCOL §6.2)."""
    return f"base_model.model.{module}.lora_{matrix}.weight"


@dataclass(frozen=True, slots=True)
class LoraConfig:
    """The LoRA part of the chain parameters (PROTOCOL §6.2), all a worker needs to build the layout."""

    rank: int
    alpha: int
    targets: tuple[str, ...]  # last components of module names, e.g. ("q_proj", "v_proj")
    scheme: AggregationScheme
    fp_shift: int

    @classmethod
    def from_params(cls, params: ChainParams) -> LoraConfig:
        p = params
        return cls(p.lora_rank, p.lora_alpha, p.lora_targets, p.aggregation_scheme, p.fp_shift)


def lora_layout(
    linear_modules: Iterable[tuple[str, int, int]], config: LoraConfig | ChainParams
) -> LoraLayout:
    """The layout over the base's linear modules `(name, in_features, out_features)` whose last name
    component is one of the configured targets. Raises `ValueError` when none matches."""
    if isinstance(config, ChainParams):
        config = LoraConfig.from_params(config)
    targets = set(config.targets)
    chosen = (LoraModule(n, int(i), int(o)) for n, i, o in linear_modules if n.rsplit(".", 1)[-1] in targets)
    modules = sorted(chosen, key=lambda m: m.name)
    if not modules:
        raise ValueError(f"the base model has no linear module named {sorted(targets)} (lora_targets)")
    return LoraLayout(
        rank=config.rank,
        alpha=config.alpha,
        scheme=config.scheme,
        fp_shift=config.fp_shift,
        modules=tuple(modules),
    )


# -- frozen A (FFA-LoRA) -----------------------------------------------------------------------


def a_seed(genesis_hash: bytes, module: str) -> bytes:
    """`H(genesis_hash || module name)`: the seed of one module's A matrix (PROTOCOL §6.2)."""
    return H(bytes(genesis_hash) + module.encode("utf-8"))


def frozen_a(genesis_hash: bytes, module: LoraModule, rank: int) -> npt.NDArray[np.float32]:
    """The (rank, in_features) A matrix of `module`, identical on every machine."""
    n = rank * module.in_features
    stream = hashlib.shake_256(_A_DOMAIN + a_seed(genesis_hash, module.name)).digest(8 * n)
    words = np.frombuffer(stream, dtype="<u8")
    unit = (words >> np.uint64(11)).astype(np.float64) * (2.0**-53)  # exact: 53-bit integers
    bound = 1.0 / math.sqrt(module.in_features)
    values = (2.0 * unit - 1.0) * bound  # each step one correctly rounded IEEE operation
    return values.astype(np.float32).reshape(rank, module.in_features)


def frozen_a_all(genesis_hash: bytes, layout: LoraLayout) -> dict[str, npt.NDArray[np.float32]]:
    """Every module's A, keyed by module name."""
    return {m.name: frozen_a(genesis_hash, m, layout.rank) for m in layout.modules}


# -- fixed point (PROTOCOL §1.4) ---------------------------------------------------------------


def to_fixed(values: FloatArray, fp_shift: int) -> Int32Array:
    """`round(w * 2^fp_shift)` clamped to int32 (ties to even). Raises `ValueError` on NaN or inf."""
    w = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError("cannot encode NaN or infinite weights in fixed point")
    scaled = np.rint(np.ldexp(w, fp_shift))
    return np.clip(scaled, INT32_MIN, INT32_MAX).astype(np.int32)


def from_fixed(values: Int32Array, fp_shift: int) -> npt.NDArray[np.float64]:
    """The real values of fixed-point integers (exact in float64)."""
    return np.ldexp(np.asarray(values, dtype=np.float64), -fp_shift)


# -- the update blob (PROTOCOL §3.4) -----------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Update:
    """A checked update: the exchanged tensors of a layout, int32 fixed point, sorted by name."""

    tensors: tuple[tuple[str, Int32Array], ...]

    def as_dict(self) -> dict[str, Int32Array]:
        return dict(self.tensors)

    def equals(self, other: Update) -> bool:
        return [n for n, _ in self.tensors] == [n for n, _ in other.tensors] and all(
            np.array_equal(a, b) for (_, a), (_, b) in zip(self.tensors, other.tensors, strict=True)
        )


def update_blob(tensors: Mapping[str, Int32Array]) -> bytes:
    """The canonical blob of int32 tensors (no metadata). The caller passes exactly the layout's
    tensors; `check_update_blob` accepts the result and only this byte string for these values."""
    for name, array in tensors.items():
        if array.dtype != np.int32:
            raise ValueError(f"{name}: update tensors are int32 fixed point, got {array.dtype}")
    out: bytes = safetensors.numpy.save({n: np.ascontiguousarray(a) for n, a in tensors.items()})
    return out


def check_update_blob(blob: bytes, layout: LoraLayout) -> Update | ErrorCode:
    """The update in `blob`, or why it is invalid. Never raises.

    Checks in order: size bound (BLOB_TOO_LARGE); header length, JSON, entries, offsets, metadata
    (BAD_UPDATE_HEADER); tensor names (UPDATE_WRONG_TENSORS: missing, extra or misnamed); dtype
    (UPDATE_WRONG_DTYPE); shapes (UPDATE_WRONG_SHAPE); byte-exact canonical form (NON_CANONICAL).
    """
    if len(blob) > layout.max_blob_bytes():
        return ErrorCode.BLOB_TOO_LARGE
    header = _parse_header(blob)
    if isinstance(header, ErrorCode):
        return header
    specs = {s.name: s for s in layout.exchanged()}
    if set(header) != set(specs):
        return ErrorCode.UPDATE_WRONG_TENSORS
    for name, entry in header.items():
        if entry["dtype"] != "I32":
            return ErrorCode.UPDATE_WRONG_DTYPE
        if tuple(entry["shape"]) != specs[name].shape:
            return ErrorCode.UPDATE_WRONG_SHAPE
    try:
        loaded = safetensors.numpy.load(bytes(blob))
    except Exception:  # the header passed our checks, so this is a library-level refusal
        return ErrorCode.BAD_UPDATE_HEADER
    update = Update(tuple((name, loaded[name]) for name in sorted(specs)))
    if update_blob(update.as_dict()) != bytes(blob):
        return ErrorCode.NON_CANONICAL
    return update


def _parse_header(blob: bytes) -> dict[str, dict[str, list[int] | str]] | ErrorCode:
    """The tensor entries of a safetensors header, parsed under a size bound before anything else
    reads the blob: exact entry keys, integer shapes, contiguous non-overlapping offsets that cover
    the data exactly, no `__metadata__`."""
    if len(blob) < 8:
        return ErrorCode.BAD_UPDATE_HEADER
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(blob):
        return ErrorCode.BAD_UPDATE_HEADER
    try:
        doc = json.loads(bytes(blob[8 : 8 + n]).decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ErrorCode.BAD_UPDATE_HEADER
    if not isinstance(doc, dict) or "__metadata__" in doc:
        return ErrorCode.BAD_UPDATE_HEADER
    entries: list[tuple[int, int, str]] = []
    for name, entry in doc.items():
        size = _entry_size(entry)
        if size is None:
            return ErrorCode.BAD_UPDATE_HEADER
        begin, end = entry["data_offsets"]
        if end - begin != size:
            return ErrorCode.BAD_UPDATE_HEADER
        entries.append((begin, end, name))
    position = 0
    for begin, end, _ in sorted(entries):
        if begin != position:  # a gap or an overlap
            return ErrorCode.BAD_UPDATE_HEADER
        position = end
    if 8 + n + position != len(blob):
        return ErrorCode.BAD_UPDATE_HEADER
    return doc


def _entry_size(entry: object) -> int | None:
    """The data size one header entry declares, or None if the entry is malformed."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        return None
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    item = {"I32": 4, "F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I8": 1, "U8": 1}.get(dtype)
    if item is None or not isinstance(shape, list) or not isinstance(offsets, list) or len(offsets) != 2:
        return None
    if not all(type(d) is int and 0 <= d < 2**31 for d in shape):
        return None
    if not all(type(o) is int and 0 <= o < 2**62 for o in offsets):
        return None
    return item * math.prod(shape)


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key in a safetensors header")
    return out
