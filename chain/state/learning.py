"""State records of federated learning (PROTOCOL §3.5, §6.4, §6.5): the version history, the index of
versions by number, and the test sets DATA blocks selected.

Owns: `VersionEntry` (one per VERSION block, no-ops included: what `getversionhistory` lists),
`TestSetEntry` (one per DATA block that selected examples: the hash of the selection's JSONL blob,
which nodes keep in their blob store), their keys, the writes the transition makes for them
(`record_version`, `record_test_set`) and the reads the rounds service and the RPC need
(`version_history`, `version_by_number`, `recent_test_sets`). Being state, every write has its undo
record like every other key (chain.state.view.StateOverlay).
Must not: decide validity (the transition and chain.consensus do) or read blobs (the caller does).

Keys (part of `state_root`, beside chain.state.keys):
    b"lh" + height(8, BE)   -> VersionEntry   every VERSION block
    b"lv" + version(8, BE)  -> VersionEntry   the VERSION block that made version n (n >= 1)
    b"ld" + height(8, BE)   -> TestSetEntry   a DATA block with a non-empty selection
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from chain.codec import I64, U32
from chain.state.view import StateOverlay, StateView, load
from chain.types import BlobHash, Hash32, Height, Round

HISTORY: Final = b"lh"
BY_VERSION: Final = b"lv"
TEST_SET: Final = b"ld"


@dataclass(frozen=True, slots=True)
class VersionEntry:
    """What one VERSION block did (PROTOCOL §6.5): the version current after it, its adapter and
    scores; `noop` blocks keep the version, the adapter and the score."""

    version: I64
    version_id: Hash32
    height: Height
    round: Round
    adapter_hash: BlobHash
    n_units: U32
    score: I64  # total_score of the body (micro, lower is better)
    previous_score: I64
    noop: bool


@dataclass(frozen=True, slots=True)
class TestSetEntry:
    """The examples one DATA block selected: `test_set_hash` is the hash of their JSONL file
    (`chain.consensus.data_selection.jsonl_bytes`), the blob every node keeps."""

    height: Height
    round: Round
    test_set_hash: Hash32
    n_selected: U32


def _h8(n: int) -> bytes:
    return n.to_bytes(8, "big")


def record_version(ov: StateOverlay, entry: VersionEntry) -> None:
    ov.put(HISTORY + _h8(entry.height), entry)
    if not entry.noop:
        ov.put(BY_VERSION + _h8(entry.version), entry)


def record_test_set(ov: StateOverlay, entry: TestSetEntry) -> None:
    ov.put(TEST_SET + _h8(entry.height), entry)


def version_history(reader: StateView) -> list[VersionEntry]:
    """Every VERSION block's entry, oldest first."""
    return [load(VersionEntry, v) for _, v in reader.items(HISTORY)]


def version_by_number(reader: StateView, version: int) -> VersionEntry | None:
    """The VERSION block that made `version` (None for version 0, the genesis' zero adapter)."""
    raw = reader.get(BY_VERSION + _h8(version))
    return None if raw is None else load(VersionEntry, raw)


def version_number(reader: StateView, version_id: bytes, lookback: int) -> int | None:
    """The number of the version named `version_id` among the current one and the `lookback`
    before it (version 0 is named by the zero hash), or None."""
    current = reader.model_version()
    if bytes(version_id) == bytes(current.version_id):
        return int(current.version)
    for n in range(current.version - 1, max(-1, current.version - 1 - lookback), -1):
        entry = version_by_number(reader, n)
        vid = bytes(32) if n == 0 else (bytes(entry.version_id) if entry is not None else None)
        if vid == bytes(version_id):
            return n
    return None


def recent_test_sets(reader: StateView, up_to_height: int, max_examples: int) -> list[TestSetEntry]:
    """The test sets of DATA blocks at or below `up_to_height`, newest first, as many as it takes
    to reach `max_examples` selected examples (the active test-set window, data_selection)."""
    entries = [
        load(TestSetEntry, v)
        for k, v in reader.items(TEST_SET)
        if int.from_bytes(k[2:], "big") <= up_to_height
    ]
    out: list[TestSetEntry] = []
    total = 0
    for entry in reversed(entries):
        if total >= max_examples:
            break
        out.append(entry)
        total += entry.n_selected
    return out
