"""The evidence reporter (PROTOCOL §5.3): an equivocating proposer or voter is reported once, the
evidence tx is included by the producer, the stake is burned, the validator jailed and the reporter
paid. Real store, real state, real mempool, real VDF and signatures; a fake clock."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from chain.block import Block, TxBody
from chain.codec import encode
from chain.consensus.slashing import evidence_key, slash_amounts, verify_evidence
from chain.crypto import SecretKey, account_id
from chain.errors import ErrorCode
from chain.evidence import EvidenceKind
from chain.header import Attestation, Header
from chain.params import DEVNET
from chain.state.model import RewardReason
from chain.store.blockstore import BlockStore
from chain.tx import SlashEvidence, Transfer, Tx, TxKind, make_tx
from chain.types import ZERO_SIGNATURE, Amount, BlockHash, Height, Signature, TimestampMs
from linguachaind.services import evidence as evidence_module
from linguachaind.services.chain_service import AddBlockResult, ChainService
from linguachaind.services.evidence import EvidenceReporter
from linguachaind.services.submit import TxSubmitter
from mempool import DEFAULT_CONFIG, Mempool
from tests.support.chainbuilders import GENESIS_TIME_MS, VALIDATOR_STAKE, dev_genesis
from tests.support.doubles import FakeClock, NullNetwork
from tests.support.services_support import Validator

ADDED = (AddBlockResult.NEW_TIP, AddBlockResult.SIDE_BLOCK)


@dataclass
class Net:
    keys: dict[str, SecretKey]
    store: BlockStore
    pool: Mempool
    chain: ChainService
    clock: FakeClock
    cheat: Validator
    honest: Validator  # runs the reporter with its validator key
    reporter: EvidenceReporter
    network: NullNetwork
    txs: TxSubmitter  # the reporter submits through it; `reporting` runs its publisher
    rival: EvidenceReporter | None  # a second reporter the chain service shows its imports to

    def staker_of(self, v: Validator) -> SecretKey:
        return next(self.keys[f"staker{i}"] for i in range(2) if self.keys[f"validator{i}"] == v.key)


def open_net(tmp_path: Path, funded: tuple[str, ...], rival: str | None = None) -> Net:
    """`rival`: the name of a second reporter's key (its own submitter, never published)."""
    genesis, keys = dev_genesis(2, funded=funded)
    clock = FakeClock(GENESIS_TIME_MS + 100_000)  # every rank's time has come
    store = BlockStore.open(tmp_path / "chain", genesis)
    pool = Mempool.open(
        tmp_path / "mempool", DEVNET, config=DEFAULT_CONFIG, reader=store.reader(), now_ms=clock.now_ms()
    )
    txs = TxSubmitter(pool, clock)
    reporter = EvidenceReporter(store, keys["validator1"], pool, txs)  # the honest validator's
    other = EvidenceReporter(store, keys[rival], pool, TxSubmitter(pool, clock)) if rival else None
    watchers = (reporter,) if other is None else (reporter, other)
    chain = ChainService(store, clock, mempool=pool, watchers=watchers)
    cheat, honest = (
        Validator(tmp_path, f"v{i}", keys[f"validator{i}"], chain, clock, mempool=pool) for i in range(2)
    )
    return Net(keys, store, pool, chain, clock, cheat, honest, reporter, NullNetwork(), txs, other)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = open_net(tmp_path, ("alice", "bob", "validator0", "validator1"))
    yield n
    close(n)


def close(n: Net) -> None:
    n.cheat.protection.close()
    n.honest.protection.close()
    n.pool.close()
    n.store.close()


@asynccontextmanager
async def reporting(n: Net) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        await nursery.start(n.txs.run, n.network)
        await nursery.start(n.reporter.run, n.chain)
        yield
        nursery.cancel_scope.cancel()


def resigned(header: Header, key: SecretKey, **changes: Any) -> Header:
    """Another header of the same proposer: `changes` applied, PoW and signature made again."""
    other = dataclasses.replace(header, signature=ZERO_SIGNATURE, **changes)
    return other.mined(DEVNET.pow_bits_header).signed(key)


def grow(n: Net, count: int) -> None:
    """The honest validator proposes `count` blocks on the tip (the mempool's txs go in TX blocks)."""
    for _ in range(count):
        n.clock.advance(10 * DEVNET.slot_ms)  # any rank's time has come
        block = n.honest.propose(n.chain, n.chain.tip_header())
        assert n.chain.import_block(block) is AddBlockResult.NEW_TIP


def vote(key: SecretKey, height: int, block_hash: bytes) -> Attestation:
    source_height, source_hash = Height(0), BlockHash(bytes(32))  # the genesis (§4.4)
    return Attestation(
        DEVNET.chain_id, Height(height), BlockHash(block_hash), source_height, source_hash, key.pubkey
    ).signed(key)


def evidence_of(tx: Tx) -> SlashEvidence:
    assert isinstance(tx.payload, SlashEvidence)
    return tx.payload


async def test_an_equivocating_proposer_is_reported_included_slashed_jailed_and_the_reporter_paid(
    net: Net,
) -> None:
    chain, cheat, honest, reporter = net.chain, net.cheat, net.honest, net.reporter
    reporter_account = account_id(honest.key.pubkey)
    balance_before = chain.reader().account(reporter_account).balance
    g = chain.tip_header()
    a = cheat.propose(chain, g)
    b = Block(resigned(a.header, cheat.key, timestamp_ms=TimestampMs(a.header.timestamp_ms + 1)), a.body)
    async with reporting(net):
        assert chain.import_block(a) is AddBlockResult.NEW_TIP
        assert reporter.submitted == []
        assert chain.import_block(b) in ADDED  # a valid block too (best or not: a hash tie-break)
        assert len(reporter.submitted) == 1
        tx = reporter.submitted[0]
        assert (tx.kind, tx.sender, tx.fee) == (TxKind.SLASH_EVIDENCE, honest.key.pubkey, DEVNET.min_fee)
        assert evidence_of(tx).evidence.kind is EvidenceKind.DOUBLE_PROPOSAL
        assert net.pool.contains(tx.id)
        # never twice: the same block again, a third header, the first one again
        assert chain.import_block(b) is AddBlockResult.ALREADY_KNOWN
        c = resigned(a.header, cheat.key, timestamp_ms=TimestampMs(a.header.timestamp_ms + 2))
        assert chain.import_block(Block(c, a.body)) in ADDED
        assert chain.import_block(a) is AddBlockResult.ALREADY_KNOWN
        assert reporter.submitted == [tx]
        await trio.testing.wait_all_tasks_blocked()
        assert net.network.txs == [encode(tx)]  # published through the network hook

        grow(net, 3)  # heights 2 (DATA), 3 (VERSION), 4 (TX: the evidence goes in)
    included = net.store.get_block_at(4)
    assert included is not None
    assert isinstance(included.body, TxBody)
    assert included.body.txs == (tx,)
    assert not net.pool.contains(tx.id)

    reader = chain.reader()
    total, share = slash_amounts(DEVNET, EvidenceKind.DOUBLE_PROPOSAL, VALIDATOR_STAKE)
    assert total > 0
    assert share > 0
    record = reader.validator(cheat.key.pubkey)
    assert record is not None
    assert record.jailed_until == 4 + DEVNET.jail_blocks
    assert record.reputation == DEVNET.reputation_min
    assert record.stake_total == VALIDATOR_STAKE - total
    staker = account_id(net.staker_of(cheat).pubkey)
    stake = reader.stake(staker, cheat.key.pubkey)
    assert stake is not None
    assert stake.amount == VALIDATOR_STAKE - total
    key = evidence_key(EvidenceKind.DOUBLE_PROPOSAL, cheat.key.pubkey, 1)
    assert reader.evidence_seen(key)
    burns = [r for r in net.store.rewards_for(staker) if r.reason is RewardReason.SLASH_BURN]
    assert [(r.height, r.amount, r.ref) for r in burns] == [(4, -total, key)]
    paid = [r for r in net.store.rewards_for(reporter_account) if r.reason is RewardReason.SLASH_REPORTER]
    assert [(r.height, r.amount, r.ref) for r in paid] == [(4, share, key)]
    assert reader.account(reporter_account).balance == balance_before - DEVNET.min_fee + share
    # after inclusion the state itself refuses the same fault again
    assert verify_evidence(DEVNET, reader, evidence_of(tx).evidence) is ErrorCode.DUPLICATE_EVIDENCE
    net.store.verify()


def test_a_double_vote_is_reported_once_and_a_forged_one_never(net: Net) -> None:
    chain, cheat, honest, reporter = net.chain, net.cheat, net.honest, net.reporter
    g = chain.tip_header()
    a, b = cheat.propose(chain, g), honest.propose(chain, g)  # two height-1 blocks, no fault
    assert chain.import_block(a) is AddBlockResult.NEW_TIP
    assert chain.import_block(b) in ADDED  # the new tip if its rank is lower, else a side block
    assert reporter.submitted == []
    assert chain.on_attestation(vote(cheat.key, 1, a.hash)) is None
    forged = dataclasses.replace(vote(cheat.key, 1, bytes(32)), block_hash=BlockHash(b"\x01" * 32))
    assert chain.on_attestation(forged) is ErrorCode.UNKNOWN_BLOCK  # a vote for a block never seen...
    assert reporter.submitted == []  # ...whose signature is not the cheat's: nothing to report
    unseen = vote(cheat.key, 1, b"\x02" * 32)  # signed by the cheat, for a block we do not have
    assert chain.on_attestation(unseen) is ErrorCode.UNKNOWN_BLOCK
    assert len(reporter.submitted) == 1
    proof = evidence_of(reporter.submitted[0]).evidence
    assert proof.kind is EvidenceKind.DOUBLE_ATTEST
    found = verify_evidence(DEVNET, chain.reader(), proof)
    assert found == (cheat.key.pubkey, evidence_key(EvidenceKind.DOUBLE_ATTEST, cheat.key.pubkey, 1))
    assert chain.on_attestation(vote(cheat.key, 1, b.hash)) is None  # a third vote: the same fault
    assert len(reporter.submitted) == 1
    assert chain.on_attestation(vote(honest.key, 1, b.hash)) is None  # one vote each: no fault
    assert len(reporter.submitted) == 1


async def test_an_unfunded_reporter_warns_once_and_reports_when_funded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = open_net(tmp_path, ("alice", "bob"))  # the validator accounts hold nothing
    try:
        chain, cheat, honest, reporter = n.chain, n.cheat, n.honest, n.reporter
        g = chain.tip_header()
        a = cheat.propose(chain, g)
        b = Block(resigned(a.header, cheat.key, timestamp_ms=TimestampMs(a.header.timestamp_ms + 1)), a.body)
        fund = make_tx(
            n.keys["alice"],
            DEVNET.chain_id,
            0,
            DEVNET.min_fee,
            Transfer(account_id(honest.key.pubkey), Amount(10**6)),
        )
        assert n.pool.add(fund, n.clock.now_ms()) == fund.id
        with caplog.at_level(logging.WARNING, logger="linguachaind.services.evidence"):
            async with reporting(n):
                assert chain.import_block(a) is AddBlockResult.NEW_TIP
                assert chain.import_block(b) in ADDED  # a twin: best or not by the hash tie-break
                assert chain.on_attestation(vote(cheat.key, 1, a.hash)) is None
                assert chain.on_attestation(vote(cheat.key, 1, b.hash)) is None
                assert reporter.submitted == []
                assert reporter.statistics()["waiting_for_funds"] == 2
                funding = [r for r in caplog.records if reporter.address in r.getMessage()]
                assert len(funding) == 1  # two faults, one warning naming the address to fund
                assert "min_fee" in funding[0].getMessage()
                grow(n, 3)  # heights 2, 3, 4: the TX block at 4 funds the reporter
                await trio.testing.wait_all_tasks_blocked()  # the reporter's task saw the new tip
        kinds = {evidence_of(tx).evidence.kind for tx in reporter.submitted}
        assert kinds == {EvidenceKind.DOUBLE_PROPOSAL, EvidenceKind.DOUBLE_ATTEST}
        assert [tx.nonce for tx in reporter.submitted] == [0, 1]
        assert all(n.pool.contains(tx.id) for tx in reporter.submitted)
        assert reporter.statistics()["waiting_for_funds"] == 0
        assert len(n.network.txs) == 2
    finally:
        close(n)


def test_memory_is_capped_and_the_highest_heights_kept(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evidence_module, "MAX_HEADERS", 8)
    chain, cheat, reporter = net.chain, net.cheat, net.reporter
    first = cheat.propose(chain, chain.tip_header()).header
    headers = {h: resigned(first, cheat.key, height=Height(h)) for h in range(1, 21)}
    for header in headers.values():
        reporter.saw_header(header, ErrorCode.ORPHAN)  # what import_block shows for an unknown parent
    assert reporter.statistics()["headers"] == 8
    stranger = SecretKey.from_label("not-a-validator")
    reporter.saw_header(resigned(first, stranger, proposer=stranger.pubkey), ErrorCode.ORPHAN)
    assert reporter.statistics()["headers"] == 8  # only validators' headers are kept
    reporter.saw_header(resigned(headers[1], cheat.key, timestamp_ms=TimestampMs(1)), ErrorCode.ORPHAN)
    assert reporter.submitted == []  # height 1 was dropped for the higher ones
    bad = dataclasses.replace(
        resigned(headers[20], cheat.key, timestamp_ms=TimestampMs(1)), signature=Signature(bytes(64))
    )
    reporter.saw_header(bad, ErrorCode.ORPHAN)
    assert reporter.submitted == []  # a forged second header proves nothing
    reporter.saw_header(resigned(headers[20], cheat.key, timestamp_ms=TimestampMs(1)), ErrorCode.ORPHAN)
    assert len(reporter.submitted) == 1


async def test_a_report_that_lost_the_race_is_dropped_and_does_not_block_the_account(tmp_path: Path) -> None:
    net = open_net(tmp_path, ("alice", "bob", "validator0", "validator1"), rival="alice")
    try:
        await race(net)
    finally:
        close(net)


async def race(net: Net) -> None:
    """Two reporters (the honest validator's and alice's) report one fault; one report wins."""
    chain, cheat, pool, rival = net.chain, net.cheat, net.pool, net.rival
    assert rival is not None
    g = chain.tip_header()
    a = cheat.propose(chain, g)
    b = Block(resigned(a.header, cheat.key, timestamp_ms=TimestampMs(a.header.timestamp_ms + 1)), a.body)
    async with reporting(net), trio.open_nursery() as nursery:
        await nursery.start(rival.run, chain)
        assert chain.import_block(a) is AddBlockResult.NEW_TIP
        assert chain.import_block(b) in ADDED  # a twin: best or not by the hash tie-break
        (ours,), (theirs,) = net.reporter.submitted, rival.submitted
        assert evidence_of(ours) == evidence_of(theirs)
        grow(net, 3)  # the TX block at 4 holds one report; the other one can never apply now
        included = net.store.get_block_at(4)
        assert included is not None
        assert isinstance(included.body, TxBody)
        assert included.body.txs == (ours,)
        await trio.testing.wait_all_tasks_blocked()
        assert not pool.contains(theirs.id)  # dropped, not left to hold alice's nonce for hours
        assert chain.on_attestation(vote(cheat.key, 4, included.hash)) is None  # a second fault
        assert chain.on_attestation(vote(cheat.key, 4, b"\x03" * 32)) is ErrorCode.UNKNOWN_BLOCK
        assert len(rival.submitted) == 2
        assert rival.submitted[1].nonce == 0  # not queued behind the dead report
        assert pool.contains(rival.submitted[1].id)
        nursery.cancel_scope.cancel()
