"""The JSON-RPC methods of ARCHITECTURE.md §5 over the node's back-ends (docs/rpc.md lists them).

Owns: each method's parameters, checks and result shape (amounts are integers in base units, hashes
and keys hex, accounts bech32m). Must not: reach into services directly: everything goes through
`RpcContext` and the Protocols of `linguachaind.backends`. A method whose back-end is not wired
answers NOT_AVAILABLE_YET; a missing object answers NOT_FOUND.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chain.address import AddressError, decode_address, encode_address
from chain.block import Block
from chain.codec import decode
from chain.crypto import account_id
from chain.errors import ErrorCode
from chain.genesis import Genesis
from chain.header import round_for_height
from chain.state.model import StateReader
from chain.tx import Tx
from chain.types import AccountId, Height, PubKey
from linguachaind import __version__
from linguachaind.backends import ChainBackend, MempoolBackend, PeerBackend, ProducerBackend
from linguachaind.config import NodeConfig
from linguachaind.rpc.errors import RpcError, RpcErrorCode, not_available, rejected
from linguachaind.rpc.server import Method, Param
from linguachaind.rpc.views import block_json, header_json, to_json, tx_json


@dataclass
class RpcContext:
    """What the methods can see. Mutable on purpose: the node fills in back-ends as services start."""

    config: NodeConfig
    genesis: Genesis
    genesis_hash: bytes
    request_stop: Callable[[], None]
    validator_pubkey: PubKey | None = None
    chain: ChainBackend | None = None
    mempool: MempoolBackend | None = None
    p2p: PeerBackend | None = None
    producer: ProducerBackend | None = None
    set_mock_time: Callable[[int], None] | None = None
    is_synced: Callable[[], bool] = lambda: True
    started_at: float = field(default_factory=time.time)
    warming_up: bool = True  # the node is still starting services; set False once all run

    @property
    def hrp(self) -> str:
        return self.genesis.hrp


def _missing(ctx: RpcContext, method: str, backend: str) -> RpcError:
    """WARMING_UP while the node is still starting its services, NOT_AVAILABLE_YET after."""
    if ctx.warming_up:
        return RpcError(RpcErrorCode.WARMING_UP, f"{method}: the {backend} is still starting, retry shortly")
    return not_available(method, backend)


def _need_chain(ctx: RpcContext, method: str) -> ChainBackend:
    if ctx.chain is None:
        raise _missing(ctx, method, "chain store")
    return ctx.chain


def _parse_hash(text: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise RpcError(RpcErrorCode.INVALID_PARAMS, f"{what} must be 64 hex characters") from None
    if len(raw) != 32:
        raise RpcError(RpcErrorCode.INVALID_PARAMS, f"{what} must be 32 bytes (64 hex characters)")
    return raw


def _parse_address(ctx: RpcContext, text: str) -> AccountId:
    try:
        return decode_address(text, ctx.hrp)
    except AddressError as exc:
        raise RpcError(RpcErrorCode.INVALID_PARAMS, str(exc)) from None


def _find_block(chain: ChainBackend, ref: str | int) -> Block:
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit() and len(ref) < 20):
        height = int(ref)
        block = chain.block_at(height) if height >= 0 else None
        if block is None:
            raise RpcError(RpcErrorCode.NOT_FOUND, f"no block at height {height} on the best chain")
        return block
    block = chain.block_by_hash(_parse_hash(ref, "block hash"))
    if block is None:
        raise RpcError(RpcErrorCode.NOT_FOUND, f"block {ref} not found")
    return block


def _staked_by(reader: StateReader, account: AccountId) -> tuple[int, int, list[dict[str, Any]]]:
    """(bonded, unbonding, per-validator list) of the stakes `account` owns."""
    bonded = unbonding = 0
    stakes: list[dict[str, Any]] = []
    for v in reader.validators():
        rec = reader.stake(account, v.pubkey)
        if rec is None:
            continue
        ub = sum(u.amount for u in rec.unbonding)
        bonded += rec.amount
        unbonding += ub
        stakes.append(
            {
                "validator_pubkey": v.pubkey.hex(),
                "amount": rec.amount,
                "mature_height": rec.mature_height,
                "unbonding": [
                    {"amount": u.amount, "release_height": u.release_height} for u in rec.unbonding
                ],
            }
        )
    return bonded, unbonding, stakes


def build_methods(ctx: RpcContext) -> list[Method]:
    hrp = ctx.hrp

    async def getnodeinfo() -> dict[str, Any]:
        return {
            "version": __version__,
            "network": ctx.config.network,
            "chain_id": ctx.genesis.params.chain_id,
            "genesis_hash": ctx.genesis_hash.hex(),
            "peer_id": ctx.p2p.peer_id if ctx.p2p is not None else None,
            "listen_addrs": ctx.p2p.listen_addrs() if ctx.p2p is not None else [],
            "gossip": ctx.p2p.gossip_stats() if ctx.p2p is not None else None,
            "validator_pubkey": ctx.validator_pubkey.hex() if ctx.validator_pubkey is not None else None,
            "validator": ctx.config.validator,
            "min_fee": ctx.genesis.params.min_fee,
            "hrp": ctx.hrp,
            "datadir": str(ctx.config.datadir),
            "ready": not ctx.warming_up,
            "uptime_s": int(time.time() - ctx.started_at),
        }

    async def getblockchaininfo() -> dict[str, Any]:
        chain = _need_chain(ctx, "getblockchaininfo")
        tip = chain.tip_header()
        final_height = chain.final_height()
        final = chain.block_at(final_height)
        model = chain.reader().model_version()
        return {
            "network": ctx.config.network,
            "chain_id": ctx.genesis.params.chain_id,
            "genesis_hash": ctx.genesis_hash.hex(),
            "height": tip.height,
            "best_hash": tip.hash.hex(),
            "best_kind": tip.kind.name.lower(),
            "best_timestamp_ms": tip.timestamp_ms,
            "final_height": final_height,
            "final_hash": final.hash.hex() if final is not None else None,
            "round": round_for_height(tip.height),
            "model_version": model.version,
            "synced": ctx.is_synced(),
        }

    async def getblock(block: str | int, verbosity: int = 1) -> dict[str, Any]:
        chain = _need_chain(ctx, "getblock")
        b = _find_block(chain, block)
        return block_json(b, hrp, final=b.header.height <= chain.final_height(), verbose=verbosity >= 1)

    async def getblockhash(height: int) -> str:
        chain = _need_chain(ctx, "getblockhash")
        b = chain.block_at(height) if height >= 0 else None
        if b is None:
            raise RpcError(RpcErrorCode.NOT_FOUND, f"no block at height {height} on the best chain")
        return b.hash.hex()

    async def getblockheader(block: str | int) -> dict[str, Any]:
        chain = _need_chain(ctx, "getblockheader")
        return header_json(_find_block(chain, block).header, hrp)

    async def gettransaction(txid: str) -> dict[str, Any]:
        raw_id = _parse_hash(txid, "txid")
        chain = _need_chain(ctx, "gettransaction")
        loc = chain.find_tx(raw_id)
        if loc is not None:
            out = tx_json(loc.tx, hrp)
            tip = chain.tip_header().height
            out.update(
                status="confirmed",
                block_hash=loc.block_hash.hex(),
                height=loc.height,
                confirmations=tip - loc.height + 1,
                final=loc.height <= chain.final_height(),
            )
            return out
        if ctx.mempool is not None:
            tx = ctx.mempool.get(raw_id)
            if tx is not None:
                out = tx_json(tx, hrp)
                out.update(status="pending", block_hash=None, height=None, confirmations=0, final=False)
                return out
        raise RpcError(RpcErrorCode.NOT_FOUND, f"transaction {txid} not found")

    async def getaccount(address: str) -> dict[str, Any]:
        account = _parse_address(ctx, address)
        chain = _need_chain(ctx, "getaccount")
        reader = chain.reader()
        acc = reader.account(account)
        bonded, unbonding, stakes = _staked_by(reader, account)
        pending = ctx.mempool.pending_nonce(account) if ctx.mempool is not None else None
        return {
            "address": encode_address(account, hrp),
            "balance": acc.balance,
            "nonce": acc.nonce,
            "next_nonce": max(acc.nonce, pending) if pending is not None else acc.nonce,
            "staked": bonded,
            "unbonding": unbonding,
            "stakes": stakes,
            "height": reader.height,
        }

    async def sendrawtransaction(hex: str) -> str:
        try:
            raw = bytes.fromhex(hex)
        except ValueError:
            raise RpcError(RpcErrorCode.INVALID_PARAMS, "hex must be the hex encoding of a tx") from None
        tx = decode(Tx, raw, max_bytes=ctx.genesis.params.max_tx_bytes)
        if isinstance(tx, ErrorCode):
            raise rejected(tx, "tx does not decode")
        if tx.chain_id != ctx.genesis.params.chain_id:
            raise rejected(ErrorCode.WRONG_CHAIN, "tx is for another chain")
        if not tx.signature_valid():
            raise rejected(ErrorCode.BAD_SIGNATURE, "tx signature")
        if ctx.mempool is None:
            raise _missing(ctx, "sendrawtransaction", "mempool")
        result = await ctx.mempool.submit(raw)
        if isinstance(result, ErrorCode):
            raise rejected(result, "tx refused")
        return result.hex()

    async def getmempoolinfo() -> dict[str, Any]:
        if ctx.mempool is None:
            raise _missing(ctx, "getmempoolinfo", "mempool")
        return ctx.mempool.info()

    async def getrawmempool(verbose: bool = False) -> list[Any]:
        if ctx.mempool is None:
            raise _missing(ctx, "getrawmempool", "mempool")
        ids = ctx.mempool.txids()
        if not verbose:
            return [i.hex() for i in ids]
        out = []
        for i in ids:
            tx = ctx.mempool.get(i)
            if tx is not None:
                out.append(tx_json(tx, hrp))
        return out

    async def getpeerinfo() -> list[dict[str, Any]]:
        if ctx.p2p is None:
            raise _missing(ctx, "getpeerinfo", "p2p network")
        return [
            {"peer_id": p.peer_id, "addrs": p.addrs, "height": p.height, "score": p.score, **p.extra}
            for p in ctx.p2p.peers()
        ]

    async def addpeer(addr: str) -> dict[str, Any]:
        if ctx.p2p is None:
            raise _missing(ctx, "addpeer", "p2p network")
        if "/p2p/" not in addr:
            raise RpcError(RpcErrorCode.INVALID_PARAMS, "addr must be a multiaddr ending in /p2p/<peer id>")
        try:
            await ctx.p2p.add_peer(addr)
        except (OSError, ValueError) as exc:
            raise RpcError(RpcErrorCode.REJECTED, f"cannot connect to {addr}: {exc}") from None
        return {"added": addr}

    async def disconnectpeer(peer_id: str) -> dict[str, Any]:
        if ctx.p2p is None:
            raise _missing(ctx, "disconnectpeer", "p2p network")
        if not await ctx.p2p.disconnect_peer(peer_id):
            raise RpcError(RpcErrorCode.NOT_FOUND, f"not connected to {peer_id}")
        return {"disconnected": peer_id}

    def _validator_json(reader: StateReader, pubkey: bytes) -> dict[str, Any] | None:
        rec = reader.validator(PubKey(pubkey))
        if rec is None:
            return None
        next_height = Height(reader.height + 1)
        eligible = reader.eligible_stake(PubKey(pubkey), next_height)
        return {
            "validator_pubkey": rec.pubkey.hex(),
            "address": encode_address(account_id(rec.pubkey), hrp),
            "stake_total": rec.stake_total,
            "eligible_stake": eligible,
            "eligible": eligible >= reader.params.min_stake and rec.jailed_until <= next_height,
            "reputation": rec.reputation,
            "jailed_until": rec.jailed_until,
            "last_proposed": rec.last_proposed,
        }

    async def getvalidators() -> list[dict[str, Any]]:
        reader = _need_chain(ctx, "getvalidators").reader()
        out = [_validator_json(reader, v.pubkey) for v in reader.validators()]
        return sorted((v for v in out if v is not None), key=lambda v: -int(v["stake_total"]))

    async def getstakinginfo(address: str | None = None) -> dict[str, Any]:
        reader = _need_chain(ctx, "getstakinginfo").reader()
        total = sum(v.stake_total for v in reader.validators())
        out: dict[str, Any] = {
            "height": reader.height,
            "total_stake": total,
            "min_stake": reader.params.min_stake,
            "unbonding_blocks": reader.params.unbonding_blocks,
            "stake_maturity_blocks": reader.params.stake_maturity_blocks,
            "validator_count": len(reader.validators()),
            "node_validator": None,
        }
        if ctx.validator_pubkey is not None:
            out["node_validator"] = _validator_json(reader, ctx.validator_pubkey) or {
                "validator_pubkey": ctx.validator_pubkey.hex(),
                "stake_total": 0,
                "eligible": False,
            }
        if ctx.producer is not None:
            out["producer"] = ctx.producer.statistics()
        if address is not None:
            account = _parse_address(ctx, address)
            bonded, unbonding, stakes = _staked_by(reader, account)
            out["account"] = {
                "address": encode_address(account, hrp),
                "staked": bonded,
                "unbonding": unbonding,
                "stakes": stakes,
            }
        return out

    async def getmodelinfo() -> dict[str, Any]:
        reader = _need_chain(ctx, "getmodelinfo").reader()
        out: dict[str, Any] = to_json(reader.model_version(), hrp)
        out["base_model"] = to_json(ctx.genesis.base_model, hrp)
        out["lora_rank"] = ctx.genesis.params.lora_rank
        out["aggregation_rule"] = ctx.genesis.params.aggregation_rule.name.lower()
        return out

    async def getversionhistory() -> list[Any]:
        raise not_available("getversionhistory", "version history index (federated-learning issue)")

    async def gettraininginfo() -> dict[str, Any]:
        raise not_available("gettraininginfo", "training supervisor")

    async def submitdataunit(path: str) -> dict[str, Any]:
        raise not_available("submitdataunit", "blob store and data units")

    async def getblob(blob_hash: str) -> dict[str, Any]:
        raise not_available("getblob", "blob store")

    async def explainrewards(target: str | int) -> dict[str, Any]:
        """Every coin minted, moved or burned by rule (PROTOCOL §5, §8) for an address or a height."""
        chain = _need_chain(ctx, "explainrewards")
        if isinstance(target, int) or target.isdigit():
            height = int(target)
            if chain.block_at(height) is None:
                raise RpcError(RpcErrorCode.NOT_FOUND, f"no block at height {height} on the best chain")
            records = chain.rewards_at(height)
            head: dict[str, Any] = {"height": height}
        else:
            account = _parse_address(ctx, target)
            records = chain.rewards_for(account)
            head = {"address": encode_address(account, hrp)}
        return {
            **head,
            "total": sum(r.amount for r in records),
            "rewards": [to_json(r, hrp) for r in records],
        }

    async def stop() -> str:
        ctx.request_stop()
        return "linguachaind stopping"

    async def uptime() -> int:
        return int(time.time() - ctx.started_at)

    async def generate(n: int = 1) -> list[str]:
        if not 1 <= n <= 1000:
            raise RpcError(RpcErrorCode.INVALID_PARAMS, "n must be in 1..1000")
        if ctx.producer is None:
            raise not_available("generate", "block producer")
        return await ctx.producer.generate(n)

    async def setmocktime(timestamp_ms: int) -> int:
        if ctx.set_mock_time is None:
            raise not_available("setmocktime", "mock clock")
        if timestamp_ms < 0:
            raise RpcError(RpcErrorCode.INVALID_PARAMS, "timestamp_ms must be >= 0 (0 = real time)")
        ctx.set_mock_time(timestamp_ms)
        return timestamp_ms

    methods = [
        Method("getnodeinfo", getnodeinfo, help="peer id, listen addresses, validator key, version"),
        Method("getblockchaininfo", getblockchaininfo, help="height, best and final block, round, model"),
        Method("getblock", getblock, (Param("block", (str, int)), Param("verbosity", (int,), 1)), "a block"),
        Method("getblockhash", getblockhash, (Param("height", (int,)),), "hash of the best-chain block"),
        Method("getblockheader", getblockheader, (Param("block", (str, int)),), "a header"),
        Method("gettransaction", gettransaction, (Param("txid", (str,)),), "a tx, confirmed or pending"),
        Method("getaccount", getaccount, (Param("address", (str,)),), "balance, nonce, stake"),
        Method("sendrawtransaction", sendrawtransaction, (Param("hex", (str,)),), "submit a signed tx"),
        Method("getmempoolinfo", getmempoolinfo, help="mempool statistics"),
        Method("getrawmempool", getrawmempool, (Param("verbose", (bool,), False),), "pending tx ids"),
        Method("getpeerinfo", getpeerinfo, help="connected peers"),
        Method("addpeer", addpeer, (Param("addr", (str,)),), "connect to a multiaddr"),
        Method("disconnectpeer", disconnectpeer, (Param("peer_id", (str,)),), "drop a peer"),
        Method("getstakinginfo", getstakinginfo, (Param("address", (str,), None),), "stake overview"),
        Method("getvalidators", getvalidators, help="validator set"),
        Method("getmodelinfo", getmodelinfo, help="current global model version"),
        Method("getversionhistory", getversionhistory, help="model version history"),
        Method("gettraininginfo", gettraininginfo, help="local training status"),
        Method("submitdataunit", submitdataunit, (Param("path", (str,)),), "submit test data"),
        Method("getblob", getblob, (Param("blob_hash", (str,)),), "a blob by hash"),
        Method(
            "explainrewards",
            explainrewards,
            (Param("target", (str, int)),),
            "rewards of an address or height",
        ),
        Method("stop", stop, help="stop the daemon"),
        Method("uptime", uptime, help="seconds since start"),
        Method(
            "generate", generate, (Param("n", (int,), 1),), "devnet: produce blocks now", devnet_only=True
        ),
        Method(
            "setmocktime",
            setmocktime,
            (Param("timestamp_ms", (int,)),),
            "devnet: fix the clock",
            devnet_only=True,
        ),
    ]

    async def help_() -> list[dict[str, Any]]:
        return [
            {
                "method": m.name,
                "params": [p.name for p in m.params],
                "help": m.help,
                "devnet_only": m.devnet_only,
            }
            for m in methods
        ]

    methods.append(Method("help", help_, help="this list"))
    return methods
