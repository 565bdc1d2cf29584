"""Opening and starting the components the node wires: chain store, mempool, chain service, p2p and
the consensus services (ARCHITECTURE.md §1, §4).

Owns: the glue between `Node` and each component's constructor, what each exposes to RPC and
metrics, and two small node tasks (draining p2p's inbound channel, mempool expiry). Must not: hold
the start/stop order (node.py calls these in order and stops services in reverse) or implement
component logic.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

import trio

from chain.genesis import Genesis
from linguachaind.logsetup import adopt_library_logger, event

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from linguachaind.node import Node

log = logging.getLogger(__name__)

MEMPOOL_EXPIRY_INTERVAL_S: Final = 60.0


def genesis_hash(genesis: Genesis) -> bytes:
    """The chain identity before the store is open: the genesis document's id (the store refines it)."""
    return bytes(genesis.id)


async def open_chain(node: Node) -> None:
    """Open the block store (creating the genesis block on first start) and expose it to RPC."""
    from chain.store.blockstore import BlockStore
    from linguachaind.adapters import StoreChain

    assert node.genesis is not None
    assert node.ctx is not None
    store = BlockStore.open(node.layout.chain, node.genesis)
    node.add_closer("chain", store.close)
    node.parts.store = store
    node.ctx.genesis_hash = bytes(store.genesis_hash)
    node.ctx.chain = StoreChain(store)
    tip_hash, tip_height = store.tip
    log.info(
        "%s", event("chain_opened", height=tip_height, best=tip_hash.hex()[:16], final=store.final_height)
    )
    node.metrics.gauge("height", "height of the best block", lambda: float(store.tip[1]))
    node.metrics.gauge("final_height", "height of the last final block", lambda: float(store.final_height))


async def open_mempool(node: Node) -> None:
    """Open the mempool on its own LevelDB (re-validated against the tip), then the chain service."""
    from linguachaind.adapters import PoolAdapter
    from linguachaind.services.chain_service import ChainService
    from mempool.config import MempoolConfig
    from mempool.mempool import Mempool

    store = node.parts.store
    assert store is not None
    assert node.ctx is not None
    pool = Mempool.open(
        node.layout.mempool, store.params, MempoolConfig(), reader=store.reader(), now_ms=node.clock.now_ms()
    )
    node.add_closer("mempool", pool.close)
    node.parts.mempool = pool
    adapter = PoolAdapter(pool, node.clock.now_ms)
    node.parts.mempool_rpc = adapter
    node.ctx.mempool = adapter
    log.info("%s", event("mempool_opened", size=len(pool)))
    node.metrics.gauge("mempool_size", "txs in the mempool", lambda: float(len(pool)))
    node.parts.chain = ChainService(store, node.clock, mempool=pool)


async def start_p2p(node: Node, nursery: trio.Nursery) -> None:
    """The libp2p host, gossip, sync and blob protocols; its checks are the chain's and mempool's."""
    from linguachaind.adapters import PeersAdapter
    from linguachaind.glue import ChainBlockSink, NodeGossipValidator, P2PNetwork, StoreChainSource
    from linguachaind.services.vdf_service import VdfService
    from p2p.blobstore import FileBlobStore
    from p2p.host import HostConfig
    from p2p.service import P2PConfig, P2PService

    adopt_library_logger("libp2p")
    assert node.ctx is not None
    config = node.config
    store, chain, pool = node.parts.store, node.parts.chain, node.parts.mempool
    assert store is not None
    assert chain is not None
    assert pool is not None
    network = P2PNetwork()
    node.parts.network = network
    compute_vdf = config.validator or config.timelord
    vdf = VdfService(store.params, network, compute=compute_vdf)
    node.parts.vdf = vdf
    validator = NodeGossipValidator(chain, pool, vdf, node.clock.now_ms)
    p2p_config = P2PConfig(
        keys_dir=node.layout.keys,
        host=HostConfig(listen_addrs=config.listen, enable_mdns=config.mdns),
        bootstrap=config.bootstrap,
    )
    service = P2PService(
        p2p_config, store.params, validator, StoreChainSource(store), ChainBlockSink(chain),
        FileBlobStore(node.layout.blobs),
    )  # fmt: skip
    node.parts.p2p = service
    await node.start_service(nursery, "p2p", service.run)
    network.service = service
    assert node.parts.mempool_rpc is not None
    node.parts.mempool_rpc.relay = network.publish_tx
    node.ctx.p2p = PeersAdapter(service)
    node.ctx.is_synced = lambda: not service.sync_status().syncing
    node.metrics.gauge("peers", "connected peers", lambda: float(len(service.peers())))
    await node.start_service(nursery, "gossip-drain", _drain(service))
    await node.start_service(nursery, "vote-reannounce", _reannounce_votes(service, chain))


def _drain(service: Any) -> Any:
    """Inbound gossip was already acted on by the validators (import = validation): just drain it."""

    async def run(*, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for _ in service.inbound:
            pass

    return run


def _reannounce_votes(service: Any, chain: Any) -> Any:
    """Each new peer is sent the votes we hold for unfinalised blocks: the ones gossiped while it was
    apart never reach it otherwise (libp2p drops a re-publish of anything it saw in the last
    120 s), and fork choice weighs them (PROTOCOL §4.4)."""
    from chain.codec import encode
    from p2p.messages.gossip import GossipKind

    async def send(peer_id: str) -> None:
        votes = [encode(att) for att in chain.unfinalised_votes()]
        if not votes:
            return
        try:
            sent = await service.reannounce(peer_id, GossipKind.ATTESTATION, votes)
        except Exception:
            log.warning("re-sending votes to %s failed", peer_id, exc_info=True)
            return
        log.debug("re-sent %d of %d unfinalised votes to %s", sent, len(votes), peer_id)

    async def run(*, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        events = service.open_events()
        task_status.started()
        async with trio.open_nursery() as nursery:
            async for event in events:
                if event.connected:
                    nursery.start_soon(send, event.peer_id)

    return run


async def start_services(node: Node, nursery: trio.Nursery) -> None:
    """Chain service retries, VDF service, then (validators) attester, producer and evidence reporter;
    mempool expiry."""
    from linguachaind.adapters import ProducerStats
    from linguachaind.services.attester import Attester
    from linguachaind.services.evidence import EvidenceReporter
    from linguachaind.services.producer import Producer, always_synced
    from linguachaind.slashing_protection import SlashingProtection

    assert node.ctx is not None
    chain, vdf, network, pool = node.parts.chain, node.parts.vdf, node.parts.network, node.parts.mempool
    assert chain is not None
    assert vdf is not None
    assert network is not None
    assert pool is not None
    follow = chain if (node.config.validator or node.config.timelord) else None
    # Retries blocks that arrived slightly early (FUTURE_BLOCK) and orphans whose parent came later.
    await node.start_service(nursery, "chain", chain.run)

    async def run_vdf(*, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await vdf.run(tip=follow, task_status=task_status)

    await node.start_service(nursery, "vdf", run_vdf)
    attester = producer = None
    if node.config.validator and node.validator_key is not None:
        key = node.validator_key
        protection = SlashingProtection.open(node.layout.slashing_protection, key.pubkey)
        node.add_closer("slashing_protection", protection.close)
        attester = Attester(chain, key, protection, network)
        p2p = node.parts.p2p
        synced = always_synced
        if p2p is not None:

            def synced() -> bool:
                return not p2p.sync_status().syncing

        producer = Producer(chain, vdf, key, protection, node.clock, network, mempool=pool, synced=synced)
        reporter = EvidenceReporter(chain, key, pool, node.clock, network)
        node.parts.attester, node.parts.producer = attester, producer
        await node.start_service(nursery, "attester", attester.run)
        await node.start_service(nursery, "producer", producer.run)
        await node.start_service(nursery, "evidence", reporter.run)
        log.info("%s", event("validator_started", pubkey=key.pubkey.hex()[:16]))
    node.ctx.producer = ProducerStats(chain, vdf, producer, attester)
    await node.start_service(nursery, "mempool-expiry", _expire(node, pool))


def _expire(node: Node, pool: Any) -> Any:
    async def run(*, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(MEMPOOL_EXPIRY_INTERVAL_S)
            dropped = pool.expire(node.clock.now_ms())
            if dropped:
                log.info("%s", event("mempool_expired", count=dropped))

    return run
