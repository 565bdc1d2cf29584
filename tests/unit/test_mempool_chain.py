"""The mempool on the real state transition (chain.state, tests/support/chainbuilders.MemChain): kind rules
of `apply_tx` at admission, a producer's template applied as a block, and a real rollback."""

from __future__ import annotations

from pathlib import Path

import pytest

from chain.errors import ErrorCode, StoreError
from chain.state.txrules import apply_tx
from chain.state.view import StateOverlay
from chain.tx import Stake, Transfer, Tx, Unstake
from chain.types import COIN, Amount, Height
from mempool import Mempool, MempoolConfig
from tests.support.chainbuilders import MemChain, dev_genesis, mine_data_unit

CONFIG = MempoolConfig(sync_writes=False)


def setup(tmp_path: Path) -> tuple[MemChain, Mempool]:
    genesis, keys = dev_genesis(n_validators=1, funded=("alice", "bob", "carol"))
    chain = MemChain(genesis, keys)
    mp = Mempool.open(tmp_path / "mp", chain.params, CONFIG, reader=chain.state, now_ms=1)
    return chain, mp


def test_kind_rules_of_the_state_transition_apply_at_admission(tmp_path: Path) -> None:
    chain, mp = setup(tmp_path)
    params = chain.params
    newcomer = chain.keys["carol"].pubkey  # not a validator yet: a first stake needs min_stake
    small = chain.tx("alice", Stake(newcomer, Amount(params.min_stake - 1)))
    assert mp.add(small, 2) == ErrorCode.STAKE_TOO_SMALL
    assert mp.add(chain.tx("alice", Unstake(newcomer, Amount(1))), 2) == ErrorCode.UNKNOWN_STAKE
    stake = chain.tx("alice", Stake(newcomer, Amount(params.min_stake)))
    assert mp.add(stake, 3) == stake.id
    # An UNSTAKE may follow a pending STAKE: the pending items are simulated first.
    unstake = chain.tx("alice", Unstake(newcomer, Amount(1)), nonce=stake.nonce + 1)
    assert mp.add(unstake, 4) == unstake.id
    unit = mine_data_unit(params, chain.keys["bob"], 5)
    register = chain.tx("bob", unit)
    assert mp.add(register, 5) == register.id
    twice = chain.tx("bob", unit, nonce=register.nonce + 1)
    assert mp.add(twice, 6) == ErrorCode.BAD_UNIT  # the same unit pending twice
    assert [t.id for t in mp.data_units()] == [register.id]
    assert mp.get_unit(unit.id) == register
    ids = sorted(mp.ids())
    mp.close()
    # Reload re-checks the kind rules too (the UNSTAKE again after its pending STAKE).
    mp = Mempool.open(tmp_path / "mp", chain.params, CONFIG, chain.state, 7)
    assert sorted(mp.ids()) == ids
    with pytest.raises(StoreError, match="in use"):
        Mempool.open(tmp_path / "mp", chain.params, CONFIG, chain.state, 7)  # one process per datadir
    mp.close()


def producer_template(chain: MemChain, mp: Mempool) -> list[Tx]:
    """What a producer does: apply each candidate to its block overlay, keep what applies."""
    overlay = StateOverlay(chain.state)
    height = Height(chain.height + 1)

    def accept(tx: Tx) -> bool:
        return apply_tx(chain.params, overlay, tx, height, verify_signature=False) is None

    return mp.tx_template(chain.params.max_block_bytes - 4096, chain.params.max_txs_per_block, accept=accept)


def test_template_applies_as_a_block_and_rollback_returns_its_txs(tmp_path: Path) -> None:
    chain, mp = setup(tmp_path)
    carol = chain.account("carol")
    txs = [chain.tx("alice", Transfer(carol, Amount(COIN)), nonce=n, fee=2_000 + n) for n in range(3)]
    txs += [chain.tx("bob", Transfer(carol, Amount(COIN)), nonce=n, fee=5_000) for n in range(2)]
    for tx in txs:
        assert mp.add(tx, 2) == tx.id
    template = producer_template(chain, mp)
    assert sorted(t.id for t in template) == sorted(t.id for t in txs)
    block, _ = chain.add_txs(template)  # the real transition accepts it as a block
    mp.on_block_connected(block, chain.state)
    assert len(mp) == 0
    chain.rollback()
    mp.on_block_disconnected(block, chain.state)
    assert sorted(mp.ids()) == sorted(t.id for t in txs)
    assert mp.next_nonce(chain.account("alice")) == 3
    mp.check_invariants()
    mp.close()
