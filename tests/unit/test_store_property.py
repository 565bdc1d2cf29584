"""Random connect / disconnect / finalise / reopen sequences on the block store, checked against the
block roots of the same chain built in memory (PROTOCOL §3.5, §4.4: never revert a final block)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.errors import StoreError
from chain.state.transition import BlockEffects, apply_block
from chain.store import BlockStore
from chain.tx import Stake, Transfer, Unstake
from chain.types import COIN, Amount
from tests.support.chainbuilders import MemChain, dev_genesis


def _chain() -> MemChain:
    c = MemChain(*dev_genesis(n_validators=2))
    v1 = c.keys["validator1"].pubkey
    for i in range(4):
        c.add_txs(
            [
                c.tx("alice", Transfer(c.account("bob"), Amount((i + 1) * COIN))),
                c.tx("bob", Stake(v1, Amount(COIN + i))),
                *([c.tx("bob", Unstake(v1, Amount(COIN)), nonce=c.nonce("bob") + 1)] if i else []),
            ],
            proposer=f"validator{i % 2}",
        )
    c.add()
    return c


CHAIN = _chain()
OPS = st.lists(
    st.sampled_from(("connect", "connect", "connect", "disconnect", "final", "reopen")), max_size=30
)


@settings(max_examples=25)
@given(OPS)
def test_random_store_operations_track_the_chain(ops: list[str]) -> None:
    blocks = CHAIN.blocks
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chain"
        store = BlockStore.open(path, CHAIN.genesis)
        try:
            for op in ops:
                height = store.tip[1]
                if op == "connect" and height + 1 < len(blocks):
                    effects = apply_block(store.params, store.reader(), blocks[height + 1])
                    assert isinstance(effects, BlockEffects)
                    store.connect_block(blocks[height + 1], effects)
                elif op == "disconnect":
                    if height <= store.final_height:
                        with pytest.raises(StoreError):
                            store.disconnect_tip()
                    else:
                        assert store.disconnect_tip() == blocks[height]
                elif op == "final":
                    store.set_final(height)
                elif op == "reopen":
                    store.close()
                    store = BlockStore.open(path, CHAIN.genesis)
                tip_hash, tip_height = store.tip
                assert tip_hash == blocks[tip_height].hash
                assert store.state_root == blocks[tip_height].header.state_root
                assert store.final_height <= tip_height
            store.verify()
        finally:
            store.close()
