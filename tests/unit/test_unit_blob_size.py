"""A unit's blob length must equal its declared `byte_size`, in consensus (finding 9 of issue 10).

The mempool (`DataBlocks.unit_blob_problem`) refuses such a unit, but a proposer whose mempool
skips the check can still register it in a TX block (the transition cannot see blobs). Then: a DATA
body that selects it is refused on import with BLOB_SIZE_MISMATCH (permanent), and every node's
VERSION aggregation excludes a learning unit whose blob has another length as MALFORMED.
Real block store, blob store, mempools, chain service and producer; the real transition.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import trio

from chain.block import Block, DataBody, QualityReport, UnitWeight
from chain.consensus.aggregation import aggregate
from chain.consensus.duties import proposal_duty
from chain.crypto import SecretKey
from chain.errors import ErrorCode
from chain.header import BlockKind
from chain.lora import lora_layout, update_blob
from chain.params import DEVNET
from chain.store.blockstore import BlockStore
from chain.tx import make_tx
from chain.types import Hash32
from chain.units import DataFormat, DataUnit
from linguachaind.services.chain_service import AddBlockResult, ChainService
from linguachaind.services.datablocks import DataBlocks, store_data_unit
from linguachaind.services.producer import Producer
from linguachaind.services.roundinputs import inputs_for, unit_update
from linguachaind.slashing_protection import SlashingProtection
from mempool import DEFAULT_CONFIG, Mempool
from p2p.blobstore import FileBlobStore
from tests.support.chainbuilders import GENESIS_TIME_MS, MemChain, dev_genesis, mine_learning_unit
from tests.support.doubles import FakeClock, NullNetwork
from tests.support.services_support import NoVdf, vdf_for

TEXTS = [
    "The river runs past the old mill every spring.",
    "A small bird sang on the fence at dawn today.",
    "Numbers add up when you count them twice, slowly.",
    "The library opens at nine and closes at five.",
]


def _propose(tmp: Path, chain: ChainService, pool: Mempool, data: DataBlocks, key: SecretKey) -> Block:
    protection = SlashingProtection.open(tmp / f"sp-{len(list(tmp.iterdir()))}", key.pubkey)
    clock = chain.clock
    prod = Producer(chain, NoVdf(), key, protection, clock, NullNetwork(), mempool=pool, data_blocks=data)
    parent = chain.tip_header()
    state = chain.state(parent.hash)
    assert state is not None
    duty = proposal_duty(DEVNET, parent, state, vdf_for(parent)[0], key.pubkey)
    assert duty is not None
    block = prod.assemble(parent, duty, *vdf_for(parent))
    assert block is not None
    return block


def test_a_data_body_selecting_a_unit_with_a_wrong_length_blob_is_refused(tmp_path: Path) -> None:
    clock = FakeClock(GENESIS_TIME_MS + 100_000)
    genesis, keys = dev_genesis(1, funded=("alice",))
    store = BlockStore.open(tmp_path / "chain", genesis)
    blobs = FileBlobStore(tmp_path / "blobs")
    data_blocks = DataBlocks(DEVNET, store, blobs)
    pools = [
        Mempool.open(
            tmp_path / name, DEVNET, config=DEFAULT_CONFIG, reader=store.reader(), now_ms=0, unit_check=check
        )
        for name, check in (("honest-pool", data_blocks.unit_blob_problem), ("lax-pool", None))
    ]
    honest, lax = pools
    chain = ChainService(store, clock, mempool=honest)
    key, alice = keys["validator0"], keys["alice"]
    try:
        data = b"".join(json.dumps({"text": t}).encode() + b"\n" for t in TEXTS)
        unit = trio.run(store_data_unit, DEVNET, blobs, alice, data, DataFormat.JSONL_TEXT, clock.now_ms())
        assert isinstance(unit, DataUnit)
        lying = dataclasses.replace(unit, byte_size=len(data) + 1).mined(DEVNET)
        tx = make_tx(alice, DEVNET.chain_id, 0, 1_000_000, lying)
        assert honest.add(tx, clock.now_ms()) is ErrorCode.BAD_UNIT  # the mempool's check
        assert lax.add(tx, clock.now_ms()) == tx.id
        tx_block = _propose(tmp_path, chain, lax, data_blocks, key)
        assert chain.import_block(tx_block) is AddBlockResult.NEW_TIP
        parent = chain.state(tx_block.header.hash)
        assert parent is not None
        assert parent.unit(lying.id) is not None  # registered: the transition cannot see blobs
        clock.advance(1_000)
        block = _propose(tmp_path, chain, honest, data_blocks, key)
        assert block.header.kind == BlockKind.DATA
        assert isinstance(block.body, DataBody)
        assert block.body.unit_ids == ()  # the honest DATA proposer never selects it
        cheat = dataclasses.replace(block, body=dataclasses.replace(block.body, unit_ids=(lying.id,)))
        assert data_blocks.check(cheat, parent) is ErrorCode.BLOB_SIZE_MISMATCH
        assert not ErrorCode.BLOB_SIZE_MISMATCH.is_transient  # the sender is penalised
    finally:
        for pool in pools:
            pool.close()
        store.close()


def test_a_learning_unit_with_a_wrong_length_blob_is_excluded_as_malformed() -> None:
    params = dataclasses.replace(DEVNET, version_lag_rounds=2, max_staleness=1)
    chain = MemChain(*dev_genesis(funded=("alice",), params=params))
    layout = lora_layout([("model.layers.0.self_attn.q_proj", 16, 16)], params)
    blob = update_blob({s.name: np.ones(s.shape, dtype=np.int32) for s in layout.exchanged()})
    unit = mine_learning_unit(params, chain.keys["alice"], chain.state.model_version().version_id, 5)
    chain.add_txs([chain.tx("alice", unit)])
    chain.add(DataBody((), QualityReport(0, 0, 0, 0, 0, 0, 0, Hash32(bytes(32)))))
    chain.skip_to(BlockKind.VERSION)
    inputs = inputs_for(params, chain.state, 2)
    assert inputs is not None
    (candidate,) = inputs.candidates
    assert candidate.byte_size == unit.byte_size == 4096  # recorded by the transition
    shapes = {s.name: s.shape for s in layout.exchanged()}
    right = unit_update(dataclasses.replace(candidate, byte_size=len(blob)), blob, layout)
    wrong = unit_update(dataclasses.replace(candidate, byte_size=len(blob) + 1), blob, layout)
    assert aggregate(params, [right], shapes).included == (UnitWeight(unit.id, 5000),)
    agg = aggregate(params, [wrong], shapes)  # the same blob parses, but is not the declared size
    assert agg.included == ()
    assert [(e.unit_id, e.reason.name) for e in agg.excluded] == [(unit.id, "MALFORMED")]
