"""Block bodies of the three kinds and the `Block` envelope (PROTOCOL §3.2).

Owns: `TxBody`, `DataBody` with its `QualityReport`, `VersionBody`, `Block`, `body_root`.
Must not: validate bodies against state or the mempool (chain.consensus and the FL rules do).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    unit_ids: Annotated[tuple[UnitId, ...], MaxItems(4096)]
    report: QualityReport


@dataclass(frozen=True, slots=True)
class UnitWeight:
    unit_id: UnitId
    weight: U64


@dataclass(frozen=True, slots=True)
class VersionBody:
    round: Round
    base_version_id: Hash32
    units: Annotated[tuple[UnitWeight, ...], MaxItems(4096)]
    aggregation_rule: AggregationRule
    new_adapter_blob_hash: BlobHash
    per_batch_scores: Annotated[tuple[Micro, ...], MaxItems(1024)]
    total_score: I64
    previous_score: I64

    @property
    def is_noop(self) -> bool:
        """A no-op version block keeps the adapter and pays the proposer only (§6.5)."""
        return not self.units


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
    """Merkle leaves: each tx of a TX body; the report then each unit id of a DATA body; the
    whole VERSION body."""
    if isinstance(body, TxBody):
        return [encode(tx) for tx in body.txs]
    if isinstance(body, DataBody):
        return [encode(body.report), *body.unit_ids]
    return [encode(body)]


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
