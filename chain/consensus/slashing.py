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
- FALSE_SCORE: a validly signed VERSION header plus its score leaf (`chain.block.VersionScores`,
  leaf 0 of 2) and the Merkle branch to its `body_root`, where the claim is scored and, by this
  node's own evaluation of that round, a batch loss of either adapter or the previous total is off
  by more than `score_slash_tolerance_micro` (`claim_is_false`). The part that needs no model
  (`false_score_claim`) is checked here and by the state transition; the score comparison needs a
  model evaluation, so it is a body rule run at block validation with the node's `ScoreOracle`
  (`check_false_score_txs`, like the VDF verifier is passed in): the transition stays pure and
  never evaluates anything. See docs/learning.md "FALSE_SCORE evidence".

Evidence is only accepted while the faulty stake can still be reached: the fault height must be
within `unbonding_blocks` of the state's height (older -> `EVIDENCE_TOO_OLD`).
"""

from __future__ import annotations

from collections.abc import Callable

from chain.block import VERSION_LEAVES, Block, TxBody, VersionBody, VersionScores, body_leaves
from chain.codec import decode
from chain.consensus.body import check_leaf_stateless, check_score_claim, faulty_leaf
from chain.consensus.scoring import RecomputedScores
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
from chain.header import BlockKind, Header, kind_for_height
from chain.params import ChainParams
from chain.state.model import StateReader
from chain.tx import SlashEvidence
from chain.types import Hash32, PubKey

EVIDENCE_KEY_TAG = b"LC/evidence-key/1"

LeafRevalidator = Callable[[ChainParams, Header, int, int, bytes], ErrorCode | None]
"""(params, signed header, leaf index, leaf count, leaf) -> the first rule the committed leaf
breaks, or None: `body.check_leaf_stateless` by default."""

ScoreOracle = Callable[[Header, VersionScores], RecomputedScores | ErrorCode | None]
"""This node's evaluation of the round that a signed VERSION header's score claim is about (the
node resolves the header's parent state): `RecomputedScores`; a transient code while it cannot tell
yet (BLOB_MISSING: not computed yet, ORPHAN: the parent state is unknown here); a permanent code
when that round has nothing to score (EVIDENCE_NOT_A_FAULT); None when this node does not evaluate
it (no base model, or no result for a carrying block it knows final, PROTOCOL §6.5): it follows the
certificates, as it does for scored VERSION bodies."""


def evidence_key(kind: EvidenceKind, validator: PubKey, height: int) -> Hash32:
    """H(tag || kind || validator || height): one slash per validator, kind and height."""
    return H_many(EVIDENCE_KEY_TAG, bytes([int(kind)]), validator, height.to_bytes(8, "big"))


def accused(evidence: Evidence) -> tuple[PubKey, int]:
    """(validator, fault height) that `evidence` names, read from its structure without checking
    anything: `evidence_key(evidence.kind, *accused(evidence))` is the key a valid one is slashed
    under (what a slash's reward records point at, for `explainrewards`)."""
    p = evidence.proof
    if isinstance(p, DoubleProposal):
        return p.a.proposer, p.a.height
    if isinstance(p, DoubleAttest | SurroundVote):
        return p.a.validator, p.a.height
    return p.header.proposer, p.header.height


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
    score_oracle: ScoreOracle | None = None,
) -> tuple[PubKey, Hash32] | ErrorCode:
    """(faulty validator, normalised evidence key) if `evidence` proves a fault, else why not.

    Codes: WRONG_CHAIN, BAD_SIGNATURE, EVIDENCE_NOT_A_FAULT (well-formed but proves nothing),
    EVIDENCE_TOO_OLD, UNKNOWN_VALIDATOR (no record to slash), DUPLICATE_EVIDENCE (key already seen),
    BAD_EVIDENCE (a FALSE_SCORE leaf that is not a score claim). FALSE_SCORE's score comparison
    runs only with `score_oracle` (the state transition passes none: block validation ran it as a
    body rule, `check_false_score_txs`), and may then also answer the oracle's transient codes.
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
        found = _false_score(params, proof, score_oracle)
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


def false_score_claim(params: ChainParams, p: FalseScore) -> tuple[Header, VersionScores] | ErrorCode:
    """The part of FALSE_SCORE evidence that needs no model: a validly signed VERSION header of this
    chain, its score leaf at index 0 of `VERSION_LEAVES` tied to the header's `body_root` by the
    branch, and a well-formed *scored* claim (an unscored no-op repeats the current score and
    evaluated nothing; a malformed claim is INVALID_BLOCK's to prove)."""
    header = p.header
    if header.chain_id != params.chain_id:
        return ErrorCode.WRONG_CHAIN
    if (
        header.height == 0
        or header.kind != BlockKind.VERSION
        or kind_for_height(header.height) != header.kind
    ):
        return ErrorCode.EVIDENCE_NOT_A_FAULT
    if (p.leaf_index, p.leaf_count) != (0, VERSION_LEAVES):
        return ErrorCode.EVIDENCE_NOT_A_FAULT
    if not header.signature_valid():
        return ErrorCode.BAD_SIGNATURE
    if merkle_root_from_branch(p.leaf, 0, VERSION_LEAVES, p.branch) != header.body_root:
        return ErrorCode.EVIDENCE_NOT_A_FAULT  # not the claim the proposer signed
    claim = decode(VersionScores, p.leaf, max_bytes=params.max_tx_bytes)
    if isinstance(claim, ErrorCode):
        return ErrorCode.BAD_EVIDENCE
    if not claim.per_batch_scores or check_score_claim(params, header, claim) is not None:
        return ErrorCode.EVIDENCE_NOT_A_FAULT
    return header, claim


def claim_is_false(
    params: ChainParams, claim: VersionScores, mine: RecomputedScores, *, margin: int = 0
) -> bool:
    """FALSE_SCORE's comparison (§5.3): a batch loss of the new or of the previous adapter, or the
    previous total, that this node recomputed differs from the claim by more than
    `score_slash_tolerance_micro + margin`. Validation uses margin 0; a node *reporting* or
    *including* evidence uses `score_tolerance_micro` on top, so that every honest node, whose
    evaluation differs from the reporter's by far less, agrees the claim is false."""
    limit = params.score_slash_tolerance_micro + margin
    pairs = [
        (claim.per_batch_scores, mine.per_batch),
        (claim.previous_batch_scores, mine.previous_per_batch or {}),
    ]
    if mine.previous_total is not None and abs(claim.previous_score - mine.previous_total) > limit:
        return True
    return any(
        0 <= b < len(claimed) and abs(claimed[b] - score) > limit
        for claimed, own in pairs
        for b, score in own.items()
    )


def false_score_problem(
    params: ChainParams,
    evidence: Evidence,
    oracle: ScoreOracle | None,
    *,
    margin: int = 0,
    follow_unchecked: bool = True,
) -> ErrorCode | None:
    """None when `evidence` (FALSE_SCORE) proves a false claim by this node's `oracle`, else why
    not. No oracle: BAD_EVIDENCE (the caller cannot check it). An oracle that answers None (this
    node does not evaluate) is followed only with `follow_unchecked` (validation; a producer
    choosing what to include passes False)."""
    if not isinstance(evidence.proof, FalseScore):
        return None
    found = false_score_claim(params, evidence.proof)
    if isinstance(found, ErrorCode):
        return found
    if oracle is None:
        return ErrorCode.BAD_EVIDENCE
    header, claim = found
    mine = oracle(header, claim)
    if mine is None:
        return None if follow_unchecked else ErrorCode.BLOB_MISSING
    if isinstance(mine, ErrorCode):
        return mine
    return None if claim_is_false(params, claim, mine, margin=margin) else ErrorCode.EVIDENCE_NOT_A_FAULT


def check_false_score_txs(params: ChainParams, body: TxBody, oracle: ScoreOracle | None) -> ErrorCode | None:
    """The body rule of FALSE_SCORE evidence in a TX block (§4.7 "body rules"): each such evidence
    tx must prove a false claim by this node's `oracle`. A permanent code makes the block invalid;
    a transient one (the round is not computed here yet) makes it wait, never a ban. The model-free
    part is the state transition's too (`verify_evidence` in `apply_tx`)."""
    waiting: ErrorCode | None = None
    for tx in body.txs:
        p = tx.payload
        if not isinstance(p, SlashEvidence) or p.evidence.kind != EvidenceKind.FALSE_SCORE:
            continue
        code = false_score_problem(params, p.evidence, oracle)
        if code is not None and code.is_permanent:
            return code
        waiting = waiting or code
    return waiting


def false_score_evidence(block: Block) -> Evidence | None:
    """FALSE_SCORE evidence of a signed VERSION block: its header, its score leaf and the branch."""
    if not isinstance(block.body, VersionBody):
        return None
    leaves = body_leaves(block.body)
    proof = FalseScore(block.header, 0, len(leaves), leaves[0], tuple(merkle_branch(leaves, 0)))
    return Evidence(EvidenceKind.FALSE_SCORE, proof)


def _false_score(
    params: ChainParams, p: FalseScore, oracle: ScoreOracle | None
) -> tuple[PubKey, int] | ErrorCode:
    found = false_score_claim(params, p)
    if isinstance(found, ErrorCode):
        return found
    if oracle is not None:
        code = false_score_problem(params, Evidence(EvidenceKind.FALSE_SCORE, p), oracle)
        if code is not None:
            return code
    return p.header.proposer, p.header.height
