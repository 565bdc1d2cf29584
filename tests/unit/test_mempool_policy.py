"""Admission policy (PROTOCOL §4.7): every rejection code, its order, and its transient flag."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from chain.codec import encode
from chain.errors import ErrorCode
from chain.params import TESTNET
from chain.state.model import Account
from chain.tx import Transfer, make_tx
from chain.types import Amount, Nonce
from chain.units import DataUnit
from mempool import Mempool, MempoolConfig
from mempool.policy import check_against_state, check_raw, select_run, tx_cost
from tests.support.mempool_support import (
    PARAMS,
    SINK,
    MemState,
    acct,
    bad_signature,
    data_unit_tx,
    key,
    transfer,
)

CONFIG = MempoolConfig(max_per_sender=3, sync_writes=False)


def test_valid_transfer_passes_the_stateless_stage() -> None:
    tx = transfer(0, 0)
    assert check_raw(PARAMS, encode(tx)) == tx


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\xc1", ErrorCode.MALFORMED),
        (b"\x01" * (PARAMS.max_tx_bytes + 1), ErrorCode.TOO_LARGE),
        (encode(transfer(0, 0)) + b"\x00", ErrorCode.TRAILING_BYTES),
        (b"\x93\x01\x02\x03", ErrorCode.WRONG_ARITY),
    ],
)
def test_codec_failures(raw: bytes, code: ErrorCode) -> None:
    assert check_raw(PARAMS, raw) == code
    assert code.is_permanent


def test_non_canonical_encoding_is_rejected() -> None:
    raw = bytearray(encode(transfer(0, 0)))
    assert raw[1] == 0x01  # version as a positive fixint ...
    raw[1:2] = b"\xcc\x01"  # ... re-encoded as uint8: same value, not canonical
    assert check_raw(PARAMS, bytes(raw)) == ErrorCode.NON_CANONICAL


def test_wrong_chain_is_checked_before_the_signature() -> None:
    tx = make_tx(key(0), TESTNET.chain_id, 0, 10_000, Transfer(SINK, Amount(1)))
    assert check_raw(PARAMS, encode(bad_signature(tx, 3))) == ErrorCode.WRONG_CHAIN


def test_bad_signature_and_bad_pow() -> None:
    assert check_raw(PARAMS, encode(bad_signature(transfer(0, 0), 5))) == ErrorCode.BAD_SIGNATURE
    unit_tx = data_unit_tx(0, 0)
    assert check_raw(PARAMS, encode(unit_tx)) == unit_tx
    payload = unit_tx.payload
    assert isinstance(payload, DataUnit)
    bad_unit = dataclasses.replace(payload, pow_nonce=payload.pow_nonce + 1)
    while bad_unit.pow_valid(PARAMS):  # find a nonce that misses the target
        bad_unit = dataclasses.replace(bad_unit, pow_nonce=bad_unit.pow_nonce + 1)
    forged = make_tx(key(0), PARAMS.chain_id, 0, 10_000, bad_unit)
    assert check_raw(PARAMS, encode(forged)) == ErrorCode.BAD_POW
    # PoW before signature: a unit with both faults reports BAD_POW without a verification
    assert check_raw(PARAMS, encode(bad_signature(forged, 1))) == ErrorCode.BAD_POW


def test_intrinsic_rules() -> None:
    assert check_raw(PARAMS, encode(transfer(0, 0, fee=PARAMS.min_fee - 1))) == ErrorCode.FEE_TOO_LOW
    assert check_raw(PARAMS, encode(transfer(0, 0, amount=0))) == ErrorCode.ZERO_AMOUNT
    self_tx = make_tx(key(0), PARAMS.chain_id, 0, 10_000, Transfer(acct(0), Amount(5)))
    assert check_raw(PARAMS, encode(self_tx)) == ErrorCode.SELF_TRANSFER


def test_nonce_sequence_replacement_and_balance() -> None:
    account = Account(Amount(100_000), Nonce(5))
    pending = [transfer(0, 5, fee=10_000), transfer(0, 6, fee=10_000)]
    assert check_against_state(CONFIG, transfer(0, 4), account, pending) == ErrorCode.NONCE_TOO_LOW
    assert check_against_state(CONFIG, transfer(0, 8), account, pending) == ErrorCode.NONCE_TOO_HIGH
    assert ErrorCode.NONCE_TOO_HIGH.is_transient
    assert check_against_state(CONFIG, transfer(0, 7), account, pending) == 2
    assert check_against_state(CONFIG, transfer(0, 6, fee=10_999), account, pending) == (
        ErrorCode.REPLACEMENT_FEE_TOO_LOW
    )
    assert check_against_state(CONFIG, transfer(0, 6, fee=11_000), account, pending) == 1
    full = [*pending, transfer(0, 7)]
    assert check_against_state(CONFIG, transfer(0, 8), account, full) == ErrorCode.SENDER_LIMIT
    big = transfer(0, 7, amount=100_000 - sum(tx_cost(p) for p in pending) - 10_000 + 1)
    assert check_against_state(CONFIG, big, account, pending) == ErrorCode.INSUFFICIENT_BALANCE
    assert ErrorCode.INSUFFICIENT_BALANCE.is_transient


def test_mempool_returns_codes_and_remembers_permanent_rejects(tmp_path: Path) -> None:
    state = MemState.funded(2)
    mp = Mempool.open(tmp_path / "mempool", PARAMS, CONFIG, reader=state, now_ms=1)
    bad = encode(bad_signature(transfer(0, 0), 7))
    assert mp.add_raw(bad, 2) == ErrorCode.BAD_SIGNATURE
    assert mp.add_raw(bad, 3) == ErrorCode.RECENTLY_REJECTED
    good = transfer(0, 0)
    assert mp.add(good, 4) == good.id
    assert mp.add(good, 5) == ErrorCode.ALREADY_KNOWN
    assert mp.add(transfer(1, 1), 6) == ErrorCode.NONCE_TOO_HIGH  # held, not accepted
    assert not mp.contains(transfer(1, 1).id)
    assert mp.statistics().future_held == 1
    assert mp.add(transfer(1, 0), 7) == transfer(1, 0).id  # fills the gap: the held one follows
    assert mp.contains(transfer(1, 1).id)
    assert mp.next_nonce(acct(1)) == 2
    mp.close()


def test_held_future_tx_expires_and_promotion_restarts_its_clock(tmp_path: Path) -> None:
    config = MempoolConfig(expiry_ms=1_000, sync_writes=False)
    mp = Mempool.open(tmp_path / "mempool", PARAMS, config, MemState.funded(2), 0)
    assert mp.add(transfer(0, 1), 0) == ErrorCode.NONCE_TOO_HIGH
    assert mp.add(transfer(0, 0), 1_000) == transfer(0, 0).id
    assert not mp.contains(transfer(0, 1).id)  # held too long: dropped, not promoted
    assert mp.add(transfer(1, 1), 1_000) == ErrorCode.NONCE_TOO_HIGH
    assert mp.add(transfer(1, 0), 1_500) == transfer(1, 0).id
    assert mp.contains(transfer(1, 1).id)
    assert mp.expire(2_000) == 1  # transfer(0, 0), accepted at 1,000
    assert mp.contains(transfer(1, 1).id)  # promoted at 1,500: expires at 2,500, not 2,000
    mp.close()


def test_unfunded_sender_cannot_park_future_txs(tmp_path: Path) -> None:
    mp = Mempool.open(tmp_path / "mempool", PARAMS, CONFIG, MemState.funded(1), 0)
    assert mp.add(transfer(5, 1), 1) == ErrorCode.NONCE_TOO_HIGH  # key 5 has no coins
    assert mp.add(transfer(0, 1 + CONFIG.max_nonce_gap + 1), 1) == ErrorCode.NONCE_TOO_HIGH  # gap too wide
    assert mp.statistics().future_held == 0
    mp.close()


def test_select_run_rebuilds_a_run_against_new_state() -> None:
    account = Account(Amount(50_000), Nonce(3))
    used, pricey, cheap = transfer(0, 2), transfer(0, 3, amount=45_000), transfer(0, 3, amount=1_000)
    nxt, gap = transfer(0, 4), transfer(0, 6)
    # `pricey` is preferred for nonce 3 but the balance cannot pay it: `cheap` takes the nonce.
    assert select_run(CONFIG, account, [used, pricey, cheap, nxt, gap]) == [2, 3]
    assert select_run(CONFIG, account, [nxt]) == []  # starts above the state nonce: a gap
    many = [transfer(0, n) for n in range(3, 10)]
    assert len(select_run(CONFIG, Account(Amount(10**9), Nonce(3)), many)) == CONFIG.max_per_sender
