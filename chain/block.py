"""Block bodies of the three kinds and the `Block` envelope (PROTOCOL §3.2).

Owns: `TxBody`, `DataBody` with its `QualityReport` and per-unit accepted counts, `VersionBody` with
its included and excluded units (`Exclusion`, the reason a unit was left out) and both adapters'
per-batch scores, `Block`, `body_root`.
Must not: validate bodies against state or the mempool (chain.consensus and the FL rules do).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Annotated, Any, Final

from chain.codec import I64, U32, U64, MaxItems, encode, variant
from chain.hashing import merkle_root
from chain.header import BlockKind, Header
from chain.params import AggregationRule
from chain.tx import Tx
from chain.types import BlobHash, BlockHash, Hash32, Micro, Round, UnitId

MAX_BODY_ITEMS: Final = 100_000


@dataclass(frozen=True, slots=True)
class TxBody:
    txs: Annotated[tuple[Tx, ...], MaxItems(MAX_BODY_ITEMS)] = ()


@dataclass(frozen=True, slots=True)
class QualityReport:
    """What the DATA proposer dropped and kept (PROTOCOL §6.4); validators recompute it exactly."""

    n_units: U32
    n_examples_in: U32
    n_exact_duplicates: U32
    n_near_duplicates: U32
    n_malformed: U32
    n_outliers: U32
    n_selected: U32
    test_set_hash: Hash32


@dataclass(frozen=True, slots=True)
class DataBody:
    """`accepted[i]`: the examples of `unit_ids[i]` in the selection (PROTOCOL §5.1: the data pool is
    split by them); one count per unit, summing to `report.n_selected`, recomputed on import."""

    unit_ids: Annotated[tuple[UnitId, ...], MaxItems(4096)]
    report: QualityReport
    accepted: Annotated[tuple[U32, ...], MaxItems(4096)] = ()


@dataclass(frozen=True, slots=True)
class UnitWeight:
    unit_id: UnitId
    weight: U64


class Exclusion(IntEnum):
    """Why a candidate unit is not part of the aggregate (recorded for reputation, PROTOCOL §5.2)."""

    STALE = 1  # base version more than max_staleness versions old: refused
    MALFORMED = 2  # tensor names, shapes or dtype differ from the chain's layout
    NO_EXAMPLES = 3  # n_examples == 0 (consensus requires > 0; never weighted)
    NORM_OUTLIER = 4  # norm-filtered: L2 norm above factor x median norm
    DIRECTION_OUTLIER = 5  # norm-filtered: negative inner product with the coordinate-wise median
    RARELY_KEPT = 6  # trimmed-mean / median: kept in under half of the average unit's coordinates


@dataclass(frozen=True, slots=True)
class Excluded:
    unit_id: UnitId
    reason: Exclusion


@dataclass(frozen=True, slots=True)
class VersionBody:
    """A VERSION block's body (PROTOCOL §3.2, §6.5). `excluded`: the candidate units the rule left
    out, with the reason (sorted by id, listed with the units only when the version improves);
    `previous_batch_scores`: the previous adapter's per-batch losses on the same batches, whose
    floored mean is `previous_score` (empty in an unscored no-op, like `per_batch_scores`)."""

    round: Round
    base_version_id: Hash32
    units: Annotated[tuple[UnitWeight, ...], MaxItems(4096)]
    aggregation_rule: AggregationRule
    new_adapter_blob_hash: BlobHash
    per_batch_scores: Annotated[tuple[Micro, ...], MaxItems(1024)]
    total_score: I64
    previous_score: I64
    excluded: Annotated[tuple[Excluded, ...], MaxItems(4096)] = ()
    previous_batch_scores: Annotated[tuple[Micro, ...], MaxItems(1024)] = ()

    @property
    def is_noop(self) -> bool:
        """A no-op version block keeps the adapter and pays the proposer only (§6.5)."""
        return not self.units

    @property
    def scores(self) -> VersionScores:
        """The score claim: the body's first Merkle leaf (`body_leaves`)."""
        return VersionScores(
            self.round,
            self.base_version_id,
            self.new_adapter_blob_hash,
            self.per_batch_scores,
            self.total_score,
            self.previous_score,
            self.previous_batch_scores,
        )


@dataclass(frozen=True, slots=True)
class VersionScores:
    """What a VERSION body claims its evaluation gave (PROTOCOL §6.5): leaf 0 of its `body_leaves`,
    so that FALSE_SCORE evidence (`chain.evidence.FalseScore`) proves the signed claim with one
    small leaf and a Merkle branch (at most ~19 KB, whatever the number of units)."""

    round: Round
    base_version_id: Hash32
    new_adapter_blob_hash: BlobHash
    per_batch_scores: Annotated[tuple[Micro, ...], MaxItems(1024)]
    total_score: I64
    previous_score: I64
    previous_batch_scores: Annotated[tuple[Micro, ...], MaxItems(1024)]


VERSION_LEAVES: Final = 2  # a VERSION body's Merkle leaves: its score claim, then the whole body


Body = TxBody | DataBody | VersionBody

BODY_TYPES: Final[dict[BlockKind, type[Any]]] = {
    BlockKind.GENESIS: TxBody,
    BlockKind.TX: TxBody,
    BlockKind.DATA: DataBody,
    BlockKind.VERSION: VersionBody,
}


def _body_type(values: Any) -> type[Any] | None:
    return BODY_TYPES.get(values["header"].kind)


def body_leaves(body: Body) -> list[bytes]:
    """Merkle leaves: each tx of a TX body; the report then, per selected unit of a DATA body, its
    id followed by its accepted count as 4 big-endian bytes (36 bytes, so a branch proves one unit's
    count; ids or counts left over when the two lists differ in length, which the body rules refuse,
    are leaves of their own); a VERSION body's score claim (`VersionScores`), then the whole
    VERSION body."""
    if isinstance(body, TxBody):
        return [encode(tx) for tx in body.txs]
    if isinstance(body, DataBody):
        n = min(len(body.unit_ids), len(body.accepted))
        ids, counts = body.unit_ids, body.accepted
        pairs = [bytes(u) + c.to_bytes(4, "big") for u, c in zip(ids[:n], counts[:n], strict=True)]
        rest = [bytes(u) for u in ids[n:]] + [c.to_bytes(4, "big") for c in counts[n:]]
        return [encode(body.report), *pairs, *rest]
    return [encode(body.scores), encode(body)]


def body_root(body: Body) -> Hash32:
    return merkle_root(body_leaves(body))


@dataclass(frozen=True, slots=True)
class Block:
    header: Header
    body: Body = field(metadata=variant(_body_type))

    def __post_init__(self) -> None:
        if type(self.body) is not BODY_TYPES[self.header.kind]:
            raise TypeError(
                f"a {self.header.kind.name} block needs a {BODY_TYPES[self.header.kind].__name__}"
            )

    @property
    def hash(self) -> BlockHash:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height
