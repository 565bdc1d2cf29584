"""The learning RPC methods over a real block store, blob store and mempool: `submitdataunit` stores
the blob and sends a DATA_UNIT tx the mempool admits, refuses a bad file by line; `getversionhistory`
and `explainrewards` by unit id answer from the state (docs/rpc.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chain.genesis import Genesis, parse_genesis
from chain.hashing import H
from chain.state.learning import VersionEntry
from chain.store.blockstore import BlockStore
from chain.types import BlobHash, Hash32, Height, Round
from linguachaind.config import build_config
from linguachaind.devgenesis import dev_account_key, devnet_genesis_doc
from linguachaind.parts import Parts
from linguachaind.rpc.errors import RpcError, RpcErrorCode
from linguachaind.rpc.methods import RpcContext, build_methods
from linguachaind.rpc.views import version_entry_json
from linguachaind.services.datablocks import DataBlocks
from linguachaind.services.submit import TxSubmitter
from mempool.config import MempoolConfig
from mempool.mempool import Mempool
from p2p.blobstore import FileBlobStore
from tests.support.doubles import FakeClock


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[RpcContext]:
    genesis: Genesis = parse_genesis(devnet_genesis_doc(1, 2, timestamp_ms=1_700_000_000_000))
    (tmp_path / "linguachain.toml").write_text('network = "devnet"\n')
    config = build_config({"datadir": str(tmp_path)}, {})
    store = BlockStore.open(tmp_path / "chain", genesis)
    clock = FakeClock(int(time.time() * 1000))
    data = DataBlocks(genesis.params, store, FileBlobStore(tmp_path / "blobs"))
    pool = Mempool.open(
        tmp_path / "mempool",
        genesis.params,
        MempoolConfig(),
        reader=store.reader(),
        now_ms=clock.now_ms(),
        unit_check=data.unit_blob_problem,
    )
    c = RpcContext(
        config=config,
        genesis=genesis,
        genesis_hash=bytes(store.genesis_hash),
        request_stop=lambda: None,
        parts=Parts(store=store, mempool=pool, txs=TxSubmitter(pool, clock), data=data),
        now_ms=clock.now_ms,
        unit_key=dev_account_key(0),
        warming_up=False,
    )
    yield c
    pool.close()
    store.close()


async def call(ctx: RpcContext, name: str, *args: Any) -> Any:
    method = {m.name: m for m in build_methods(ctx)}[name]
    return await method.fn(*args)


async def error_of(ctx: RpcContext, name: str, *args: Any) -> RpcError:
    with pytest.raises(RpcError) as exc:
        await call(ctx, name, *args)
    return exc.value


async def test_submitdataunit_stores_the_blob_and_the_mempool_admits_the_unit(
    ctx: RpcContext, tmp_path: Path
) -> None:
    path = tmp_path / "test.jsonl"
    lines = [json.dumps({"prompt": f"Question {i}?", "completion": f" Answer number {i}."}) for i in range(5)]
    path.write_text("\n".join(lines) + "\n")
    out = await call(ctx, "submitdataunit", str(path))
    assert (out["n_examples"], out["byte_size"], out["format"]) == (
        5,
        path.stat().st_size,
        "jsonl_prompt_completion",
    )
    assert out["blob_hash"] == H(path.read_bytes()).hex()
    assert ctx.parts.data is not None
    assert ctx.parts.data.blobs.read(BlobHash(H(path.read_bytes()))) == path.read_bytes()
    assert ctx.parts.mempool is not None
    assert ctx.parts.mempool.contains(bytes.fromhex(out["tx_id"]))  # type: ignore[arg-type]
    unit_tx = ctx.parts.mempool.get_unit(bytes.fromhex(out["unit_id"]))  # type: ignore[arg-type]
    assert unit_tx is not None


async def test_submitdataunit_refuses_a_bad_file_by_line(ctx: RpcContext, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a fine example line"}\n{"text": 3}\n')
    error = await error_of(ctx, "submitdataunit", str(path))
    assert error.code == RpcErrorCode.INVALID_PARAMS
    assert "line 2" in str(error)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"text": "a fine example line"}\n{"prompt": "p", "completion": "c"}\n')
    assert (await error_of(ctx, "submitdataunit", str(mixed))).code == RpcErrorCode.INVALID_PARAMS
    missing = await error_of(ctx, "submitdataunit", str(tmp_path / "nope.jsonl"))
    assert missing.code == RpcErrorCode.INVALID_PARAMS


async def test_version_history_and_unit_rewards(ctx: RpcContext) -> None:
    assert await call(ctx, "getversionhistory") == []
    info = await call(ctx, "getmodelinfo")
    assert (info["version"], info["rounds"]) == (0, None)
    unknown = await error_of(ctx, "explainrewards", "ab" * 32)
    assert unknown.code == RpcErrorCode.NOT_FOUND
    entry = VersionEntry(
        2, Hash32(H(b"v")), Height(9), Round(2), BlobHash(H(b"a")), 3, 1_900_000, 2_000_000, False
    )
    assert version_entry_json(entry) == {
        "version": 2,
        "height": 9,
        "round": 2,
        "adapter_hash": H(b"a").hex(),
        "units": 3,
        "score_micro": 1_900_000,
        "previous_score_micro": 2_000_000,
        "noop": False,
    }
