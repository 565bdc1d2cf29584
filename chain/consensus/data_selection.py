"""The DATA block's deterministic test-set selection and the active test set (PROTOCOL §6.4).

Owns: which examples of the selected data units enter the test set, the quality report a DATA body
commits to (drop counts per reason, the test-set hash), the per-unit accepted counts that split the
data pool (§5.1), the active test set across rounds, and the DATA body check that re-runs the
selection. Must not: read blobs or state (the caller passes each unit with its blob), use the clock
or anything that could differ between machines. The rules and their reasons are in docs/learning.md.

Selection, over units sorted by unit id and their lines in order:
1. malformed: `chain.examples.parse_line` refuses the line, or its kind differs from the unit's format;
2. exact duplicate: same kind and normalised fields as an earlier example or one in the active set;
3. outlier: UTF-8 length outside [min_example_bytes, max_example_bytes], or more than
   `length_outlier_factor` times the (lower) median length of the examples left, or less than it
   divided by that factor;
4. near duplicate: MinHash (datasketch, scheme affine32, seed 1, 128 permutations, SHA-1 of 5-char
   shingles of the normalised text) shares an LSH band (32 bands of 4) with an earlier kept example
   and agrees with it in at least ceil(near_duplicate_permille * 128 / 1000) positions.
The kept examples are ordered by H(canonical line) and the first `max_test_examples` are selected.
The units of one block hold at most 8 x `max_test_examples` examples (`input_limits`), which bounds
every validator's re-run.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from chain.block import DataBody, QualityReport
from chain.errors import ErrorCode
from chain.examples import Example, normalise, parse_line, split_lines
from chain.hashing import H
from chain.params import ChainParams
from chain.types import ZERO_HASH, Hash32, UnitId
from chain.units import DataFormat, DataUnit

NUM_PERM: Final = 128
MINHASH_SEED: Final = 1
MINHASH_SCHEME: Final = "affine32"  # datasketch >= 2; pinned so an upgrade cannot change a hash
BANDS: Final = 32
ROWS: Final = 4  # BANDS * ROWS == NUM_PERM
SHINGLE: Final = 5  # characters per shingle of the normalised text
INPUT_FACTOR: Final = 8  # a DATA block selects at most 8x max_test_examples examples (see input_limits)
_KIND_OF_FORMAT: Final = {DataFormat.JSONL_TEXT: "text", DataFormat.JSONL_PROMPT_COMPLETION: "pair"}


class SelectionError(ValueError):
    """Raised when a data unit and its blob disagree (hash, size or example count): never select it."""


class DropReason(IntEnum):
    MALFORMED = 1
    EXACT_DUPLICATE = 2
    OUTLIER = 3
    NEAR_DUPLICATE = 4


@dataclass(frozen=True, slots=True)
class Selection:
    """The test set of one DATA block (in test-set order), its report, and per-unit accepted counts
    (every unit, sorted by id; the data pool is split by these)."""

    examples: tuple[Example, ...]
    report: QualityReport
    accepted: tuple[tuple[UnitId, int], ...]


@dataclass(frozen=True, slots=True)
class _Candidate:
    unit_id: UnitId
    example: Example
    key: bytes


def exact_key(example: Example) -> bytes:
    """What exact duplicates share: H of the kind and the normalised fields."""
    fields = [example.kind, normalise(example.prompt), normalise(example.completion)]
    return H(json.dumps(fields, ensure_ascii=False).encode("utf-8"))  # unambiguous, unlike joining


def jsonl_bytes(examples: Iterable[Example]) -> bytes:
    """The test set as the JSONL file the worker evaluates: canonical lines, each ending in a newline."""
    return b"".join(e.canonical_line() + b"\n" for e in examples)


def unit_problem(params: ChainParams, unit: DataUnit, blob: bytes) -> str | None:
    """Why `blob` cannot be `unit`'s blob, or None (the proposer filters with this first)."""
    if bytes(H(blob)) != bytes(unit.blob_hash):
        return "the blob does not match the unit's blob hash"
    if len(blob) != unit.byte_size or not 0 < unit.byte_size <= params.max_data_unit_bytes:
        return f"the blob is {len(blob)} bytes, the unit declares {unit.byte_size}"
    if unit.format not in _KIND_OF_FORMAT:
        return f"unknown data format {unit.format}"
    lines = len(split_lines(blob))
    if lines != unit.n_examples or lines == 0:
        return f"the blob has {lines} lines, the unit declares {unit.n_examples} examples"
    return None


def input_limits(params: ChainParams) -> tuple[int, int]:
    """(examples, bytes) one DATA block may select in total: INPUT_FACTOR times the test set, so
    that every validator's re-run of the selection stays bounded (about 1 ms per example)."""
    return INPUT_FACTOR * params.max_test_examples, INPUT_FACTOR * params.max_test_examples * (
        params.max_example_bytes + 64
    )


def over_input_limits(params: ChainParams, units: Sequence[DataUnit]) -> str | None:
    """Why these units are too much for one DATA block (declared examples and bytes), or None."""
    max_examples, max_bytes = input_limits(params)
    examples = sum(u.n_examples for u in units)
    size = sum(u.byte_size for u in units)
    if examples > max_examples:
        return f"{examples} examples selected, at most {max_examples} per DATA block"
    if size > max_bytes:
        return f"{size} bytes of data units selected, at most {max_bytes} per DATA block"
    return None


def choose_units(
    params: ChainParams, offered: Sequence[tuple[DataUnit, bytes]]
) -> list[tuple[DataUnit, bytes]]:
    """The proposer's pick: in the offered order (e.g. by fee), each unit whose blob agrees with
    it and that still fits the input limits; the first of duplicate ids."""
    chosen: list[tuple[DataUnit, bytes]] = []
    ids: set[bytes] = set()
    for unit, blob in offered:
        uid = bytes(unit.id)
        if uid in ids or unit_problem(params, unit, blob) is not None:
            continue
        if over_input_limits(params, [*(u for u, _ in chosen), unit]) is None:
            chosen.append((unit, blob))
            ids.add(uid)
    return chosen


def select_test_set(
    params: ChainParams, units: Sequence[tuple[DataUnit, bytes]], active_keys: frozenset[bytes] = frozenset()
) -> Selection:
    """Run the selection over `units` (any order) given the exact keys of the active test set.

    Raises `SelectionError` for a unit whose blob disagrees with it, or a unit listed twice.
    """
    ordered = sorted(units, key=lambda ub: bytes(ub[0].id))
    ids = [u.id for u, _ in ordered]
    if len(set(ids)) != len(ids):
        raise SelectionError("a data unit is listed twice")
    over = over_input_limits(params, [u for u, _ in ordered])
    if over is not None:
        raise SelectionError(over)
    counts = dict.fromkeys(DropReason, 0)
    seen = set(active_keys)
    candidates: list[_Candidate] = []
    n_in = 0
    for unit, blob in ordered:
        problem = unit_problem(params, unit, blob)
        if problem is not None:
            raise SelectionError(f"data unit {unit.id.hex()[:16]}: {problem}")
        for raw in split_lines(blob):
            n_in += 1
            example = parse_line(raw)
            if isinstance(example, str) or example.kind != _KIND_OF_FORMAT[unit.format]:
                counts[DropReason.MALFORMED] += 1
                continue
            key = exact_key(example)
            if key in seen:
                counts[DropReason.EXACT_DUPLICATE] += 1
                continue
            seen.add(key)
            candidates.append(_Candidate(unit.id, example, key))
    sized = _drop_length_outliers(params, candidates)
    counts[DropReason.OUTLIER] = len(candidates) - len(sized)
    kept = _drop_near_duplicates(params, sized)
    counts[DropReason.NEAR_DUPLICATE] = len(sized) - len(kept)
    ranked = sorted(kept, key=lambda c: H(c.example.canonical_line()))
    chosen = ranked[: params.max_test_examples]
    examples = tuple(c.example for c in chosen)
    per_unit = dict.fromkeys(ids, 0)
    for c in chosen:
        per_unit[c.unit_id] += 1
    report = QualityReport(
        n_units=len(ordered),
        n_examples_in=n_in,
        n_exact_duplicates=counts[DropReason.EXACT_DUPLICATE],
        n_near_duplicates=counts[DropReason.NEAR_DUPLICATE],
        n_malformed=counts[DropReason.MALFORMED],
        n_outliers=counts[DropReason.OUTLIER],
        n_selected=len(examples),
        test_set_hash=Hash32(H(jsonl_bytes(examples))) if examples else ZERO_HASH,
    )
    return Selection(examples, report, tuple(per_unit.items()))


def _drop_length_outliers(params: ChainParams, candidates: list[_Candidate]) -> list[_Candidate]:
    lo, hi = params.min_example_bytes, params.max_example_bytes
    bounded = [c for c in candidates if lo <= c.example.n_bytes() <= hi]
    if not bounded:
        return []
    lengths = sorted(c.example.n_bytes() for c in bounded)
    median = lengths[(len(lengths) - 1) // 2]
    f = params.length_outlier_factor
    return [c for c in bounded if c.example.n_bytes() * f >= median and c.example.n_bytes() <= f * median]


# -- near duplicates -----------------------------------------------------------------------------


@functools.cache
def _minhash() -> tuple[Any, Any, npt.NDArray[np.uint32]]:
    """datasketch's MinHash class, its SHA-1 hash and the 128 affine permutations of seed 1,
    generated once (from numpy's legacy `RandomState`, whose stream numpy keeps stable). Imported
    here, not at module level: importing datasketch loads scipy (seconds), which block validation
    of other kinds and `import chain.consensus` should not pay."""
    from datasketch import MinHash  # type: ignore[import-untyped]
    from datasketch.hashfunc import sha1_hash32  # type: ignore[import-untyped]

    perms = MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED, scheme=MINHASH_SCHEME, hashfunc=sha1_hash32)
    return MinHash, sha1_hash32, perms.permutations


def signature(text: str) -> npt.NDArray[np.uint32]:
    """MinHash signature of a normalised text's 5-character shingles (the text itself if shorter)."""
    shingles = {text[i : i + SHINGLE] for i in range(max(1, len(text) - SHINGLE + 1))}
    minhash, sha1_hash32, permutations = _minhash()
    m = minhash(
        num_perm=NUM_PERM,
        seed=MINHASH_SEED,
        scheme=MINHASH_SCHEME,
        hashfunc=sha1_hash32,
        permutations=permutations,
    )
    m.update_batch([s.encode("utf-8") for s in sorted(shingles)])
    values: npt.NDArray[np.uint32] = m.hashvalues
    return values


def _drop_near_duplicates(params: ChainParams, candidates: list[_Candidate]) -> list[_Candidate]:
    need = -(-params.near_duplicate_permille * NUM_PERM // 1000)  # ceil
    buckets: dict[bytes, list[int]] = {}
    kept: list[_Candidate] = []
    signatures: list[npt.NDArray[np.uint32]] = []
    for c in candidates:
        sig = signature(normalise(c.example.full_text))
        bands = [bytes([b]) + sig[b * ROWS : (b + 1) * ROWS].astype("<u4").tobytes() for b in range(BANDS)]
        earlier = {i for band in bands for i in buckets.get(band, ())}
        if any(int(np.count_nonzero(signatures[i] == sig)) >= need for i in earlier):
            continue
        index = len(kept)
        kept.append(c)
        signatures.append(sig)
        for band in bands:
            buckets.setdefault(band, []).append(index)
    return kept


# -- the active test set and the DATA body -------------------------------------------------------


def active_test_set(recent: Sequence[Sequence[Example]], max_test_examples: int) -> tuple[Example, ...]:
    """The examples versions are scored on: the selections of the most recent DATA blocks, newest
    block first (each in its own order), cut at `max_test_examples`."""
    out: list[Example] = []
    for selection in recent:
        for example in selection:
            if len(out) == max_test_examples:
                return tuple(out)
            out.append(example)
    return tuple(out)


def data_body(selection: Selection) -> DataBody:
    """The DATA body of a selection: its units in id order, its report, their accepted counts."""
    return DataBody(
        tuple(u for u, _ in selection.accepted), selection.report, tuple(n for _, n in selection.accepted)
    )


def check_data_body_stateless(params: ChainParams, body: DataBody) -> ErrorCode | None:
    """What a DATA body shows by itself (for `check_fl_body_stateless`): unit ids strictly
    increasing, one accepted count per unit summing to the selected examples, report counts that
    add up within the input limit, at most `max_test_examples` selected, and the zero hash for an
    empty test set (the empty DATA body the producer makes is the selection of no units)."""
    ids = [bytes(i) for i in body.unit_ids]
    if any(a >= b for a, b in itertools.pairwise(ids)):
        return ErrorCode.BAD_BODY
    if len(body.accepted) != len(ids) or sum(body.accepted) != body.report.n_selected:
        return ErrorCode.BAD_BODY
    r = body.report
    dropped = r.n_malformed + r.n_exact_duplicates + r.n_near_duplicates + r.n_outliers
    if r.n_units != len(ids) or dropped + r.n_selected > r.n_examples_in:
        return ErrorCode.BAD_BODY
    if r.n_examples_in > input_limits(params)[0] or r.n_selected > params.max_test_examples:
        return ErrorCode.BAD_BODY
    if r.n_selected == 0 and bytes(r.test_set_hash) != bytes(ZERO_HASH):
        return ErrorCode.BAD_BODY
    return None


def check_data_body(
    params: ChainParams,
    body: DataBody,
    units: Sequence[tuple[DataUnit, bytes]],
    active_keys: frozenset[bytes] = frozenset(),
) -> ErrorCode | None:
    """Re-run the selection on the body's units (resolved by the caller, in any order) and compare.

    BAD_BODY when the stateless rules fail, the unit ids differ from `units`, a unit's blob
    disagrees with it, or the recomputed report or per-unit accepted counts differ from the body's.
    """
    stateless = check_data_body_stateless(params, body)
    if stateless is not None:
        return stateless
    ids = [bytes(i) for i in body.unit_ids]
    if sorted(bytes(u.id) for u, _ in units) != ids:
        return ErrorCode.BAD_BODY
    try:
        selection = select_test_set(params, units, active_keys)
    except SelectionError:
        return ErrorCode.BAD_BODY
    return None if data_body(selection) == body else ErrorCode.BAD_BODY
