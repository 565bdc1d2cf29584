"""Property tests of the transition: random tx sequences, incremental root == full recomputation,
and rolling everything back restores the genesis state exactly (PROTOCOL §3.5)."""

from __future__ import annotations

from hypothesis import event, given
from hypothesis import strategies as st

from chain.block import TxBody
from chain.header import BlockKind
from chain.state.root import StateHasher
from chain.state.transition import BlockEffects, apply_block_detailed, apply_tx
from chain.state.view import StateOverlay
from chain.tx import Payload, Stake, Transfer, Tx, Unstake
from chain.types import COIN, Amount, Height
from tests.support.chainbuilders import MemChain, dev_genesis, make_block, minted, supply

NAMES = ("alice", "bob", "carol")
GENESIS = dev_genesis(n_validators=2, funded=NAMES, amount=50 * COIN)

op = st.tuples(
    st.sampled_from(NAMES),
    st.sampled_from(("transfer", "stake", "unstake")),
    st.sampled_from((*NAMES, "validator0", "validator1")),
    st.integers(1, 30 * COIN),
    st.sampled_from((0, 0, 0, 0, -1, 1)),  # nonce offset: -1 replay, 0 right, 1 gap
)


def payload(c: MemChain, kind: str, target: str, amount: int) -> Payload:
    if kind == "transfer":
        return Transfer(c.account(target), Amount(amount))
    validator = c.keys[target if target.startswith("validator") else "validator1"].pubkey
    return (Stake if kind == "stake" else Unstake)(validator, Amount(amount))


@given(st.lists(st.lists(op, max_size=5), min_size=1, max_size=8))
def test_random_blocks_roll_back_to_genesis(blocks: list[list[tuple[str, str, str, int, int]]]) -> None:
    c = MemChain(*GENESIS)
    genesis_root, genesis_data = c.state.state_root, dict(c.state.data)
    for ops in blocks:
        c.skip_to(BlockKind.TX)
        # A proposer's selection: keep the txs that apply on top of the previous ones.
        ov = StateOverlay(c.state)
        kept, dropped = [], []
        for sender, kind, target, amount, offset in ops:
            nonce = max(0, ov.account(c.account(sender)).nonce + offset)
            tx = c.tx(sender, payload(c, kind, target, amount), nonce=nonce)
            code = apply_tx(c.params, ov, tx, Height(c.height + 1))
            if code is None:
                kept.append(tx)
            else:
                dropped.append(tx)
                event(f"dropped: {code.name}")
        event(f"block with {len(kept)} txs")
        # A dropped tx that still fails after the kept ones makes a block invalid at its own index.
        still_bad = [tx for tx in dropped if _fails(c, StateOverlay(ov), tx)]
        if still_bad:
            bad = make_block(
                c.tip, TxBody((*kept, still_bad[0])), c.keys["validator0"], bytes(32), 1, pow_bits=0
            )
            outcome = apply_block_detailed(c.params, c.state, bad)
            assert not isinstance(outcome, BlockEffects)
            assert outcome.tx_index == len(kept)
        before = supply(c.state)
        _, effects = c.add(TxBody(tuple(kept)))
        assert supply(c.state) - before == minted(effects)
        assert effects.writes.keys() >= ov.writes.keys()
        assert c.state.state_root == StateHasher(c.state.data.items()).root
    roots = [e.state_root for e in c.effects]
    applied = c.blocks[1:]
    while c.height:
        c.rollback()
    assert c.state.state_root == genesis_root
    assert c.state.data == genesis_data
    for block, root in zip(applied, roots, strict=True):
        c.add(block.body)
        assert c.state.state_root == root


def _fails(c: MemChain, ov: StateOverlay, tx: Tx) -> bool:
    return apply_tx(c.params, ov, tx, Height(c.height + 1)) is not None
