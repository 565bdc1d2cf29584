"""Mempool admission rules as pure functions (PROTOCOL §3.1, §4.6, §4.7).

Owns: the order and content of the checks an incoming tx passes before it may enter a pool: size
limit, decode + canonical form, chain id, version, PoW (units), intrinsic field rules, signature
(the stateless stage, whose failures never change and may be cached by id), then the check against
the tip state plus the sender's pending items (nonce sequence, replacement fee bump, per-sender
limit, balance covering every pending amount and fee). Each rejection is an `ErrorCode`.
Kind rules against state (stake size, jailed validators, unstake limits, evidence, a unit already
registered) are the state engineer's `apply_tx`, run here on a throw-away overlay where the sender's
account already reflects its earlier pending items (`check_state_rules`).
Must not: hold state, read the clock, touch LevelDB itself, or write state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from chain.codec import decode
from chain.errors import ErrorCode
from chain.params import ChainParams
from chain.state.model import Account
from chain.state.txrules import apply_tx
from chain.state.view import StateOverlay, StateView
from chain.tx import TX_VERSION, Stake, Transfer, Tx, Unstake
from chain.types import MAX_AMOUNT, Amount, Height, Nonce
from chain.units import DataUnit, LearningUnit
from mempool.config import MempoolConfig

# Every code the stateless stage can return: such a rejection holds forever for those exact bytes,
# so the mempool remembers the id and answers RECENTLY_REJECTED without checking again.
STATELESS_CODES: Final = frozenset(
    {
        ErrorCode.MALFORMED,
        ErrorCode.TOO_LARGE,
        ErrorCode.TRAILING_BYTES,
        ErrorCode.WRONG_ARITY,
        ErrorCode.WRONG_TYPE,
        ErrorCode.INT_OUT_OF_RANGE,
        ErrorCode.UNKNOWN_ENUM,
        ErrorCode.BAD_LENGTH,
        ErrorCode.NON_CANONICAL,
        ErrorCode.FLOAT_FORBIDDEN,
        ErrorCode.BAD_TEXT,
        ErrorCode.WRONG_CHAIN,
        ErrorCode.BAD_VERSION,
        ErrorCode.BAD_POW,
        ErrorCode.FEE_TOO_LOW,
        ErrorCode.ZERO_AMOUNT,
        ErrorCode.OVERFLOW,
        ErrorCode.SELF_TRANSFER,
        ErrorCode.BAD_UNIT,
        ErrorCode.BLOB_TOO_LARGE,
        ErrorCode.BAD_SIGNATURE,
    }
)


# -- stateless stage (PROTOCOL §4.7: cheap to expensive, stop at the first failure) -------------


def decode_raw(params: ChainParams, raw: bytes) -> Tx | ErrorCode:
    """Size limit, then decode with limits and the canonical re-encode check (PROTOCOL §1.1)."""
    if len(raw) > params.max_tx_bytes:
        return ErrorCode.TOO_LARGE
    return decode(Tx, raw, max_bytes=params.max_tx_bytes)


def check_stateless(params: ChainParams, tx: Tx, *, verify_signature: bool = True) -> ErrorCode | None:
    """Chain id -> version -> PoW -> intrinsic field rules -> signature. Signature last: the
    only expensive step, so junk that fails a cheaper rule costs no verification.
    `verify_signature=False` only for txs of a block this node validated (a rolled-back block)."""
    unit = tx.payload if isinstance(tx.payload, DataUnit | LearningUnit) else None
    if tx.chain_id != params.chain_id or (unit is not None and unit.chain_id != params.chain_id):
        return ErrorCode.WRONG_CHAIN
    if tx.version != TX_VERSION:
        return ErrorCode.BAD_VERSION
    if unit is not None and not unit.pow_valid(params):  # PROTOCOL §4.6
        return ErrorCode.BAD_POW
    code = check_intrinsic(params, tx)
    if code is not None:
        return code
    if verify_signature and not tx.signature_valid():
        return ErrorCode.BAD_SIGNATURE
    return None


def check_intrinsic(params: ChainParams, tx: Tx) -> ErrorCode | None:
    """Field rules that need neither state nor a signature check."""
    if tx.fee < params.min_fee:
        return ErrorCode.FEE_TOO_LOW
    payload = tx.payload
    if isinstance(payload, Transfer | Stake | Unstake):
        if payload.amount == 0:
            return ErrorCode.ZERO_AMOUNT
        if isinstance(payload, Transfer) and payload.to == tx.sender_account:
            return ErrorCode.SELF_TRANSFER
    elif isinstance(payload, DataUnit):
        if payload.author != tx.sender or payload.n_examples == 0 or payload.byte_size == 0:
            return ErrorCode.BAD_UNIT
        if payload.byte_size > params.max_data_unit_bytes:
            return ErrorCode.BLOB_TOO_LARGE
    elif isinstance(payload, LearningUnit):
        if payload.author != tx.sender or payload.n_examples == 0 or payload.byte_size == 0:
            return ErrorCode.BAD_UNIT
        if payload.byte_size > params.max_learning_unit_bytes:  # bounds the blob a peer fetches
            return ErrorCode.BLOB_TOO_LARGE
    if tx_cost(tx) > MAX_AMOUNT:
        return ErrorCode.OVERFLOW
    return None


def check_raw(params: ChainParams, raw: bytes) -> Tx | ErrorCode:
    """The whole stateless stage for bytes from the network or RPC."""
    tx = decode_raw(params, raw)
    if isinstance(tx, ErrorCode):
        return tx
    code = check_stateless(params, tx)
    return tx if code is None else code


# -- stateful stage: the tip state plus the sender's pending items -------------------------------


def tx_cost(tx: Tx) -> int:
    """What the tx takes from the sender's balance: the fee plus coins moved or locked (PROTOCOL §3.1).

    UNSTAKE returns coins only after `unbonding_blocks`, so it costs just its fee."""
    payload = tx.payload
    if isinstance(payload, Transfer | Stake):
        return tx.fee + payload.amount
    return tx.fee


def fee_bump_ok(config: MempoolConfig, old_fee: int, new_fee: int) -> bool:
    """A replacement pays at least `replace_fee_bump_permille` more than the item it replaces,
    and strictly more in any case (an equal fee would let two peers swap a nonce forever)."""
    return new_fee * 1000 >= old_fee * (1000 + config.replace_fee_bump_permille) and new_fee > old_fee


def check_against_state(
    config: MempoolConfig, tx: Tx, account: Account, pending: Sequence[Tx], pending_cost: int | None = None
) -> int | ErrorCode:
    """Where `tx` goes in its sender's nonce sequence, or why it cannot.

    `pending` are the sender's pending txs in nonce order, starting at `account.nonce` (the pool's
    invariant); `pending_cost`, if known, is the sum of their `tx_cost`. Returns the index `tx`
    takes: `len(pending)` appends, a smaller index replaces.
    NONCE_TOO_HIGH (a gap) is transient: the missing nonces may still arrive.
    """
    if tx.nonce < account.nonce:
        return ErrorCode.NONCE_TOO_LOW
    base = pending[0].nonce if pending else account.nonce
    index = tx.nonce - base
    if index > len(pending):
        return ErrorCode.NONCE_TOO_HIGH
    if index < 0:  # pending does not start at the state nonce: the caller's view is stale
        return ErrorCode.NONCE_TOO_LOW
    if index == len(pending):
        if len(pending) >= config.max_per_sender:
            return ErrorCode.SENDER_LIMIT
        spent = _total(pending, pending_cost) + tx_cost(tx)
    else:
        old = pending[index]
        if not fee_bump_ok(config, old.fee, tx.fee):
            return ErrorCode.REPLACEMENT_FEE_TOO_LOW
        spent = _total(pending, pending_cost) - tx_cost(old) + tx_cost(tx)
    if spent > account.balance:
        return ErrorCode.INSUFFICIENT_BALANCE
    if isinstance(tx.payload, DataUnit | LearningUnit):
        unit_id = tx.payload.id
        for i, p in enumerate(pending):
            if i != index and isinstance(p.payload, DataUnit | LearningUnit) and p.payload.id == unit_id:
                return ErrorCode.BAD_UNIT  # the same unit twice: the second registration would fail
    return index


StateRule = Callable[[Tx, Sequence[Tx]], "ErrorCode | None"]


def select_run(
    config: MempoolConfig, account: Account, candidates: Sequence[Tx], state_rules: StateRule | None = None
) -> list[int]:
    """Re-validation of a sender's run against new state (a block connected or rolled back, a
    restart): which of `candidates` (sorted by nonce, the preferred one first within a nonce) form
    the new run. It starts at the state nonce, has no gap, at most `max_per_sender` items, a
    running cost the balance covers, no unit twice, and (non-TRANSFER kinds) passes `state_rules(tx,
    earlier_run)`. Returns their indices; every other candidate is dropped."""
    chosen: list[int] = []
    run: list[Tx] = []
    expected, spent = int(account.nonce), 0
    units: set[bytes] = set()
    for i, tx in enumerate(candidates):
        if tx.nonce < expected:
            continue  # used by the state, or a less preferred tx for a nonce already filled
        if tx.nonce > expected or len(run) >= config.max_per_sender:
            break  # a gap: nothing later can be included
        cost = tx_cost(tx)
        unit_id = tx.payload.id if isinstance(tx.payload, DataUnit | LearningUnit) else None
        if spent + cost > account.balance or unit_id in units:
            continue  # another candidate for this nonce may still fit
        if (
            state_rules is not None
            and not isinstance(tx.payload, Transfer)
            and state_rules(tx, run) is not None
        ):
            continue
        chosen.append(i)
        run.append(tx)
        spent += cost
        expected += 1
        if unit_id is not None:
            units.add(unit_id)
    return chosen


def _total(pending: Sequence[Tx], known: int | None) -> int:
    return sum(tx_cost(p) for p in pending) if known is None else known


def check_state_rules(
    params: ChainParams, reader: StateView, tx: Tx, account: Account, pending_before: Sequence[Tx]
) -> ErrorCode | None:
    """The consensus rules of `tx`'s kind (chain.state.txrules.apply_tx) on a throw-away overlay
    where the sender's earlier pending items are already applied (so an UNSTAKE may follow a
    pending STAKE). Used for non-TRANSFER kinds: a transfer has no state rule beyond the nonce and
    balance already checked. Should a pending item no longer apply, only its nonce and cost are
    carried over to the sender's account."""
    height = Height(reader.height + 1)
    overlay = StateOverlay(reader)
    for p in pending_before:
        if apply_tx(params, overlay, p, height, verify_signature=False) is not None:
            overlay = StateOverlay(reader)
            spent = sum(tx_cost(q) for q in pending_before)
            overlay.set_account(tx.sender_account, Account(Amount(account.balance - spent), Nonce(tx.nonce)))
            break
    return apply_tx(params, overlay, tx, height, verify_signature=False)
