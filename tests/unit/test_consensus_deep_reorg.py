"""Deep reorgs (issue 10 finding 8): a branch that forks more than 1,024 blocks below the tip (the old
fixed state depth) is validated and adopted; states are rebuilt from the undo records down to the
final block. Real store, real VDF; slow (about 2,000 blocks)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from chain.block import Block
from chain.store.blockstore import BlockStore
from chain.types import ZERO_SIGNATURE, TimestampMs
from linguachaind.services.chain_service import AddBlockResult, ChainService
from tests.support.chainbuilders import GENESIS_TIME_MS, dev_genesis
from tests.support.doubles import FakeClock
from tests.support.services_support import Validator

DEPTH = 1_030  # deeper than the old MAX_STATE_DEPTH of 1,024


@pytest.mark.slow
def test_a_longer_branch_forking_deeper_than_1024_blocks_is_adopted(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if os.environ.get("LC_SLOW") != "1" and "slow" not in str(request.config.getoption("markexpr")):
        pytest.skip("slow: run with LC_SLOW=1 or -m slow")
    genesis, keys = dev_genesis(1)
    params = genesis.params
    clock = FakeClock(GENESIS_TIME_MS + 10_000)
    store = BlockStore.open(tmp_path / "chain", genesis)
    try:
        chain = ChainService(store, clock)  # nobody attests: nothing becomes final, the genesis is
        key = keys["validator0"]
        proposer = Validator(tmp_path, "v0", key, chain, clock)
        g = chain.tip_header()
        for _ in range(DEPTH):
            clock.advance(params.slot_ms)
            assert chain.import_block(proposer.propose(chain, chain.tip_header())) is AddBlockResult.NEW_TIP
        assert chain.height == DEPTH
        forger = Validator(tmp_path, "v0-side", key, chain, clock)  # its own slashing protection
        first = forger.propose(chain, g)
        other = dataclasses.replace(
            first.header, signature=ZERO_SIGNATURE, timestamp_ms=TimestampMs(first.header.timestamp_ms + 1)
        )
        side = Block(other.mined(params.pow_bits_header).signed(key), first.body)
        assert chain.import_block(side) is AddBlockResult.SIDE_BLOCK
        parent = side.header
        for _ in range(DEPTH):  # DEPTH + 1 side blocks in all: the longer branch wins
            clock.advance(params.slot_ms)
            block = forger.propose(chain, parent)
            result = chain.import_block(block)
            assert result in (AddBlockResult.SIDE_BLOCK, AddBlockResult.NEW_TIP), result
            parent = block.header
        assert chain.height == DEPTH + 1
        assert chain.tip_hash() == parent.hash
        assert store.hash_at(1) == side.hash
        store.verify()
    finally:
        store.close()
