"""Slashing evidence: does it prove a fault, by whom, and under which normalised key (PROTOCOL §5.3).

Owns: `verify_evidence` (called by the state transition for a `SLASH_EVIDENCE` tx), `evidence_key`
(the "accepted once" identity: the same fault reported with a/b swapped, or with two other copies of
the conflicting objects, has the same key), and `slash_amounts` (how the slashed stake splits into
burn and reporter share). Must not: change state (the state engineer's SLASH_EVIDENCE transition
applies the effect: burn, reporter share, jail for `jail_blocks`, reputation reset to the minimum).

Per kind:
- DOUBLE_PROPOSAL: two validly signed headers of one proposer at one height with different hashes.
- DOUBLE_ATTEST: two validly signed attestations of one validator at one height that differ in
  target or source (two votes of one validator never prove anything against another validator).
- SURROUND_VOTE: two validly signed attestations of one validator where the first's span strictly
  contains the second's: a.source_height < b.source_height and b.height < a.height (§4.4).
- INVALID_BLOCK: a validly signed header plus one body leaf, its index, the leaf count and the
  Merkle branch to the header's `body_root` (a whole body does not fit in a tx), where the leaf
  breaks a *stateless* rule with a permanent code (`body.check_leaf_stateless`), or a header kind
  that does not match its height. `invalid_block_evidence` builds it from a block. State-dependent
  faults cannot be proven without the parent state; a caller may pass `revalidate` to extend it.
- FALSE_SCORE: needs the federated-learning rules (re-scoring within `score_slash_tolerance_micro`,
  PROTOCOL §6.5). Until they exist this returns `BAD_EVIDENCE`; the FL issue supplies
  `check_false_score` (see `FalseScoreCheck`) and sets it as the default here.

Evidence is only accepted while the faulty stake can still be reached: the fault height must be
within `unbonding_blocks` of the state's height (older -> `EVIDENCE_TOO_OLD`).
"""

from __future__ import annotations

from collections.abc import Callable

from chain.block import Block, body_leaves
from chain.consensus.body import check_leaf_stateless, faulty_leaf
from chain.errors import ErrorCode
from chain.evidence import (
    DoubleAttest,
    DoubleProposal,
    Evidence,
    EvidenceKind,
    FalseScore,
    InvalidBlock,
    SurroundVote,
)
from chain.hashing import H_many, merkle_branch, merkle_root_from_branch
from chain.header import Header, kind_for_height
from chain.params import ChainParams
from chain.state.model import StateReader
from chain.types import Hash32, PubKey

EVIDENCE_KEY_TAG = b"LC/evidence-key/1"

LeafRevalidator = Callable[[ChainParams, Header, int, int, bytes], ErrorCode | None]
"""(params, signed header, leaf index, leaf count, leaf) -> the first rule the committed leaf
breaks, or None: `body.check_leaf_stateless` by default."""

FalseScoreCheck = Callable[[ChainParams, StateReader, Header, bytes], ErrorCode | None]
"""FL rules (§6.5): None if the version block's score is off by more than the slash tolerance
(a fault), else the code saying why the evidence does not prove one."""


def evidence_key(kind: EvidenceKind, validator: PubKey, height: int) -> Hash32:
    """H(tag || kind || validator || height): one slash per validator, kind and height."""
    return H_many(EVIDENCE_KEY_TAG, bytes([int(kind)]), validator, height.to_bytes(8, "big"))


def slash_amounts(params: ChainParams, kind: EvidenceKind, stake: int) -> tuple[int, int]:
    """(total slashed, reporter share) in base units; the burn is total - share (floor divisions)."""
    total = stake * params.slash_permille(int(kind)) // 1000
    share = total * params.slash_reporter_share_permille // 1000
    return total, share


def verify_evidence(
    params: ChainParams,
    reader: StateReader,
    evidence: Evidence,
    *,
    revalidate: LeafRevalidator | None = None,
    check_false_score: FalseScoreCheck | None = None,
) -> tuple[PubKey, Hash32] | ErrorCode:
    """(faulty validator, normalised evidence key) if `evidence` proves a fault, else why not.

    Codes: WRONG_CHAIN, BAD_SIGNATURE, EVIDENCE_NOT_A_FAULT (well-formed but proves nothing),
    EVIDENCE_TOO_OLD, UNKNOWN_VALIDATOR (no record to slash), DUPLICATE_EVIDENCE (key already seen),
    BAD_EVIDENCE (kind not checkable yet: FALSE_SCORE without the FL rules).
    """
    proof = evidence.proof
    if isinstance(proof, DoubleProposal):
        found = _double_proposal(params, proof)
    elif isinstance(proof, DoubleAttest):
        found = _double_attest(params, proof)
    elif isinstance(proof, SurroundVote):
        found = _surround_vote(params, proof)
    elif isinstance(proof, InvalidBlock):
        found = _invalid_block(params, proof, revalidate or check_leaf_stateless)
    else:
        found = _false_score(params, reader, proof, check_false_score)
    if isinstance(found, ErrorCode):
        return found
    validator, height = found
    if height + params.unbonding_blocks <= reader.height:
        return ErrorCode.EVIDENCE_TOO_OLD
    if reader.validator(validator) is None:
        return ErrorCode.UNKNOWN_VALIDATOR
    key = evidence_key(evidence.kind, validator, height)
    if reader.evidence_seen(key):
        return ErrorCode.DUPLICATE_EVIDENCE
    return validator, key


def _double_proposal(params: ChainParams, p: DoubleProposal) -> tuple[PubKey, int] | ErrorCode:
    a, b = p.a, p.b
    if a.chain_id != params.chain_id or b.chain_id != params.chain_id:
        return ErrorCode.WRONG_CHAIN
    if a.height != b.height or a.proposer != b.proposer or a.height == 0 or a.hash == b.hash:
        return ErrorCode.EVIDENCE_NOT_A_FAULT
    if not (a.signature_valid() and b.signature_valid()):
        return ErrorCode.BAD_SIGNATURE
    return a.proposer, a.height


def _double_attest(params: ChainParams, p: DoubleAttest) -> tuple[PubKey, int] | ErrorCode:
    a, b = p.a, p.b
    if a.chain_id != params.chain_id or b.chain_id != params.chain_id:
        return ErrorCode.WRONG_CHAIN
    if a.height != b.height or a.validator != b.validator:
        return ErrorCode.EVIDENCE_NOT_A_FAULT
    if (a.block_hash, a.source_height, a.source_hash) == (b.block_hash, b.source_height, b.source_hash):
        return ErrorCode.EVIDENCE_NOT_A_FAULT  # one vote (maybe two signature encodings): no fault
    if not (a.signature_valid() and b.signature_valid()):
        return ErrorCode.BAD_SIGNATURE
    return a.validator, a.height


def _surround_vote(params: ChainParams, p: SurroundVote) -> tuple[PubKey, int] | ErrorCode:
    a, b = p.a, p.b
    if a.chain_id != params.chain_id or b.chain_id != params.chain_id:
        return ErrorCode.WRONG_CHAIN
    if a.validator != b.validator or not (a.source_height < b.source_height and b.height < a.height):
        return ErrorCode.EVIDENCE_NOT_A_FAULT
    if not (a.signature_valid() and b.signature_valid()):
        return ErrorCode.BAD_SIGNATURE
    return a.validator, a.height


def _invalid_block(
    params: ChainParams, p: InvalidBlock, revalidate: LeafRevalidator
) -> tuple[PubKey, int] | ErrorCode:
    header = p.header
    if header.chain_id != params.chain_id:
        return ErrorCode.WRONG_CHAIN
    if header.height == 0:
        return ErrorCode.EVIDENCE_NOT_A_FAULT
    if not header.signature_valid():
        return ErrorCode.BAD_SIGNATURE
    if header.kind != kind_for_height(header.height):
        return header.proposer, header.height  # the signed header alone is invalid (§4.1)
    root = merkle_root_from_branch(p.leaf, p.leaf_index, p.leaf_count, p.branch)
    if root != header.body_root:
        # not the body the proposer committed to: anyone can write bad bytes
        return ErrorCode.EVIDENCE_NOT_A_FAULT
    code = revalidate(params, header, p.leaf_index, p.leaf_count, p.leaf)
    if code is None or code.is_transient:
        return ErrorCode.EVIDENCE_NOT_A_FAULT
    return header.proposer, header.height


def invalid_block_evidence(params: ChainParams, block: Block) -> Evidence | None:
    """INVALID_BLOCK evidence for a signed block with a provable stateless fault, or None: the kind
    does not match the height, or a body leaf breaks `check_leaf_stateless` (the first such leaf
    with its Merkle branch)."""
    leaves = body_leaves(block.body)
    index = 0 if block.header.kind != kind_for_height(block.header.height) else faulty_leaf(params, block)
    if index is None or not leaves:
        return None
    branch = tuple(merkle_branch(leaves, index))
    proof = InvalidBlock(block.header, index, len(leaves), leaves[index], branch)
    return Evidence(EvidenceKind.INVALID_BLOCK, proof)


def _false_score(
    params: ChainParams, reader: StateReader, p: FalseScore, check: FalseScoreCheck | None
) -> tuple[PubKey, int] | ErrorCode:
    # PLACE FOR THE FL ISSUE: pass (or make default) the re-scoring rule of PROTOCOL §6.5.
    if check is None:
        return ErrorCode.BAD_EVIDENCE
    header = p.header
    if header.chain_id != params.chain_id:
        return ErrorCode.WRONG_CHAIN
    if header.height == 0:
        return ErrorCode.EVIDENCE_NOT_A_FAULT
    if not header.signature_valid():
        return ErrorCode.BAD_SIGNATURE
    code = check(params, reader, header, p.body)
    if code is not None:
        return code
    return header.proposer, header.height
