"""Header and block validation in the order of PROTOCOL §4.7, over a small `ChainView`.

Owns: `ChainView` (what validation needs to look up), `decode_block` (size limit, decode, canonical),
`validate_header` (chain id -> PoW -> signature -> parent known -> height/kind/timestamp -> VRF
seed -> VDF -> rank -> certificate signatures), `validate_block` (header, then the body's stateless rules) and
`check_state_root` (after the caller applied the block with chain.state.transition). Must not:
store blocks, read the clock (`now_ms` is a parameter) or import `vdf`
(`verify_vdf` is a parameter; the daemon passes `vdf.verify`).
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from chain.block import Block, TxBody
from chain.codec import decode
from chain.consensus.body import check_body_stateless
from chain.consensus.certificate import certificate_weight
from chain.consensus.election import (
    VdfVerifier,
    challenge_for_child,
    earliest_time_ms,
    eligible_validators,
    leader_ranks,
    vrf_valid,
)
from chain.consensus.slashing import ScoreOracle, check_false_score_txs
from chain.consensus.validators import may_propose, source_matches, vote_weights
from chain.errors import ErrorCode
from chain.header import PROTOCOL_VERSION, Header, kind_for_height
from chain.params import ChainParams
from chain.state.model import Checkpoint, StateReader
from chain.types import BlockHash, StateRoot

S_co = TypeVar("S_co", bound=StateReader, covariant=True)


class ChainView(Protocol[S_co]):
    """Lookups validation needs. Only blocks that passed validation (and genesis) are visible.

    Generic in the state type so that a caller can get the concrete class it applies blocks to
    (`chain.state.view.StateView`)."""

    def header(self, block_hash: BlockHash) -> Header | None:
        """The header of a known valid block, or None."""
        ...

    def state(self, block_hash: BlockHash) -> S_co | None:
        """The state after the known valid block `block_hash`, or None if not available (yet)."""
        ...

    def final_header(self) -> Header:
        """The last block this node holds final (genesis at first)."""
        ...


def decode_block(params: ChainParams, data: bytes) -> Block | ErrorCode:
    """§4.7 first steps: size limit, then decode with the canonical check."""
    if len(data) > params.max_block_bytes:
        return ErrorCode.BLOCK_TOO_LARGE
    return decode(Block, data, max_bytes=params.max_block_bytes)


def extends_final(view: ChainView[StateReader], parent: Header) -> bool:
    """True if a child of `parent` would descend from (or be after) the last final block."""
    final = view.final_header()
    if parent.height < final.height:
        return False
    node, cur = parent, None
    while node.height > final.height:
        cur = node.prev_hash
        found = view.header(cur)
        if found is None:
            return False
        node = found
    return (cur if cur is not None else parent.hash) == final.hash


def validate_header(
    params: ChainParams,
    view: ChainView[StateReader],
    header: Header,
    now_ms: int,
    verify_vdf: VdfVerifier,
    checkpoint: Checkpoint | None = None,
) -> ErrorCode | None:
    """None if `header` is valid on top of its (known) parent; else the first failing rule (§4.7).

    `checkpoint` (weak subjectivity, §5.3): a final block the node was given; a header at its height
    with another hash is refused (`CONFLICTS_WITH_FINAL`), so no chain without it is ever adopted,
    whoever signed it (validators that have since exited cannot rewrite history below it)."""
    if view.header(header.hash) is not None:
        return ErrorCode.ALREADY_KNOWN
    if checkpoint is not None and conflicts_with_checkpoint(header, checkpoint):
        return ErrorCode.CONFLICTS_WITH_FINAL
    if header.version != PROTOCOL_VERSION:
        return ErrorCode.BAD_VERSION
    if header.chain_id != params.chain_id:
        return ErrorCode.WRONG_CHAIN
    if not header.pow_valid(params.pow_bits_header):
        return ErrorCode.BAD_POW
    if not header.signature_valid():
        return ErrorCode.BAD_SIGNATURE
    parent = view.header(header.prev_hash)
    if parent is None:
        return ErrorCode.ORPHAN
    parent_state = view.state(header.prev_hash)
    if parent_state is None:
        return ErrorCode.ORPHAN
    # height / kind / timestamp (§4.1, §1.3)
    if header.height != parent.height + 1:
        return ErrorCode.BAD_HEIGHT
    if header.kind != kind_for_height(header.height):
        return ErrorCode.BAD_KIND
    if header.timestamp_ms <= parent.timestamp_ms:
        return ErrorCode.BAD_TIMESTAMP
    if header.timestamp_ms > now_ms + params.max_future_drift_ms:
        return ErrorCode.FUTURE_BLOCK
    if not extends_final(view, parent):
        return ErrorCode.CONFLICTS_WITH_FINAL
    # VRF seed (§4.2, docs/consensus.md): the proposer's unique output over the parent's seed
    if not vrf_valid(params.chain_id, parent, header):
        return ErrorCode.BAD_VRF
    # VDF (§4.2)
    challenge = challenge_for_child(params.chain_id, parent)
    if not verify_vdf(
        challenge, params.vdf_discriminant_bits, params.vdf_iterations, header.vdf_output, header.vdf_proof
    ):
        return ErrorCode.BAD_VDF
    # rank (§4.3)
    ranks = leader_ranks(header.vdf_output, eligible_validators(parent_state, header.height))
    if header.proposer not in ranks or not may_propose(parent_state, header.proposer, header.height):
        return ErrorCode.NOT_ELIGIBLE
    if ranks.index(header.proposer) != header.rank:
        return ErrorCode.BAD_RANK
    if header.timestamp_ms < earliest_time_ms(params, parent.timestamp_ms, header.rank):
        return ErrorCode.TOO_EARLY
    return _check_parent_certificate(params, view, header, parent)


def _check_parent_certificate(
    params: ChainParams, view: ChainView[StateReader], header: Header, parent: Header
) -> ErrorCode | None:
    cert = header.parent_certificate
    if len(cert) > params.max_attestations:
        return ErrorCode.BAD_CERTIFICATE
    if parent.height == 0:
        return ErrorCode.BAD_CERTIFICATE if cert else None  # genesis is final by definition
    if not cert:
        return None
    grandparent_state = view.state(parent.prev_hash)
    if grandparent_state is None:
        return ErrorCode.ORPHAN
    eligible = vote_weights(grandparent_state, parent.height)
    weight = certificate_weight(params.chain_id, parent.height, parent.hash, eligible, cert)
    if isinstance(weight, ErrorCode):
        return weight
    parent_state = view.state(header.prev_hash)
    if parent_state is None:  # pragma: no cover - validate_header checked it
        return ErrorCode.ORPHAN
    if not all(source_matches(att, parent_state) for att in cert):
        return ErrorCode.BAD_CERTIFICATE  # a vote that does not sign its target's source (§4.4)
    return None


def validate_block(
    params: ChainParams,
    view: ChainView[StateReader],
    block: Block,
    now_ms: int,
    verify_vdf: VdfVerifier,
    checkpoint: Checkpoint | None = None,
    score_oracle: ScoreOracle | None = None,
    *,
    signatures_checked: bool = False,
) -> ErrorCode | None:
    """Every rule of §4.7 before the state transition: the header, then the body's stateless rules,
    then FALSE_SCORE evidence in a TX body against this node's `score_oracle` (a model evaluation,
    passed in like `verify_vdf`; none: such evidence is BAD_EVIDENCE, `slashing.check_false_score_txs`).

    The caller then applies the block to its parent state (`chain.state.transition.apply_block`)
    and checks the result with `check_state_root`: the daemon's chain service sequences the four.
    `signatures_checked`: see `check_body_stateless` (the node's own block only).
    """
    code = validate_header(params, view, block.header, now_ms, verify_vdf, checkpoint)
    if code is not None:
        return code
    code = check_body_stateless(params, block, signatures_checked=signatures_checked)
    if code is None and isinstance(block.body, TxBody):
        code = check_false_score_txs(params, block.body, score_oracle)
    return code


def conflicts_with_checkpoint(header: Header, checkpoint: Checkpoint) -> bool:
    """A header at the checkpoint's height that is not the checkpoint block (weak subjectivity)."""
    return header.height == checkpoint.height and header.hash != checkpoint.block_hash


def check_state_root(block: Block, state_root: StateRoot) -> ErrorCode | None:
    """The last step of §4.7: the state after applying `block` must be the one its header commits to."""
    return None if state_root == block.header.state_root else ErrorCode.BAD_STATE_ROOT
