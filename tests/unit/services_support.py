"""Helpers of the consensus-service tests: one validator node's services on a real store in a tmp dir.

Owns: `ServiceStack` (store, chain service, VDF service with a real prover process, producer, attester,
slashing protection, optional real mempool) and `run_stack`. Must not: mock the store, the VDF or the
signatures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from chain.crypto import SecretKey
from chain.genesis import Genesis
from chain.store.blockstore import BlockStore
from linguachaind.services.attester import Attester
from linguachaind.services.chain_service import ChainService
from linguachaind.services.interfaces import Clock, Network, NullNetwork
from linguachaind.services.producer import Producer
from linguachaind.services.vdf_service import VdfService
from linguachaind.slashing_protection import SlashingProtection
from mempool import DEFAULT_CONFIG, Mempool


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
) -> ServiceStack:
    """The services of one validator node; `network` defaults to a `NullNetwork` that records."""
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
    chain = ChainService(store, clock, mempool=mempool)
    vdf = VdfService(genesis.params, network)
    protection = SlashingProtection.open(datadir / "slashing", key.pubkey)
    producer = Producer(chain, vdf, key, protection, clock, network, mempool=mempool)
    attester = Attester(chain, key, protection, network)
    return ServiceStack(store, chain, vdf, producer, attester, protection, network, mempool)


@asynccontextmanager
async def run_stack(stack: ServiceStack) -> AsyncIterator[trio.Nursery]:
    """Run the VDF service, producer and attester; cancelled (prover killed) on exit."""
    async with trio.open_nursery() as nursery:
        await nursery.start(stack.vdf.run)
        await nursery.start(stack.attester.run)
        await nursery.start(stack.producer.run)
        yield nursery
        nursery.cancel_scope.cancel()
