"""The genesis state and block (PROTOCOL §2, §3.5).

Owns: turning a `Genesis` (allocations, initial validators) into state writes and the height-0
`Block` whose header commits to that state. Must not: read files (chain.genesis does) or store
anything (the block store writes the result).

Initial stakes are mature at height 0 (validators can propose block 1) and their validators start
with `reputation_start`. The model record is version 0, the zero adapter. The genesis validators
form the active and final validator sets of epoch 0 (chain.state.epochs).
"""

from __future__ import annotations

import dataclasses

from chain.block import Block, TxBody
from chain.genesis import Genesis, genesis_header
from chain.state.epochs import genesis_sets
from chain.state.model import GENESIS_MODEL, Account, StakeRecord, ValidatorRecord
from chain.state.view import MemoryState, StateOverlay
from chain.types import Amount, Height, StateRoot


def genesis_state(genesis: Genesis) -> tuple[dict[bytes, bytes], StateRoot]:
    """(state key -> value, state_root) of the state at height 0."""
    params = genesis.params
    ov = StateOverlay(MemoryState(params, Height(0)))
    for alloc in genesis.allocations:
        acct = ov.account(alloc.account)
        ov.set_account(alloc.account, Account(Amount(acct.balance + alloc.amount), acct.nonce))
    for gv in genesis.validators:
        record = ov.validator(gv.validator) or ValidatorRecord(
            gv.validator, Amount(0), params.reputation_start, Height(0), Height(0)
        )
        ov.set_validator(dataclasses.replace(record, stake_total=Amount(record.stake_total + gv.stake)))
        stake = ov.stake(gv.staker, gv.validator) or StakeRecord(
            gv.staker, gv.validator, Amount(0), Height(0)
        )
        ov.set_stake(
            gv.staker, gv.validator, dataclasses.replace(stake, amount=Amount(stake.amount + gv.stake))
        )
    ov.set_model(GENESIS_MODEL)
    for which, vset in genesis_sets(ov).items():
        ov.set_validator_set(which, vset)
    writes = {k: v for k, v in ov.writes.items() if v is not None}
    return writes, ov.root_after({})


def genesis_block(genesis: Genesis) -> Block:
    """The height-0 block; its hash is the chain's identity."""
    _, root = genesis_state(genesis)
    return Block(genesis_header(genesis, root), TxBody())


def genesis_memory_state(genesis: Genesis) -> MemoryState:
    """The genesis state in memory (tests, tools, a proposer's dry run without a store)."""
    writes, _ = genesis_state(genesis)
    return MemoryState(genesis.params, Height(0), writes)
