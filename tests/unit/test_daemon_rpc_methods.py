"""Unit tests of the RPC methods over a real block store and mempool (no daemon, no network):
result shapes that scripts rely on, and the error code of each refusal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chain.address import address_of
from chain.codec import encode
from chain.crypto import account_id
from chain.genesis import Genesis, parse_genesis
from chain.store.blockstore import BlockStore
from chain.tx import Transfer, make_tx
from chain.types import Amount, ChainId
from linguachaind.config import build_config
from linguachaind.devgenesis import dev_account_key, dev_validator_key, devnet_genesis_doc
from linguachaind.parts import Parts
from linguachaind.rpc.errors import RpcError, RpcErrorCode
from linguachaind.rpc.methods import RpcContext, build_methods
from linguachaind.services.submit import TxSubmitter
from mempool.config import MempoolConfig
from mempool.mempool import Mempool
from tests.support.doubles import FakeClock


@pytest.fixture
def genesis() -> Genesis:
    return parse_genesis(devnet_genesis_doc(2, 3, timestamp_ms=1_700_000_000_000))


@pytest.fixture
def ctx(tmp_path: Path, genesis: Genesis) -> Iterator[RpcContext]:
    (tmp_path / "linguachain.toml").write_text('network = "devnet"\n')
    config = build_config({"datadir": str(tmp_path)}, {})
    store = BlockStore.open(tmp_path / "chain", genesis)

    clock = FakeClock(int(time.time() * 1000))
    pool = Mempool.open(
        tmp_path / "mempool", genesis.params, MempoolConfig(), reader=store.reader(), now_ms=clock.now_ms()
    )
    stopped: list[bool] = []
    c = RpcContext(
        config=config,
        genesis=genesis,
        genesis_hash=bytes(store.genesis_hash),
        request_stop=lambda: stopped.append(True),
        parts=Parts(store=store, mempool=pool, txs=TxSubmitter(pool, clock)),
        now_ms=clock.now_ms,
        validator_pubkey=dev_validator_key(0).pubkey,
        warming_up=False,
    )
    yield c
    pool.close()
    store.close()


async def call(ctx: RpcContext, name: str, *args: Any) -> Any:
    method = {m.name: m for m in build_methods(ctx)}[name]
    return await method.fn(*args)


async def code_of(ctx: RpcContext, name: str, *args: Any) -> tuple[RpcErrorCode, Any]:
    with pytest.raises(RpcError) as exc:
        await call(ctx, name, *args)
    return exc.value.code, exc.value.data


async def test_blockchain_and_node_info(ctx: RpcContext) -> None:
    info = await call(ctx, "getblockchaininfo")
    for key in ("network", "height", "best_hash", "final_height", "round", "model_version", "synced"):
        assert key in info
    assert (info["network"], info["height"], info["final_height"], info["round"]) == ("devnet", 0, 0, 0)
    node = await call(ctx, "getnodeinfo")
    for key in ("peer_id", "listen_addrs", "validator_pubkey", "version"):
        assert key in node
    assert node["validator_pubkey"] == dev_validator_key(0).pubkey.hex()
    block = await call(ctx, "getblock", 0)
    assert block["hash"] == info["best_hash"] == await call(ctx, "getblockhash", 0)
    assert (await call(ctx, "getblock", block["hash"]))["height"] == 0
    assert await code_of(ctx, "getblock", 5) == (RpcErrorCode.NOT_FOUND, None)
    assert (await code_of(ctx, "getblock", "zz"))[0] == RpcErrorCode.INVALID_PARAMS


async def test_account_validators_and_staking(ctx: RpcContext) -> None:
    addr = address_of(dev_account_key(0).pubkey, "rlc")
    acct = await call(ctx, "getaccount", addr)
    assert acct["address"] == addr
    assert acct["balance"] == 1_000_000 * 10**8
    assert (acct["nonce"], acct["staked"]) == (0, 0)
    val_addr = address_of(dev_validator_key(1).pubkey, "rlc")
    assert (await call(ctx, "getaccount", val_addr))["staked"] == 1_000 * 10**8
    assert (await code_of(ctx, "getaccount", "rlc1notanaddress"))[0] == RpcErrorCode.INVALID_PARAMS
    testnet_addr = address_of(dev_account_key(0).pubkey, "tlc")
    assert (await code_of(ctx, "getaccount", testnet_addr))[0] == RpcErrorCode.INVALID_PARAMS
    vals = await call(ctx, "getvalidators")
    assert len(vals) == 2
    assert all(v["eligible"] for v in vals)
    staking = await call(ctx, "getstakinginfo", val_addr)
    assert staking["node_validator"]["validator_pubkey"] == dev_validator_key(0).pubkey.hex()
    assert staking["account"]["staked"] == 1_000 * 10**8


async def test_sendrawtransaction_and_mempool(ctx: RpcContext, genesis: Genesis) -> None:
    key = dev_account_key(0)
    to = dev_account_key(1).pubkey
    tx = make_tx(key, genesis.params.chain_id, 0, 10_000, Transfer(account_id(to), Amount(5 * 10**8)))
    txid = await call(ctx, "sendrawtransaction", encode(tx).hex())
    assert txid == tx.id.hex()
    assert await call(ctx, "getrawmempool") == [txid]
    pending = await call(ctx, "gettransaction", txid)
    assert pending["status"] == "pending"
    assert pending["payload"]["to"] == address_of(to, "rlc")
    assert (await call(ctx, "getaccount", address_of(key.pubkey, "rlc")))["next_nonce"] == 1
    assert (await call(ctx, "getmempoolinfo"))["size"] == 1
    # Refusals carry the chain's reason code.
    code, data = await code_of(ctx, "sendrawtransaction", encode(tx).hex())
    assert code == RpcErrorCode.REJECTED
    assert data["reason"] == "ALREADY_KNOWN"
    other = make_tx(key, ChainId("lc-testnet-1"), 1, 10_000, Transfer(account_id(to), Amount(1)))
    code, data = await code_of(ctx, "sendrawtransaction", encode(other).hex())
    assert (code, data["reason"]) == (RpcErrorCode.REJECTED, "WRONG_CHAIN")
    code, data = await code_of(ctx, "sendrawtransaction", "00ff")
    assert code == RpcErrorCode.REJECTED
    assert (await code_of(ctx, "sendrawtransaction", "xyz"))[0] == RpcErrorCode.INVALID_PARAMS
    assert (await code_of(ctx, "gettransaction", "00" * 32))[0] == RpcErrorCode.NOT_FOUND


async def test_explainrewards(ctx: RpcContext) -> None:
    addr = address_of(dev_account_key(0).pubkey, "rlc")
    assert await call(ctx, "explainrewards", addr) == {"address": addr, "total": 0, "rewards": []}
    assert (await call(ctx, "explainrewards", 0))["height"] == 0
    assert (await code_of(ctx, "explainrewards", "7"))[0] == RpcErrorCode.NOT_FOUND


async def test_not_available_and_stop(ctx: RpcContext) -> None:
    assert (await code_of(ctx, "getpeerinfo"))[0] == RpcErrorCode.NOT_AVAILABLE_YET
    info = await call(ctx, "gettraininginfo")  # no base model or trainer in this context
    assert (info["trainer"], info["worker"], info["base_model_available"]) == (None, None, False)
    assert (await code_of(ctx, "starttraining"))[0] == RpcErrorCode.NOT_AVAILABLE_YET
    assert (await code_of(ctx, "generatetext", "1+1="))[0] == RpcErrorCode.NOT_AVAILABLE_YET
    assert (await code_of(ctx, "exportmodel", "relative/dir"))[0] == RpcErrorCode.INVALID_PARAMS
    ctx.warming_up = True
    assert (await code_of(ctx, "getpeerinfo"))[0] == RpcErrorCode.WARMING_UP
    assert await call(ctx, "stop") == "linguachaind stopping"
    names = {m["method"] for m in await call(ctx, "help")}
    for required in ("getnodeinfo", "getblockchaininfo", "getblock", "getaccount", "getpeerinfo", "stop"):
        assert required in names
