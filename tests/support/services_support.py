"""Helpers of the consensus-service tests: one validator node's services on a real store in a tmp dir.

Owns: `ServiceStack` (store, chain service, VDF service with a real prover process, producer, attester,
slashing protection, optional real mempool with the evidence reporter) and `run_stack`; `Validator`
(one validator's producer and attester over a shared chain service, called directly, with the VDF
computed in-process by `vdf_for`); `learning_producer` and `propose_on_tip` (a producer with DATA and
VERSION proposers, honest or tampered, driven one block at a time); `two_validators` (a chain service
with two validators ordered by their rank at height 1).
Must not: mock the store, the VDF or the signatures.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

import vdf
from chain.block import Block
from chain.consensus.duties import ProposalDuty, proposal_duty
from chain.consensus.election import challenge_for_child
from chain.crypto import SecretKey
from chain.genesis import Genesis
from chain.header import Header
from chain.params import DEVNET
from chain.store.blockstore import BlockStore
from linguachaind.services.attester import Attester
from linguachaind.services.chain_service import ChainService
from linguachaind.services.evidence import EvidenceReporter
from linguachaind.services.interfaces import Clock, MempoolLike, Network, TxPublisher
from linguachaind.services.producer import (
    DataBodySource,
    Producer,
    VersionBodySource,
    always_synced,
    no_peer_final,
)
from linguachaind.services.submit import TxSubmitter
from linguachaind.services.vdf_service import VdfService
from linguachaind.slashing_protection import SlashingProtection
from mempool import DEFAULT_CONFIG, Mempool
from tests.support.chainbuilders import GENESIS_TIME_MS, dev_genesis
from tests.support.doubles import FakeClock, NullNetwork


@dataclass
class ServiceStack:
    store: BlockStore
    chain: ChainService
    vdf: VdfService
    producer: Producer
    attester: Attester
    protection: SlashingProtection
    network: Network
    mempool: Mempool | None
    reporter: EvidenceReporter | None = None
    txs: TxSubmitter | None = None
    tx_network: TxPublisher | None = None  # where `txs` publishes (run_stack)

    def close(self) -> None:
        if self.mempool is not None:
            self.mempool.close()
        self.protection.close()
        self.store.close()


def open_stack(
    datadir: Path,
    genesis: Genesis,
    key: SecretKey,
    clock: Clock,
    *,
    with_mempool: bool = False,
    network: Network | None = None,
    tx_network: TxPublisher | None = None,
    synced: Callable[[], bool] = always_synced,
    peer_final: Callable[[], tuple[int, bytes] | None] = no_peer_final,
) -> ServiceStack:
    """The services of one validator node; `network` defaults to a `NullNetwork` that records. With
    a mempool the node also runs the evidence reporter (publishing on `tx_network`). `synced` and
    `peer_final` are the producer's gates (what the syncer tells it in the daemon)."""
    store = BlockStore.open(datadir / "chain", genesis)
    mempool = (
        Mempool.open(
            datadir / "mempool",
            genesis.params,
            config=DEFAULT_CONFIG,
            reader=store.reader(),
            now_ms=clock.now_ms(),
        )
        if with_mempool
        else None
    )
    network = network if network is not None else NullNetwork()
    txs, reporter = None, None
    if mempool is not None:  # the reporter submits its txs through the node's one submitter
        txs = TxSubmitter(mempool, clock)
        reporter = EvidenceReporter(store, key, mempool, txs)  # built first, a watcher of the chain
    chain = ChainService(store, clock, mempool=mempool, watchers=(reporter,) if reporter is not None else ())
    vdf = VdfService(genesis.params, headers=chain)
    protection = SlashingProtection.open(datadir / "slashing", key.pubkey)
    producer = Producer(
        chain, vdf, key, protection, clock, network, mempool=mempool, synced=synced, peer_final=peer_final
    )
    attester = Attester(chain, key, protection, network)
    return ServiceStack(
        store, chain, vdf, producer, attester, protection, network, mempool, reporter, txs, tx_network
    )


@asynccontextmanager
async def run_stack(stack: ServiceStack) -> AsyncIterator[trio.Nursery]:
    """Run the VDF service, producer, attester (and reporter); cancelled (prover killed) on exit."""
    async with trio.open_nursery() as nursery:
        if stack.reporter is not None and stack.txs is not None:
            await nursery.start(stack.txs.run, stack.tx_network or NullNetwork())
            await nursery.start(stack.reporter.run, stack.chain)
        await nursery.start(functools.partial(stack.vdf.run, network=stack.network))
        await nursery.start(stack.attester.run)
        await nursery.start(stack.producer.run)
        yield nursery
        nursery.cancel_scope.cancel()


class Validator:
    """One validator's producer and attester over a shared chain service (no loops: called directly)."""

    def __init__(
        self,
        tmp: Path,
        name: str,
        key: SecretKey,
        chain: ChainService,
        clock: Clock,
        *,
        mempool: MempoolLike | None = None,
    ) -> None:
        self.key = key
        self.sp_path = tmp / f"sp-{name}"
        self.protection = SlashingProtection.open(self.sp_path, key.pubkey)
        self.producer = Producer(chain, NoVdf(), key, self.protection, clock, NullNetwork(), mempool=mempool)
        self.attester = Attester(chain, key, self.protection, NullNetwork())

    def duty(self, chain: ChainService, parent: Header) -> ProposalDuty:
        y, _ = vdf_for(parent)
        state = chain.state(parent.hash)
        assert state is not None
        duty = proposal_duty(chain.params, parent, state, y, self.key.pubkey)
        assert duty is not None
        return duty

    def propose(self, chain: ChainService, parent: Header) -> Block:
        block = self.producer.assemble(parent, self.duty(chain, parent), *vdf_for(parent))
        assert block is not None
        return block


@contextmanager
def two_validators(tmp: Path) -> Iterator[tuple[Genesis, ChainService, FakeClock, list[Validator]]]:
    """A two-validator devnet chain service on a real store, its clock past every rank's time, and
    the validators sorted by rank at height 1 (`[leader, backup]`); closed on exit."""
    genesis, keys = dev_genesis(2)
    clock = FakeClock(GENESIS_TIME_MS + 100_000)  # every rank's time has come
    store = BlockStore.open(tmp / "chain", genesis)
    chain = ChainService(store, clock)
    vals = [Validator(tmp, f"v{i}", keys[f"validator{i}"], chain, clock) for i in range(2)]
    parent = chain.tip_header()
    vals.sort(key=lambda v: v.duty(chain, parent).rank)  # vals[0] leads height 1, vals[1] is its backup
    try:
        yield genesis, chain, clock, vals
    finally:
        for v in vals:
            v.protection.close()
        store.close()


def learning_producer(
    tmp: Path,
    name: str,
    key: SecretKey,
    chain: ChainService,
    pool: MempoolLike,
    clock: Clock,
    *,
    data_blocks: DataBodySource | None = None,
    versions: VersionBodySource | None = None,
) -> Producer:
    """A producer over `chain` and `pool` whose DATA and VERSION bodies come from `data_blocks` and
    `versions` (the node's services, or a test's tampered proposer); no VDF service: drive it with
    `propose_on_tip`."""
    protection = SlashingProtection.open(tmp / f"sp-{name}", key.pubkey)
    return Producer(
        chain,
        NoVdf(),
        key,
        protection,
        clock,
        NullNetwork(),
        mempool=pool,
        data_blocks=data_blocks,
        versions=versions,
    )


def propose_on_tip(prod: Producer, chain: ChainService, key: SecretKey) -> Block:
    """`prod`'s signed block on `chain`'s tip at `key`'s rank (the VDF computed in-process)."""
    parent = chain.tip_header()
    state = chain.state(parent.hash)
    assert state is not None
    duty = proposal_duty(chain.params, parent, state, vdf_for(parent)[0], key.pubkey)
    assert duty is not None
    block = prod.assemble(parent, duty, *vdf_for(parent))
    assert block is not None
    return block


class NoVdf:
    async def get(self, prev_hash: bytes) -> tuple[bytes, bytes]:
        raise AssertionError("not used: the tests call assemble() directly")


def vdf_for(parent: Header) -> tuple[bytes, bytes]:
    """The devnet VDF of `parent`'s child, computed in-process (cached by parent)."""
    return _vdf_cached(parent)


_VDF_CACHE: dict[bytes, tuple[bytes, bytes]] = {}


def _vdf_cached(parent: Header) -> tuple[bytes, bytes]:
    found = _VDF_CACHE.get(parent.hash)
    if found is None:
        challenge = challenge_for_child(DEVNET.chain_id, parent)
        found = vdf.prove(challenge, DEVNET.vdf_discriminant_bits, DEVNET.vdf_iterations)
        _VDF_CACHE[parent.hash] = found
    return found
