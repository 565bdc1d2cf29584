"""Weak subjectivity (PROTOCOL §5.3, issue 10 finding 7): a node given a final block `HEIGHT:HASH`
refuses every chain without it, in validation and in the daemon's chain service (real store)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from chain.block import Block
from chain.errors import ConfigError, ErrorCode
from chain.state.model import Checkpoint
from chain.store.blockstore import BlockStore
from chain.types import ZERO_SIGNATURE, Height, TimestampMs
from linguachaind.config import parse_checkpoint
from linguachaind.services.chain_service import AddBlockResult, ChainService
from tests.support.chainbuilders import GENESIS_TIME_MS, dev_genesis
from tests.support.doubles import FakeClock
from tests.support.services_support import Validator


def test_the_block_at_the_checkpoint_height_must_be_the_checkpoint(tmp_path: Path) -> None:
    genesis, keys = dev_genesis(1)
    clock = FakeClock(GENESIS_TIME_MS + 100_000)
    store = BlockStore.open(tmp_path / "a", genesis)
    chain = ChainService(store, clock)
    key = keys["validator0"]
    a = Validator(tmp_path, "v0", key, chain, clock).propose(chain, chain.tip_header())
    changed = dataclasses.replace(
        a.header, signature=ZERO_SIGNATURE, timestamp_ms=TimestampMs(a.header.timestamp_ms + 1)
    )
    b = Block(changed.mined(genesis.params.pow_bits_header).signed(key), a.body)
    store.close()
    # a node told that `b` is final refuses `a` (validly signed by the same validators) ...
    other = BlockStore.open(tmp_path / "b", genesis)
    try:
        guarded = ChainService(other, clock, checkpoint=Checkpoint(Height(1), b.hash))
        assert guarded.import_block(a) == ErrorCode.CONFLICTS_WITH_FINAL
        assert guarded.import_block(b) is AddBlockResult.NEW_TIP
    finally:
        other.close()
    # ... and a datadir whose chain already holds another block there cannot start with it
    store = BlockStore.open(tmp_path / "c", genesis)
    try:
        plain = ChainService(store, clock)
        assert plain.import_block(a) is AddBlockResult.NEW_TIP
        with pytest.raises(ConfigError, match="resync"):
            ChainService(store, clock, checkpoint=Checkpoint(Height(1), b.hash))
        assert ChainService(store, clock, checkpoint=Checkpoint(Height(1), a.hash)).height == 1
    finally:
        store.close()


def test_checkpoint_setting_is_height_colon_hash() -> None:
    digest = "ab" * 32
    assert parse_checkpoint(f"12:{digest}") == (12, bytes.fromhex(digest))
    for bad in ("12", f"0:{digest}", "x:" + digest, "12:abcd", f"-1:{digest}"):
        with pytest.raises(ConfigError, match="HEIGHT:HASH"):
            parse_checkpoint(bad)
