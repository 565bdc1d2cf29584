"""The node's components: one typed name per object, filled in start order (ARCHITECTURE.md §1).

Owns: `Parts`, which the node fills as it starts (linguachaind.node) and the RPC methods read
(`RpcContext.parts`); a part not started yet is None. Must not: start, stop or wire anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chain.store.blockstore import BlockStore
    from linguachaind.services.attester import Attester
    from linguachaind.services.chain_service import ChainService
    from linguachaind.services.datablocks import DataBlocks
    from linguachaind.services.evidence import EvidenceReporter
    from linguachaind.services.producer import Producer
    from linguachaind.services.rounds import RoundsService
    from linguachaind.services.submit import TxSubmitter
    from linguachaind.services.trainer import Trainer
    from linguachaind.services.vdf_service import VdfService
    from linguachaind.services.worker import LazyWorker
    from mempool.mempool import Mempool
    from p2p.blobstore import FileBlobStore
    from p2p.service import P2PService


@dataclass
class Parts:
    """In start order. `chain` is the chain service (the store's one writer); `store` the block store
    it writes; `p2p` the network layer (the services publish through `glue.Outbound` over it, which
    the node keeps to itself); `txs` the one way a tx is submitted."""

    store: BlockStore | None = None
    blobs: FileBlobStore | None = None
    data: DataBlocks | None = None
    mempool: Mempool | None = None
    txs: TxSubmitter | None = None
    worker: LazyWorker | None = None
    rounds: RoundsService | None = None
    evidence: EvidenceReporter | None = None  # validators only; the chain service's watcher
    chain: ChainService | None = None
    vdf: VdfService | None = None
    p2p: P2PService | None = None
    attester: Attester | None = None
    producer: Producer | None = None
    trainer: Trainer | None = None  # nodes with `train_data` only
