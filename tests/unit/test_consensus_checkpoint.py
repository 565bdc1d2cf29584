"""Weak subjectivity (PROTOCOL §5.3, issue 10 finding 7): a node given a final block `HEIGHT:HASH`
refuses every chain without it, in validation and in the daemon's chain service (real store)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from chain.block import Block
from chain.errors import ConfigError, ErrorCode
from chain.genesis import Genesis
from chain.state.model import Checkpoint
from chain.store.blockstore import BlockStore
from chain.types import ZERO_SIGNATURE, Height, TimestampMs
from linguachaind.config import parse_checkpoint
from linguachaind.services.chain_service import AddBlockResult, ChainService
from tests.support.chainbuilders import GENESIS_TIME_MS, dev_genesis
from tests.support.doubles import FakeClock
from tests.support.services_support import Validator


def twins(tmp_path: Path) -> tuple[Genesis, FakeClock, Block, Block]:
    """Two valid blocks at height 1 of one validator (`b` is `a` with another timestamp), built on
    a scratch store: either can be the one a checkpoint names."""
    genesis, keys = dev_genesis(1)
    clock = FakeClock(GENESIS_TIME_MS + 100_000)
    store = BlockStore.open(tmp_path / "a", genesis)
    chain = ChainService(store, clock)
    key = keys["validator0"]
    proposer = Validator(tmp_path, "v0", key, chain, clock)
    a = proposer.propose(chain, chain.tip_header())
    changed = dataclasses.replace(
        a.header, signature=ZERO_SIGNATURE, timestamp_ms=TimestampMs(a.header.timestamp_ms + 1)
    )
    b = Block(changed.mined(genesis.params.pow_bits_header).signed(key), a.body)
    proposer.protection.close()
    store.close()
    return genesis, clock, a, b


def test_the_block_at_the_checkpoint_height_must_be_the_checkpoint(tmp_path: Path) -> None:
    genesis, clock, a, b = twins(tmp_path)
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


def test_a_fetched_checkpoint_is_adopted_and_never_overrides_a_given_one(tmp_path: Path) -> None:
    """The checkpoint the configured peers agree on (p2p.checkpoint) is adopted like a given one;
    a given checkpoint is never replaced, and a datadir holding another block there refuses it."""
    genesis, clock, a, b = twins(tmp_path)
    other = BlockStore.open(tmp_path / "b", genesis)
    try:
        fetched = ChainService(other, clock)
        fetched.adopt_checkpoint(Checkpoint(Height(1), b.hash))
        assert fetched.import_block(a) == ErrorCode.CONFLICTS_WITH_FINAL
        assert fetched.import_block(b) is AddBlockResult.NEW_TIP
        given = ChainService(other, clock, checkpoint=Checkpoint(Height(1), b.hash))
        with pytest.raises(ConfigError, match="never overrides"):
            given.adopt_checkpoint(Checkpoint(Height(1), a.hash))
        assert given.checkpoint == Checkpoint(Height(1), b.hash)
        with pytest.raises(ConfigError, match="its peers agree on"):
            ChainService(other, clock).adopt_checkpoint(Checkpoint(Height(1), a.hash))
    finally:
        other.close()


def test_checkpoint_peer_settings_are_checked(tmp_path: Path) -> None:
    from linguachaind.config import build_config

    env = {"LINGUACHAIN_CHECKPOINT_PEERS": "3", "LINGUACHAIN_CHECKPOINT_WAIT_S": "5"}
    cfg = build_config({"datadir": str(tmp_path), "network": "devnet"}, env, read_file=False)
    assert (cfg.checkpoint_peers, cfg.checkpoint_wait_s) == (3, 5.0)
    assert (
        build_config({"datadir": str(tmp_path), "network": "devnet"}, {}, read_file=False).checkpoint_peers
        == 2
    )
    with pytest.raises(ConfigError, match="checkpoint_peers"):
        build_config(
            {"datadir": str(tmp_path), "network": "devnet", "checkpoint_peers": -1}, {}, read_file=False
        )
    with pytest.raises(ConfigError, match="checkpoint_wait_s"):
        build_config(
            {"datadir": str(tmp_path), "network": "devnet", "checkpoint_wait_s": 0.0}, {}, read_file=False
        )
