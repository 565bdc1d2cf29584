"""Transaction rules of the state transition (PROTOCOL §3.1, §3.5, §5.3): one tx on a `StateOverlay`.

Owns: `apply_tx` and the effect of each tx kind: transfer, stake, unstake (unbonding), slashing
evidence, unit registration; fee collection; the unbonding release at the start of a block.
Must not: touch storage, know block kinds or rewards per block (chain.state.transition does), or
decide whether evidence proves a fault (chain.consensus.slashing does).

Stake decisions (PROTOCOL leaves them open; recorded in docs/state-and-store.md):
- A validator record is created by the first stake on a key; that first stake must be at least
  `min_stake` (STAKE_TOO_SMALL), so junk validator records cost real stake.
- Staking to a jailed validator is refused (VALIDATOR_JAILED); unstaking from one is allowed.
- A deposit restarts the maturity of the whole (owner, validator) record: `mature_height =
  height + stake_maturity_blocks`. Only mature bonded stake can be unstaked (else
  UNSTAKE_TOO_LARGE); unbonding coins return at `height + unbonding_blocks + 1`, so evidence in
  block `height + unbonding_blocks` (the last the evidence window accepts) still reaches them.
- Slashing burns the fraction from bonded stake AND from unbonding entries (so unstaking right
  after a fault does not escape it), pro rata over all pieces.
"""

from __future__ import annotations

import dataclasses

from chain.consensus import reputation
from chain.consensus.rewards import split_capped
from chain.consensus.slashing import slash_amounts, verify_evidence
from chain.errors import ErrorCode
from chain.params import ChainParams
from chain.state import keys
from chain.state.model import (
    Account,
    RewardReason,
    RewardRecord,
    StakeRecord,
    Unbonding,
    UnitKind,
    UnitRecord,
    ValidatorRecord,
)
from chain.state.view import StateOverlay
from chain.tx import TX_VERSION, SlashEvidence, Stake, Transfer, Tx, Unstake
from chain.types import MAX_AMOUNT, ZERO_HASH, AccountId, Amount, Hash32, Height, Nonce, PubKey
from chain.units import DataUnit, LearningUnit

MAX_UNBONDING_ENTRIES = 64  # StakeRecord.unbonding MaxItems


def credit(ov: StateOverlay, account: AccountId, amount: int) -> ErrorCode | None:
    """Add `amount` to a balance; OVERFLOW above 2^63-1 (PROTOCOL §1.3)."""
    acct = ov.account(account)
    if acct.balance + amount > MAX_AMOUNT:
        return ErrorCode.OVERFLOW
    ov.set_account(account, Account(Amount(acct.balance + amount), acct.nonce))
    return None


def _amount_of(tx: Tx) -> int:
    p = tx.payload
    return p.amount if isinstance(p, Transfer | Stake) else 0


def _stateless(params: ChainParams, tx: Tx) -> ErrorCode | None:
    """Checks that need no state, cheap first (PROTOCOL §4.7): everything before the signature."""
    if tx.version != TX_VERSION:
        return ErrorCode.BAD_VERSION
    if tx.chain_id != params.chain_id:
        return ErrorCode.WRONG_CHAIN
    if tx.fee < params.min_fee:
        return ErrorCode.FEE_TOO_LOW
    p = tx.payload
    if isinstance(p, Transfer | Stake | Unstake) and p.amount == 0:
        return ErrorCode.ZERO_AMOUNT
    if isinstance(p, Transfer) and p.to == tx.sender_account:
        return ErrorCode.SELF_TRANSFER
    if isinstance(p, DataUnit | LearningUnit):
        if p.chain_id != params.chain_id:
            return ErrorCode.WRONG_CHAIN
        if p.author != tx.sender:
            return ErrorCode.BAD_UNIT
        if p.n_examples == 0 or p.byte_size == 0:
            return ErrorCode.BAD_UNIT  # PROTOCOL §3.4: both unit kinds need examples and a blob
        limit = params.max_data_unit_bytes if isinstance(p, DataUnit) else params.max_learning_unit_bytes
        if p.byte_size > limit:
            return ErrorCode.BLOB_TOO_LARGE
        if not p.pow_valid(params):
            return ErrorCode.BAD_POW
    return None


def apply_tx(
    params: ChainParams, overlay: StateOverlay, tx: Tx, height: Height, *, verify_signature: bool = True
) -> ErrorCode | None:
    """Apply `tx` as part of the block at `height`; on failure `overlay` is left unchanged.

    The fee is added to `overlay.fees` (paid to the proposer by the block rules); reward records of
    slashing go to `overlay.rewards`. `verify_signature=False` only for callers that verified it.
    """
    code = _stateless(params, tx)
    if code is not None:
        return code
    if verify_signature and not tx.signature_valid():
        return ErrorCode.BAD_SIGNATURE
    child = overlay.child()
    code = _apply(params, child, tx, height)
    if code is None:
        overlay.merge(child)
    return code


def _apply(params: ChainParams, ov: StateOverlay, tx: Tx, height: Height) -> ErrorCode | None:
    sender = tx.sender_account
    acct = ov.account(sender)
    if tx.nonce < acct.nonce:
        return ErrorCode.NONCE_TOO_LOW
    if tx.nonce > acct.nonce:
        return ErrorCode.NONCE_TOO_HIGH
    spend = _amount_of(tx) + tx.fee
    if acct.balance < spend:
        return ErrorCode.INSUFFICIENT_BALANCE
    ov.set_account(sender, Account(Amount(acct.balance - spend), Nonce(acct.nonce + 1)))
    ov.fees += tx.fee
    p = tx.payload
    if isinstance(p, Transfer):
        return credit(ov, p.to, p.amount)
    if isinstance(p, Stake):
        return _stake(params, ov, sender, p, height)
    if isinstance(p, Unstake):
        return _unstake(params, ov, sender, p, height)
    if isinstance(p, SlashEvidence):
        return _slash(params, ov, sender, p, height)
    return _register_unit(ov, p, height)


def _stake(
    params: ChainParams, ov: StateOverlay, owner: AccountId, p: Stake, height: Height
) -> ErrorCode | None:
    vrec = ov.validator(p.validator)
    if vrec is None:
        if p.amount < params.min_stake:
            return ErrorCode.STAKE_TOO_SMALL
        vrec = ValidatorRecord(p.validator, Amount(0), params.reputation_start, Height(0), Height(0))
    elif height < vrec.jailed_until:
        return ErrorCode.VALIDATOR_JAILED
    if vrec.stake_total + p.amount > MAX_AMOUNT:
        return ErrorCode.OVERFLOW
    rec = ov.stake(owner, p.validator) or StakeRecord(owner, p.validator, Amount(0), Height(0))
    mature = Height(height + params.stake_maturity_blocks)
    new = dataclasses.replace(rec, amount=Amount(rec.amount + p.amount), mature_height=mature)
    ov.set_stake(owner, p.validator, new)
    ov.set_validator(dataclasses.replace(vrec, stake_total=Amount(vrec.stake_total + p.amount)))
    return None


def _unstake(
    params: ChainParams, ov: StateOverlay, owner: AccountId, p: Unstake, height: Height
) -> ErrorCode | None:
    rec = ov.stake(owner, p.validator)
    vrec = ov.validator(p.validator)
    if rec is None or rec.amount == 0 or vrec is None:
        return ErrorCode.UNKNOWN_STAKE
    mature = rec.amount if height >= rec.mature_height else 0
    if p.amount > mature:
        return ErrorCode.UNSTAKE_TOO_LARGE
    release = Height(height + params.unbonding_blocks + 1)  # after block u + U's evidence (§5.3)
    entries = list(rec.unbonding)
    for i, e in enumerate(entries):
        if e.release_height == release:
            entries[i] = Unbonding(Amount(e.amount + p.amount), release)
            break
    else:
        if len(entries) >= MAX_UNBONDING_ENTRIES:
            return ErrorCode.UNBONDING_LIMIT
        entries.append(Unbonding(p.amount, release))
    new = dataclasses.replace(rec, amount=Amount(rec.amount - p.amount), unbonding=tuple(entries))
    ov.set_stake(owner, p.validator, new)
    ov.set_validator(dataclasses.replace(vrec, stake_total=Amount(vrec.stake_total - p.amount)))
    ov.put(keys.release_key(release, p.validator, owner), keys.MARKER)
    return None


def _slash(
    params: ChainParams, ov: StateOverlay, reporter: AccountId, p: SlashEvidence, height: Height
) -> ErrorCode | None:
    found = verify_evidence(params, ov, p.evidence)
    if isinstance(found, ErrorCode):
        return found
    validator, ekey = found
    vrec = ov.validator(validator)
    if vrec is None:
        return ErrorCode.UNKNOWN_VALIDATOR
    if ov.evidence_seen(ekey):
        return ErrorCode.DUPLICATE_EVIDENCE
    stakes = ov.stakes_of(validator)
    # Pieces of stake: (stake index, -1) is the bonded amount, (stake index, j) unbonding entry j.
    pieces: list[tuple[tuple[int, int], int]] = []
    for i, s in enumerate(stakes):
        pieces.append(((i, -1), s.amount))
        pieces.extend(((i, j), e.amount) for j, e in enumerate(s.unbonding))
    total, _ = slash_amounts(params, p.evidence.kind, sum(w for _, w in pieces))
    burns = dict(split_capped(total, pieces))
    burned = sum(burns.values())
    share = burned * params.slash_reporter_share_permille // 1000
    bonded_burned = 0
    for i, s in enumerate(stakes):
        cut = burns.get((i, -1), 0)
        bonded_burned += cut
        entries: list[Unbonding] = []
        owner_burn = cut
        for j, e in enumerate(s.unbonding):
            ecut = burns.get((i, j), 0)
            owner_burn += ecut
            if e.amount - ecut > 0:
                entries.append(Unbonding(Amount(e.amount - ecut), e.release_height))
            else:
                ov.put(keys.release_key(e.release_height, validator, s.owner), None)
        ov.set_stake(
            s.owner,
            validator,
            dataclasses.replace(s, amount=Amount(s.amount - cut), unbonding=tuple(entries)),
        )
        if owner_burn:
            ov.rewards.append(RewardRecord(height, s.owner, -owner_burn, RewardReason.SLASH_BURN, ekey))
    ov.set_validator(
        dataclasses.replace(
            vrec,
            stake_total=Amount(vrec.stake_total - bonded_burned),
            reputation=reputation.after_slash(params),
            jailed_until=Height(max(vrec.jailed_until, height + params.jail_blocks)),
        )
    )
    ov.mark_evidence(ekey)
    if share:
        code = credit(ov, reporter, share)
        if code is not None:
            return code
        ov.rewards.append(RewardRecord(height, reporter, share, RewardReason.SLASH_REPORTER, ekey))
    return None  # logged once where the block is connected (validator_slashed), not at every run


def _register_unit(ov: StateOverlay, unit: DataUnit | LearningUnit, height: Height) -> ErrorCode | None:
    unit_id = unit.id
    if ov.unit(unit_id) is not None:
        return ErrorCode.BAD_UNIT  # the same unit registered twice
    if isinstance(unit, DataUnit):
        rec = UnitRecord(
            UnitKind.DATA, unit.author, unit.n_examples, unit.blob_hash, ZERO_HASH, height, unit.byte_size
        )
    else:
        rec = UnitRecord(
            UnitKind.LEARNING,
            unit.author,
            unit.n_examples,
            unit.adapter_blob_hash,
            unit.base_version_id,
            height,
            unit.byte_size,
        )
    ov.set_unit(unit_id, rec)
    return None


def release_unbonding(ov: StateOverlay, height: Height) -> ErrorCode | None:
    """Return every unbonding entry with release_height <= `height` to its owner (UNBONDED record).

    Runs at the start of each block's application (PROTOCOL §3.1 UNSTAKE), before its txs.
    """
    due: list[tuple[bytes, PubKey, AccountId]] = []
    for key, _ in ov.items(keys.RELEASE):
        release, validator, owner = keys.parse_release_key(key)
        if release > height:
            break
        due.append((key, validator, owner))
    for key, validator, owner in due:
        ov.put(key, None)
        rec = ov.stake(owner, validator)
        if rec is None:
            continue
        keep = tuple(e for e in rec.unbonding if e.release_height > height)
        amount = sum(e.amount for e in rec.unbonding if e.release_height <= height)
        ov.set_stake(owner, validator, dataclasses.replace(rec, unbonding=keep))
        if amount:
            code = credit(ov, owner, amount)
            if code is not None:
                return code
            ov.rewards.append(RewardRecord(height, owner, amount, RewardReason.UNBONDED, Hash32(validator)))
    return None
