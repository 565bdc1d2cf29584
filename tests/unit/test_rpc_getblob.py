"""`getblob` over a real block store and blob store: a held blob by hash, in pieces of at most
GETBLOB_MAX_BYTES, NOT_FOUND for one not held, INVALID_PARAMS for a bad hash or range (docs/rpc.md)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chain.genesis import parse_genesis
from chain.hashing import H
from chain.store.blockstore import BlockStore
from linguachaind.config import build_config
from linguachaind.devgenesis import devnet_genesis_doc
from linguachaind.parts import Parts
from linguachaind.rpc.errors import RpcError, RpcErrorCode
from linguachaind.rpc.methods import GETBLOB_MAX_BYTES, RpcContext, build_methods
from linguachaind.services.datablocks import DataBlocks
from p2p.blobstore import FileBlobStore


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[RpcContext]:
    genesis = parse_genesis(devnet_genesis_doc(1, 2, timestamp_ms=1_700_000_000_000))
    (tmp_path / "linguachain.toml").write_text('network = "devnet"\n')
    store = BlockStore.open(tmp_path / "chain", genesis)
    data = DataBlocks(genesis.params, store, FileBlobStore(tmp_path / "blobs"))
    yield RpcContext(
        config=build_config({"datadir": str(tmp_path)}, {}),
        genesis=genesis,
        genesis_hash=bytes(store.genesis_hash),
        request_stop=lambda: None,
        parts=Parts(store=store, data=data),
        now_ms=lambda: int(time.time() * 1000),
        warming_up=False,
    )
    store.close()


async def getblob(ctx: RpcContext, *args: Any) -> Any:
    method = {m.name: m for m in build_methods(ctx)}["getblob"]
    return await method.fn(*args)


async def test_a_held_blob_comes_back_in_pieces(ctx: RpcContext) -> None:
    assert ctx.parts.data is not None
    data = os.urandom(GETBLOB_MAX_BYTES + 1000)
    blob_hash = await ctx.parts.data.blobs.put_bytes(data)
    first = await getblob(ctx, blob_hash.hex())
    assert (first["size"], first["offset"], first["length"], first["complete"]) == (
        len(data),
        0,
        GETBLOB_MAX_BYTES,
        False,
    )
    rest = await getblob(ctx, blob_hash.hex(), GETBLOB_MAX_BYTES)
    assert (rest["length"], rest["complete"]) == (1000, True)
    whole = bytes.fromhex(first["hex"]) + bytes.fromhex(rest["hex"])
    assert whole == data
    assert H(whole).hex() == blob_hash.hex()
    small = await getblob(ctx, blob_hash.hex(), 10, 5)
    assert bytes.fromhex(small["hex"]) == data[10:15]


async def test_a_blob_not_held_or_a_bad_request_is_a_clear_error(ctx: RpcContext) -> None:
    for args, code in (
        ((H(b"never stored").hex(),), RpcErrorCode.NOT_FOUND),
        (("zz",), RpcErrorCode.INVALID_PARAMS),
        ((H(b"x").hex()[:10],), RpcErrorCode.INVALID_PARAMS),
        ((H(b"x").hex(), 0, GETBLOB_MAX_BYTES + 1), RpcErrorCode.INVALID_PARAMS),
        ((H(b"x").hex(), -1), RpcErrorCode.INVALID_PARAMS),
    ):
        with pytest.raises(RpcError) as exc:
            await getblob(ctx, *args)
        assert exc.value.code == code, args
    assert ctx.parts.data is not None
    blob_hash = await ctx.parts.data.blobs.put_bytes(b"short")
    with pytest.raises(RpcError) as exc:
        await getblob(ctx, blob_hash.hex(), 6)  # past its end
    assert exc.value.code == RpcErrorCode.NOT_FOUND
    empty_tail = await getblob(ctx, blob_hash.hex(), 5)  # at its end: nothing left, complete
    assert (empty_tail["length"], empty_tail["complete"]) == (0, True)
