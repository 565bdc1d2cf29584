"""Every validly signed vote reaches the evidence reporter (PROTOCOL §4.4, issue 10 findings 3 and 5):
double votes at or below the final height are reported (v1 dropped them as stale first), and two
votes whose spans nest are reported as SURROUND_VOTE. Real store, mempool, signatures, reporter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chain.consensus.slashing import verify_evidence
from chain.crypto import SecretKey
from chain.errors import ErrorCode
from chain.evidence import EvidenceKind, SurroundVote
from chain.hashing import H
from chain.header import Attestation
from chain.params import DEVNET
from chain.store.blockstore import BlockStore
from chain.tx import SlashEvidence
from chain.types import BlockHash, Height
from linguachaind.services.chain_service import AddBlockResult, ChainService
from linguachaind.services.evidence import EvidenceReporter
from linguachaind.services.submit import TxSubmitter
from mempool import DEFAULT_CONFIG, Mempool
from tests.support.chainbuilders import GENESIS_TIME_MS, dev_genesis
from tests.support.doubles import FakeClock
from tests.support.services_support import Validator


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[ChainService, list[Validator], EvidenceReporter]]:
    genesis, keys = dev_genesis(2, funded=("validator0", "validator1"))
    clock = FakeClock(GENESIS_TIME_MS + 100_000)
    store = BlockStore.open(tmp_path / "chain", genesis)
    pool = Mempool.open(
        tmp_path / "mempool", DEVNET, config=DEFAULT_CONFIG, reader=store.reader(), now_ms=clock.now_ms()
    )
    reporter = EvidenceReporter(store, keys["validator1"], pool, TxSubmitter(pool, clock))
    chain = ChainService(store, clock, mempool=pool, watchers=(reporter,))  # shows it every vote
    vals = [Validator(tmp_path, f"v{i}", keys[f"validator{i}"], chain, clock, mempool=pool) for i in range(2)]
    try:
        yield chain, vals, reporter
    finally:
        for v in vals:
            v.protection.close()
        pool.close()
        store.close()


def vote(key: SecretKey, height: int, block: bytes, source: int = 0) -> Attestation:
    source_hash = BlockHash(bytes(32)) if source == 0 else BlockHash(H(b"source-%d" % source))
    return Attestation(
        DEVNET.chain_id, Height(height), BlockHash(block), Height(source), source_hash, key.pubkey
    ).signed(key)


def grow_final(chain: ChainService, vals: list[Validator], final_height: int) -> None:
    """Blocks by the rank-0 validator, both attesting each head, until `final_height` is final."""
    while chain.store.final_height < final_height:
        parent = chain.tip_header()
        proposer = min(vals, key=lambda v: v.duty(chain, parent).rank)
        assert chain.import_block(proposer.propose(chain, parent)) is AddBlockResult.NEW_TIP
        for v in vals:
            v.attester.attest_head()


def test_a_double_vote_at_a_final_height_is_reported(
    world: tuple[ChainService, list[Validator], EvidenceReporter],
) -> None:
    chain, vals, reporter = world
    grow_final(chain, vals, 2)
    cheat = vals[0].key
    first = chain.store.get_block_at(1)
    assert first is not None
    stale = vote(cheat, 1, H(b"another block at height 1"))
    assert chain.on_attestation(stale) is ErrorCode.STALE  # not counted ...
    kinds = [tx.payload.evidence.kind for tx in reporter.submitted if isinstance(tx.payload, SlashEvidence)]
    assert kinds == [EvidenceKind.DOUBLE_ATTEST]  # ... but its own first vote at 1 makes it a fault
    payload = reporter.submitted[0].payload
    assert isinstance(payload, SlashEvidence)
    assert not isinstance(verify_evidence(DEVNET, chain.reader(), payload.evidence), ErrorCode)


def test_nested_spans_are_reported_as_a_surround_vote(
    world: tuple[ChainService, list[Validator], EvidenceReporter],
) -> None:
    chain, vals, reporter = world
    cheat = vals[0].key
    outer, inner = vote(cheat, 5, H(b"o"), source=0), vote(cheat, 4, H(b"i"), source=1)
    assert chain.on_attestation(outer) is ErrorCode.UNKNOWN_BLOCK
    assert chain.on_attestation(inner) is ErrorCode.UNKNOWN_BLOCK
    proofs = [tx.payload.evidence for tx in reporter.submitted if isinstance(tx.payload, SlashEvidence)]
    assert [p.kind for p in proofs] == [EvidenceKind.SURROUND_VOTE]
    assert proofs[0].proof == SurroundVote(outer, inner)
