"""The block state transition (PROTOCOL §3.5, §5.1, §5.2): a block applied to its parent state.

Owns: `apply_block` (-> `BlockEffects`: writes, undo record, reward records, new `state_root`),
release of matured unbonding, the implicit coinbase of each block kind, and reputation (the
proposer's bonus, the miss penalty of the validators ranked before a rank-r proposer, the unit
moves of validator keys that authored a data unit with accepted examples (+), an included learning
unit (+) or a learning unit the aggregation rule rejected (-), capped per block).
Re-exports `apply_tx` (chain.state.txrules) for the mempool's simulation.
Must not: check headers, VDF, ranks or certificates (chain.consensus does, before calling this),
compare `state_root` with the header (the caller does), or touch storage (the store applies
`effects.writes` and keeps `effects.undo`).

Coinbase per kind (amounts from `ChainParams`, splits in chain.consensus.rewards):
- TX: `reward_tx` (reason TX_PROPOSER) and the block's fees (TX_FEES) to the proposer's stakers.
- DATA: `reward_data_proposer` to the proposer's stakers; `reward_data_pool` to the authors of
  the selected (registered, not yet used) data units, pro rata to their accepted examples (the
  body's `accepted`, which import checked against the re-run selection).
- VERSION: `reward_version_proposer` to the proposer's stakers; unless the block is a no-op,
  `reward_learning_pool` to the authors of the included learning units, pro rata to weight, only
  if `total_score < previous_score` (lower loss is better); the included and the excluded units
  are used up; the model version advances unless the block is a no-op.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from chain.block import Block, DataBody, Exclusion, TxBody, VersionBody
from chain.codec import encode
from chain.consensus import reputation
from chain.consensus.election import eligible_validators, leader_ranks
from chain.consensus.rewards import split_floor, split_to_largest
from chain.crypto import account_id
from chain.errors import ErrorCode
from chain.hashing import H
from chain.header import kind_for_height, round_for_height
from chain.params import ChainParams
from chain.state import keys, learning
from chain.state.epochs import advance_sets
from chain.state.learning import TestSetEntry, VersionEntry
from chain.state.model import ModelVersion, RewardReason, RewardRecord, UnitKind
from chain.state.txrules import apply_tx, credit, release_unbonding
from chain.state.view import StateOverlay, StateView
from chain.types import BlobHash, Hash32, Height, PubKey, Round, StateRoot

__all__ = ["BlockEffects", "BlockError", "apply_block", "apply_block_detailed", "apply_tx"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BlockEffects:
    """What applying one block does: hand it to `BlockStore.connect_block` with the block."""

    block_hash: bytes
    height: Height
    writes: dict[bytes, bytes | None]  # state key -> new value (None: delete)
    undo: dict[bytes, bytes | None]  # state key -> previous value (None: was absent)
    rewards: tuple[RewardRecord, ...]
    base_root: StateRoot  # state_root of the parent state the block was applied to
    state_root: StateRoot  # state_root after the block
    fees: int


@dataclass(frozen=True, slots=True)
class BlockError:
    """Why a block's transition failed: `code` for the block, `inner` and `tx_index` for a tx."""

    code: ErrorCode
    inner: ErrorCode | None = None
    tx_index: int | None = None


def apply_block(params: ChainParams, reader: StateView, block: Block) -> BlockEffects | ErrorCode:
    """Apply `block` to `reader` (the parent's state, not modified). A failing tx makes the whole
    block invalid (INVALID_TX_IN_BLOCK; the tx's own code is logged, see `apply_block_detailed`)."""
    out = apply_block_detailed(params, reader, block)
    return out.code if isinstance(out, BlockError) else out


def apply_block_detailed(
    params: ChainParams, reader: StateView, block: Block, *, verify_signatures: bool = True
) -> BlockEffects | BlockError:
    """`apply_block` with the failing tx's index and code. `verify_signatures=False` only when the
    caller already checked every tx signature (chain.consensus.body does)."""
    header = block.header
    height = Height(header.height)
    if height != reader.height + 1:
        return BlockError(ErrorCode.BAD_HEIGHT)
    if header.kind != kind_for_height(height):
        return BlockError(ErrorCode.BAD_KIND)
    ov = StateOverlay(reader)
    code = release_unbonding(ov, height)
    if code is not None:
        return BlockError(code)
    advance_sets(params, reader, ov, header)
    if ov.validator(header.proposer) is None:
        return BlockError(ErrorCode.NOT_ELIGIBLE)
    body = block.body
    if isinstance(body, TxBody):
        for i, tx in enumerate(body.txs):
            code = apply_tx(params, ov, tx, height, verify_signature=verify_signatures)
            if code is not None:
                log.info("block %d: tx %d (%s) invalid: %s", height, i, tx.id.hex()[:16], code.name)
                return BlockError(ErrorCode.INVALID_TX_IN_BLOCK, code, i)
        code = _pay_validator(
            ov, height, header.proposer, params.reward_tx, RewardReason.TX_PROPOSER, block.hash
        )
        if code is None:
            code = _pay_validator(ov, height, header.proposer, ov.fees, RewardReason.TX_FEES, block.hash)
    elif isinstance(body, DataBody):
        code = _data_block(params, ov, block, body)
    else:
        assert isinstance(body, VersionBody)
        code = _version_block(params, ov, block, body)
    if code is not None:
        return BlockError(code)
    _penalise_missed_leaders(params, reader, ov, block)
    vrec = ov.validator(header.proposer)
    assert vrec is not None
    ov.set_validator(
        dataclasses.replace(
            vrec, reputation=reputation.after_propose(params, vrec.reputation), last_proposed=height
        )
    )
    _cap_reputation_gain(params, reader, ov)
    writes = ov.writes
    return BlockEffects(
        block_hash=block.hash,
        height=height,
        writes=writes,
        undo=ov.undo(),
        rewards=tuple(ov.rewards),
        base_root=reader.state_root,
        state_root=reader.root_after(writes),
        fees=ov.fees,
    )


def _penalise_missed_leaders(params: ChainParams, parent: StateView, ov: StateOverlay, block: Block) -> None:
    """PROTOCOL §5.2: a rank-r block means the validators ranked 0..r-1 (in the parent state's
    election for this height, §4.3) missed their slot: each loses `reputation_miss_penalty`."""
    header = block.header
    if header.rank == 0:
        return
    eligible = eligible_validators(parent, header.height)
    for pubkey in leader_ranks(header.vdf_output, eligible)[: header.rank]:
        rec = ov.validator(pubkey)
        if rec is not None and pubkey != header.proposer:
            ov.set_validator(
                dataclasses.replace(rec, reputation=reputation.after_miss(params, rec.reputation))
            )


def _cap_reputation_gain(params: ChainParams, parent: StateView, ov: StateOverlay) -> None:
    """PROTOCOL §5.2: no validator gains more than `max_reputation_gain_per_block` in one block
    (issue 10, finding 4: 100 self-authored units raised a proposer 1005 -> 1500 in one block)."""
    for key in [k for k in ov.writes if k.startswith(keys.VALIDATOR)]:
        rec = ov.validator(PubKey(key[len(keys.VALIDATOR) :]))
        before = parent.validator(PubKey(key[len(keys.VALIDATOR) :]))
        start = before.reputation if before is not None else params.reputation_start
        cap = start + params.max_reputation_gain_per_block
        if rec is not None and rec.reputation > cap:
            ov.set_validator(dataclasses.replace(rec, reputation=cap))


def _unit_move(params: ChainParams, ov: StateOverlay, author: PubKey, excluded: Exclusion | None) -> None:
    """PROTOCOL §5.2: the author of a unit included (`excluded` None) or excluded by the rule moves
    by `reputation.unit_move`, if its key is a validator (clamped; gains capped per block)."""
    rec = ov.validator(author)
    move = reputation.unit_move(params, excluded)
    if rec is not None and move != 0:
        ov.set_validator(dataclasses.replace(rec, reputation=reputation.clamp(params, rec.reputation + move)))


def _pay_validator(
    ov: StateOverlay, height: Height, validator: PubKey, amount: int, reason: RewardReason, ref: bytes
) -> ErrorCode | None:
    """Pay a validator's income to the owners of its bonded stake (PROTOCOL §5.1 last rules).

    With no bonded stake left (everything unbonding or slashed away) nothing is minted.
    """
    if amount == 0:
        return None
    stakes = ov.stakes_of(validator)
    for owner, share in split_to_largest(amount, [(s.owner, s.amount) for s in stakes]):
        code = credit(ov, owner, share)
        if code is not None:
            return code
        ov.rewards.append(RewardRecord(height, owner, share, reason, Hash32(ref)))
    return None


def _data_block(params: ChainParams, ov: StateOverlay, block: Block, body: DataBody) -> ErrorCode | None:
    height = Height(block.header.height)
    units = []
    if len(body.accepted) != len(body.unit_ids):
        return ErrorCode.BAD_BODY
    for unit_id in body.unit_ids:
        rec = ov.unit(unit_id)
        if rec is None or rec.kind != UnitKind.DATA or rec.used_height != 0:
            return ErrorCode.BAD_BODY  # unknown, not a data unit, or already rewarded
        units.append((unit_id, rec))
    if len(set(body.unit_ids)) != len(units):
        return ErrorCode.BAD_BODY
    code = _pay_validator(
        ov, height, block.header.proposer, params.reward_data_proposer, RewardReason.DATA_PROPOSER, block.hash
    )
    if code is not None:
        return code
    weights = [(i, int(n)) for i, n in enumerate(body.accepted)]  # PROTOCOL §5.1: accepted examples
    shares, _ = split_floor(params.reward_data_pool, weights)
    for i, share in shares:
        unit_id, rec = units[i]
        author = account_id(rec.author)
        code = credit(ov, author, share)
        if code is not None:
            return code
        ov.rewards.append(RewardRecord(height, author, share, RewardReason.DATA_CONTRIBUTOR, Hash32(unit_id)))
    for (unit_id, rec), accepted in zip(units, body.accepted, strict=True):
        ov.set_unit(unit_id, dataclasses.replace(rec, used_height=height))
        if accepted > 0:  # a unit whose examples were all dropped earns no reputation
            _unit_move(params, ov, rec.author, None)
    if body.report.n_selected > 0:
        report = body.report
        rnd = Round(round_for_height(height))
        learning.record_test_set(ov, TestSetEntry(height, rnd, report.test_set_hash, report.n_selected))
    return None


def _version_block(
    params: ChainParams, ov: StateOverlay, block: Block, body: VersionBody
) -> ErrorCode | None:
    height = Height(block.header.height)
    current = ov.model_version()
    if body.base_version_id != current.version_id:
        return ErrorCode.BAD_BODY
    units = []
    for uw in body.units:
        rec = ov.unit(uw.unit_id)
        if rec is None or rec.kind != UnitKind.LEARNING or rec.used_height != 0:
            return ErrorCode.BAD_BODY
        units.append((uw, rec))
    excluded = []
    for ex in body.excluded:
        rec = ov.unit(ex.unit_id)
        if rec is None or rec.kind != UnitKind.LEARNING or rec.used_height != 0:
            return ErrorCode.BAD_BODY
        excluded.append((ex, rec))
    ids = [bytes(u.unit_id) for u in body.units] + [bytes(e.unit_id) for e in body.excluded]
    if len(set(ids)) != len(ids):
        return ErrorCode.BAD_BODY
    code = _pay_validator(
        ov,
        height,
        block.header.proposer,
        params.reward_version_proposer,
        RewardReason.VERSION_PROPOSER,
        block.hash,
    )
    if code is not None:
        return code
    if body.is_noop:
        learning.record_version(ov, _history_entry(current, height, body))
        return None
    if body.total_score < body.previous_score:
        shares, _ = split_floor(
            params.reward_learning_pool, [(i, uw.weight) for i, (uw, _) in enumerate(units)]
        )
        for i, share in shares:
            uw, rec = units[i]
            author = account_id(rec.author)
            code = credit(ov, author, share)
            if code is not None:
                return code
            ov.rewards.append(
                RewardRecord(height, author, share, RewardReason.LEARNING_CONTRIBUTOR, Hash32(uw.unit_id))
            )
    for uw, rec in units:
        ov.set_unit(uw.unit_id, dataclasses.replace(rec, used_height=height))
        _unit_move(params, ov, rec.author, None)
    for ex, rec in excluded:  # judged by this version's rule: used up, so never judged twice
        ov.set_unit(ex.unit_id, dataclasses.replace(rec, used_height=height))
        _unit_move(params, ov, rec.author, ex.reason)
    new = ModelVersion(
        version=current.version + 1,
        version_id=H(encode(body)),
        adapter_blob_hash=BlobHash(body.new_adapter_blob_hash),
        score=body.total_score,
        round=Round(body.round),
        height=height,
    )
    ov.set_model(new)
    learning.record_version(ov, _history_entry(new, height, body))
    return None


def _history_entry(model: ModelVersion, height: Height, body: VersionBody) -> VersionEntry:
    """The version history entry of a VERSION block (chain.state.learning): `model` is the
    version current after it (the same one for a no-op)."""
    return VersionEntry(
        version=model.version,
        version_id=model.version_id,
        height=height,
        round=Round(body.round),
        adapter_hash=model.adapter_blob_hash,
        n_units=len(body.units),
        score=body.total_score,
        previous_score=body.previous_score,
        noop=body.is_noop,
    )
