"""Slashing evidence (PROTOCOL §5.3): the five provable faults.

Owns: the evidence types and their ids. Must not: decide whether evidence proves a fault (that is
`chain.consensus.slashing`, which needs params and state).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Annotated, Any

from chain.codec import U32, ByteLen, MaxItems, encode, variant
from chain.hashing import H
from chain.header import Attestation, Header
from chain.types import Hash32

MAX_EVIDENCE_BODY = 2 * 1024 * 1024
MAX_BRANCH = 32  # Merkle depth: 2^32 leaves


class EvidenceKind(IntEnum):
    DOUBLE_PROPOSAL = 1
    DOUBLE_ATTEST = 2
    INVALID_BLOCK = 3
    FALSE_SCORE = 4
    SURROUND_VOTE = 5


@dataclass(frozen=True, slots=True)
class DoubleProposal:
    """Two different signed headers by one proposer at one height."""

    a: Header
    b: Header


@dataclass(frozen=True, slots=True)
class DoubleAttest:
    """Two attestations by one validator for different blocks at one height."""

    a: Attestation
    b: Attestation


@dataclass(frozen=True, slots=True)
class SurroundVote:
    """Two attestations by one validator where `a`'s source-target span strictly contains `b`'s:
    a.source_height < b.source_height and b.height < a.height (Casper FFG's second condition)."""

    a: Attestation
    b: Attestation


@dataclass(frozen=True, slots=True)
class InvalidBlock:
    """A signed header plus one body leaf that breaks a stateless rule, with the Merkle branch that
    ties it to the header's `body_root` and the leaf count (PROTOCOL §5.3). A whole body (up to
    `max_block_bytes`) does not fit in a tx of `max_tx_bytes`; one leaf and log2(count) hashes do."""

    header: Header
    leaf_index: U32
    leaf_count: U32
    leaf: Annotated[bytes, ByteLen(0, MAX_EVIDENCE_BODY)]
    branch: Annotated[tuple[Hash32, ...], MaxItems(MAX_BRANCH)]


@dataclass(frozen=True, slots=True)
class FalseScore:
    """A signed VERSION header plus its score leaf (`chain.block.VersionScores`, leaf 0 of
    `body_leaves`), the leaf count and the Merkle branch to the header's `body_root` (PROTOCOL
    §5.3): the proposer's signed claim of per-batch losses, which honest nodes recompute. Like
    `InvalidBlock` it carries one leaf, not the body, so it fits a tx of `max_tx_bytes` whatever
    the number of units. Whether the claim is false is `chain.consensus.slashing`'s question."""

    header: Header
    leaf_index: U32
    leaf_count: U32
    leaf: Annotated[bytes, ByteLen(0, MAX_EVIDENCE_BODY)]
    branch: Annotated[tuple[Hash32, ...], MaxItems(MAX_BRANCH)]


EVIDENCE_TYPES: dict[EvidenceKind, type[Any]] = {
    EvidenceKind.DOUBLE_PROPOSAL: DoubleProposal,
    EvidenceKind.DOUBLE_ATTEST: DoubleAttest,
    EvidenceKind.INVALID_BLOCK: InvalidBlock,
    EvidenceKind.FALSE_SCORE: FalseScore,
    EvidenceKind.SURROUND_VOTE: SurroundVote,
}


def _evidence_payload(values: Any) -> type[Any] | None:
    return EVIDENCE_TYPES.get(values["kind"])


@dataclass(frozen=True, slots=True)
class Evidence:
    kind: EvidenceKind
    proof: DoubleProposal | DoubleAttest | InvalidBlock | FalseScore | SurroundVote = field(
        metadata=variant(_evidence_payload)
    )

    def __post_init__(self) -> None:
        if type(self.proof) is not EVIDENCE_TYPES[self.kind]:
            raise TypeError(f"{self.kind.name} evidence needs a {EVIDENCE_TYPES[self.kind].__name__}")

    @property
    def id(self) -> Hash32:
        """H of the encoding. Not the "accepted once" key: swapping a/b changes it, so slashing uses
        the normalised key of `chain.consensus.slashing.verify_evidence`."""
        return H(encode(self))
