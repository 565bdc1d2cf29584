"""PROTOCOL §4.7 order in the mempool: every stateless check (PoW, then the signature) comes before
the nonce and balance checks against state, so an item with a bad signature or PoW is refused with a
permanent code whatever its nonce, and the gossip validator scores its sender down (p2p.gossip
penalises every permanent code, NONCE_TOO_HIGH is transient and never held against a peer).

Review finding 5 said the nonce came first (a bad signature at a future nonce answered
NONCE_TOO_HIGH and was parked); measured on the landed code (and on the first mempool commit,
7b1088c) the signature was already checked first. These tests pin the order, including the
future-nonce queue: an item reordered behind the nonce check would be held and not penalised.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from chain.codec import encode
from chain.errors import ErrorCode
from chain.state.model import Account
from chain.tx import make_tx
from chain.types import Amount, Nonce
from chain.units import DataUnit
from mempool import Mempool, MempoolConfig
from tests.support.mempool_support import PARAMS, MemState, acct, bad_signature, data_unit_tx, key, transfer

STATE_NONCE = 5


def pool(tmp_path: Path) -> Mempool:
    funded = {acct(i): Account(Amount(10**12), Nonce(STATE_NONCE)) for i in range(3)}
    return Mempool.open(tmp_path / "pool", PARAMS, MempoolConfig(), reader=MemState(funded), now_ms=1)


@pytest.mark.parametrize("nonce", [0, STATE_NONCE, STATE_NONCE + 1, STATE_NONCE + 3, 10**9])
def test_a_bad_signature_is_refused_permanently_at_any_nonce(tmp_path: Path, nonce: int) -> None:
    mp = pool(tmp_path)
    try:
        good = transfer(0, nonce)
        code = mp.add_raw(encode(bad_signature(good, 7)), 1)
        assert code is ErrorCode.BAD_SIGNATURE
        assert code.is_permanent  # the peer that gossiped it is scored down
        assert len(mp._future) == 0  # never parked as a future nonce
        result = mp.add_raw(encode(good), 1)  # the same tx validly signed: the nonce rules apply
        if nonce < STATE_NONCE:
            assert result is ErrorCode.NONCE_TOO_LOW
        elif nonce == STATE_NONCE:
            assert result == good.id
        else:
            assert result is ErrorCode.NONCE_TOO_HIGH
    finally:
        mp.close()


def test_a_bad_unit_pow_is_refused_before_the_nonce(tmp_path: Path) -> None:
    mp = pool(tmp_path)
    try:
        tx = data_unit_tx(1, STATE_NONCE + 2)
        unit = tx.payload
        assert isinstance(unit, DataUnit)
        nonce = unit.pow_nonce + 1
        while dataclasses.replace(unit, pow_nonce=nonce).pow_valid(PARAMS):
            nonce += 1
        bad = make_tx(
            key(1), PARAMS.chain_id, STATE_NONCE + 2, 10_000, dataclasses.replace(unit, pow_nonce=nonce)
        )
        assert mp.add_raw(encode(bad), 1) is ErrorCode.BAD_POW
        assert mp.add_raw(encode(tx), 1) is ErrorCode.NONCE_TOO_HIGH  # valid: held for the gap
        assert len(mp._future) == 1
    finally:
        mp.close()
