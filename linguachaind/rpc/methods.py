"""The JSON-RPC methods of ARCHITECTURE.md §5 (docs/rpc.md lists them): one function per method and
the route table `ROUTES`.

Owns: each method's parameters, checks and result (amounts are integers in base units, hashes and
keys hex, accounts bech32m; JSON shaping of component statistics is in `rpc.views`). Methods read
the node's real components through `RpcContext.parts` (`linguachaind.parts.Parts`); a part not
started yet answers WARMING_UP while the node starts and NOT_AVAILABLE_YET after; a missing object
answers NOT_FOUND. Must not: hold node state or check txs (the mempool does, behind `submit_tx`).
Adding a method: write `async def name(ctx, ...)` and add a `Route` to `ROUTES`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from chain.address import AddressError, decode_address, encode_address
from chain.block import Block, DataBody, TxBody, VersionBody
from chain.codec import encode
from chain.consensus.slashing import accused, evidence_key
from chain.crypto import SecretKey, account_id
from chain.errors import ErrorCode
from chain.examples import parse_line, split_lines
from chain.genesis import Genesis
from chain.header import round_for_height
from chain.state import learning
from chain.state.model import ModelVersion, RewardReason, RewardRecord, StateReader
from chain.store.blockstore import BlockStore
from chain.tx import SlashEvidence, Tx, make_tx
from chain.types import AccountId, BlobHash, Height, PubKey, TxId, UnitId
from chain.units import DataFormat
from linguachaind import __version__
from linguachaind.config import NodeConfig
from linguachaind.parts import Parts
from linguachaind.rpc.errors import RpcError, RpcErrorCode, not_available, rejected
from linguachaind.rpc.server import Method, Param
from linguachaind.rpc.views import (
    block_json,
    header_json,
    mempool_json,
    peer_json,
    producer_json,
    to_json,
    tx_json,
    version_entry_json,
)
from linguachaind.services.datablocks import store_data_unit
from linguachaind.services.submit import TxSubmitter
from linguachaind.services.trainer import Trainer
from mempool.mempool import Mempool
from p2p.service import P2PService
from training import protocol as wp
from training.supervisor import JobFailed, TrainingSupervisor


@dataclass
class RpcContext:
    """What the methods can see. `parts` fills in as the node starts its components."""

    config: NodeConfig
    genesis: Genesis
    genesis_hash: bytes
    request_stop: Callable[[], None]
    parts: Parts = field(default_factory=Parts)
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000)
    validator_pubkey: PubKey | None = None
    set_mock_time: Callable[[int], None] | None = None
    unit_key: SecretKey | None = None  # signs `submitdataunit`'s tx (the validator key, if any)
    started_at: float = field(default_factory=time.time)
    warming_up: bool = True  # the node is still starting services; set False once all run

    @property
    def hrp(self) -> str:
        return self.genesis.hrp


# -- reaching the parts -------------------------------------------------------------------------


def _missing(ctx: RpcContext, method: str, part: str) -> RpcError:
    """WARMING_UP while the node is still starting its services, NOT_AVAILABLE_YET after."""
    if ctx.warming_up:
        return RpcError(RpcErrorCode.WARMING_UP, f"{method}: the {part} is still starting, retry shortly")
    return not_available(method, part)


def _store(ctx: RpcContext, method: str) -> BlockStore:
    if ctx.parts.store is None:
        raise _missing(ctx, method, "chain store")
    return ctx.parts.store


def _mempool(ctx: RpcContext, method: str) -> Mempool:
    if ctx.parts.mempool is None:
        raise _missing(ctx, method, "mempool")
    return ctx.parts.mempool


def _txs(ctx: RpcContext, method: str) -> TxSubmitter:
    if ctx.parts.txs is None:
        raise _missing(ctx, method, "tx submitter")
    return ctx.parts.txs


def _p2p(ctx: RpcContext, method: str) -> P2PService:
    if ctx.parts.p2p is None:
        raise _missing(ctx, method, "p2p network")
    return ctx.parts.p2p


# -- parameters and lookups ---------------------------------------------------------------------


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


def _block_at(store: BlockStore, height: int) -> Block:
    block = store.get_block_at(height) if height >= 0 else None
    if block is None:
        raise RpcError(RpcErrorCode.NOT_FOUND, f"no block at height {height} on the best chain")
    return block


def _find_block(store: BlockStore, ref: str | int) -> Block:
    if isinstance(ref, int) or (ref.isdigit() and len(ref) < 20):
        return _block_at(store, int(ref))
    block = store.get_block(_parse_hash(ref, "block hash"))
    if block is None:
        raise RpcError(RpcErrorCode.NOT_FOUND, f"block {ref} not found")
    return block


def _confirmed_tx(store: BlockStore, txid: bytes) -> tuple[Tx, Block] | None:
    """A tx in a main-chain block, with its block."""
    found = store.find_tx(txid)
    if found is None:
        return None
    block_hash, pos = found
    block = store.get_block(block_hash)
    if block is None or not isinstance(block.body, TxBody) or pos >= len(block.body.txs):
        return None
    return block.body.txs[pos], block


def _tip_height(store: BlockStore) -> int:
    return int(store.tip[1])


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


def _validator_json(reader: StateReader, pubkey: bytes, hrp: str) -> dict[str, Any] | None:
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


# -- node --------------------------------------------------------------------------------------


async def getnodeinfo(ctx: RpcContext) -> dict[str, Any]:
    p2p = ctx.parts.p2p
    return {
        "version": __version__,
        "network": ctx.config.network,
        "chain_id": ctx.genesis.params.chain_id,
        "genesis_hash": ctx.genesis_hash.hex(),
        "peer_id": str(p2p.peer_id) if p2p is not None else None,
        "listen_addrs": p2p.listen_addrs() if p2p is not None else [],
        "gossip": _gossip_stats(p2p) if p2p is not None else None,
        "validator_pubkey": ctx.validator_pubkey.hex() if ctx.validator_pubkey is not None else None,
        "validator": ctx.config.validator,
        "min_fee": ctx.genesis.params.min_fee,
        "hrp": ctx.hrp,
        "datadir": str(ctx.config.datadir),
        "ready": not ctx.warming_up,
        "uptime_s": int(time.time() - ctx.started_at),
    }


def _gossip_stats(p2p: P2PService) -> dict[str, int]:
    return dict(dataclasses.asdict(p2p.statistics().gossip))


async def stop(ctx: RpcContext) -> str:
    ctx.request_stop()
    return "linguachaind stopping"


async def uptime(ctx: RpcContext) -> int:
    return int(time.time() - ctx.started_at)


async def setmocktime(ctx: RpcContext, timestamp_ms: int) -> int:
    if ctx.set_mock_time is None:
        raise not_available("setmocktime", "mock clock")
    if not 0 <= timestamp_ms <= 4_102_444_800_000:  # 2100-01-01: slot times overflow beyond
        raise RpcError(
            RpcErrorCode.INVALID_PARAMS,
            "timestamp_ms must be in 0..4102444800000 (0 = real time; at most 2100-01-01)",
        )
    ctx.set_mock_time(timestamp_ms)
    return timestamp_ms


# -- chain -------------------------------------------------------------------------------------


def _sync_progress(height: int, p2p: P2PService | None) -> float:
    """Our height over the best height the syncer has seen from peers (1.0 = caught up), like
    bitcoind's `verificationprogress`; 1.0 without peers that are ahead."""
    target = p2p.sync_status().target_height if p2p is not None else 0
    return 1.0 if target <= height or target <= 0 else round(height / target, 6)


async def getblockchaininfo(ctx: RpcContext) -> dict[str, Any]:
    store = _store(ctx, "getblockchaininfo")
    tip = store.get_header(store.tip[0])
    assert tip is not None, "the store checks its tip at open"
    final_height = int(store.final_height)
    final = store.get_block_at(final_height)
    p2p = ctx.parts.p2p
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
        "model_version": store.reader().model_version().version,
        "synced": p2p is None or not p2p.sync_status().syncing,
        "sync_progress": _sync_progress(tip.height, p2p),
    }


async def getblock(ctx: RpcContext, block: str | int, verbosity: int = 1) -> dict[str, Any]:
    store = _store(ctx, "getblock")
    b = _find_block(store, block)
    final = b.header.height <= store.final_height
    return block_json(b, ctx.hrp, final=final, verbose=verbosity >= 1)


async def getblockhash(ctx: RpcContext, height: int) -> str:
    return _block_at(_store(ctx, "getblockhash"), height).hash.hex()


async def getblockheader(ctx: RpcContext, block: str | int) -> dict[str, Any]:
    return header_json(_find_block(_store(ctx, "getblockheader"), block).header, ctx.hrp)


async def gettransaction(ctx: RpcContext, txid: str) -> dict[str, Any]:
    raw_id = _parse_hash(txid, "txid")
    store = _store(ctx, "gettransaction")
    confirmed = _confirmed_tx(store, raw_id)
    if confirmed is not None:
        tx, block = confirmed
        out = tx_json(tx, ctx.hrp)
        out.update(
            status="confirmed",
            block_hash=block.hash.hex(),
            height=block.height,
            confirmations=_tip_height(store) - block.height + 1,
            final=block.height <= store.final_height,
        )
        return out
    pending = ctx.parts.mempool.get(TxId(raw_id)) if ctx.parts.mempool is not None else None
    if pending is None:
        raise RpcError(RpcErrorCode.NOT_FOUND, f"transaction {txid} not found")
    out = tx_json(pending, ctx.hrp)
    out.update(status="pending", block_hash=None, height=None, confirmations=0, final=False)
    return out


async def getaccount(ctx: RpcContext, address: str) -> dict[str, Any]:
    account = _parse_address(ctx, address)
    reader = _store(ctx, "getaccount").reader()
    acc = reader.account(account)
    bonded, unbonding, stakes = _staked_by(reader, account)
    pool = ctx.parts.mempool
    return {
        "address": encode_address(account, ctx.hrp),
        "balance": acc.balance,
        "nonce": acc.nonce,
        "next_nonce": max(acc.nonce, pool.next_nonce(account)) if pool is not None else acc.nonce,
        "staked": bonded,
        "unbonding": unbonding,
        "stakes": stakes,
        "height": reader.height,
    }


async def explainrewards(ctx: RpcContext, target: str | int) -> dict[str, Any]:
    """Every coin minted, moved or burned by rule (PROTOCOL §5, §8) for an address, a height or a
    unit id (64 hex: what its author was paid when a DATA or VERSION block used it)."""
    store = _store(ctx, "explainrewards")
    if isinstance(target, int) or target.isdigit():
        height = _block_at(store, int(target)).height
        records = store.rewards_at(height)
        head: dict[str, Any] = {"height": height}
    elif len(target) == 64 and all(c in "0123456789abcdef" for c in target.lower()):
        unit_id = UnitId(bytes.fromhex(target))
        unit = store.reader().unit(unit_id)
        if unit is None:
            raise RpcError(RpcErrorCode.NOT_FOUND, f"no registered unit {target}")
        used = store.rewards_at(unit.used_height) if unit.used_height else []
        records = [r for r in used if bytes(r.ref) == bytes(unit_id)]
        head = {"unit_id": target.lower(), "kind": unit.kind.name.lower(), "used_height": unit.used_height}
        head.update(_unit_judgement(store, unit_id, unit.used_height))
    else:
        account = _parse_address(ctx, target)
        records = store.rewards_for(account)
        head = {"address": encode_address(account, ctx.hrp)}
    rewards = [to_json(r, ctx.hrp) for r in records]
    for record, out in zip(records, rewards, strict=True):
        if record.reason in (RewardReason.SLASH_BURN, RewardReason.SLASH_REPORTER):
            out["evidence"] = _slashed_fault(store, record)
    return {**head, "total": sum(r.amount for r in records), "rewards": rewards}


def _slashed_fault(store: BlockStore, record: RewardRecord) -> dict[str, Any] | None:
    """What a slash was for: the kind, validator and height of the SLASH_EVIDENCE tx in the block
    at `record.height` whose evidence key is the record's ref (None if that block is not stored)."""
    block = store.get_block_at(record.height)
    txs = block.body.txs if block is not None and isinstance(block.body, TxBody) else ()
    for tx in txs:
        if isinstance(tx.payload, SlashEvidence):
            evidence = tx.payload.evidence
            validator, height = accused(evidence)
            if bytes(evidence_key(evidence.kind, validator, height)) == bytes(record.ref):
                return {"kind": evidence.kind.name, "validator": validator.hex(), "height": height}
    return None


def _unit_judgement(store: BlockStore, unit_id: UnitId, used_height: int) -> dict[str, Any]:
    """Why a used unit's author got what it got (PROTOCOL §5.1, §5.2), from the block that used it:
    a data unit's `accepted_examples` (the data pool is split by them); a learning unit's aggregation
    `weight` and whether that version `improved` (only then is the learning pool paid), or the
    reason the rule `excluded` it (a reputation penalty when it is a fault)."""
    block = store.get_block_at(used_height) if used_height else None
    body = block.body if block is not None else None
    if isinstance(body, DataBody):
        counts = dict(zip((bytes(u) for u in body.unit_ids), body.accepted, strict=False))
        return {"accepted_examples": counts[bytes(unit_id)]} if bytes(unit_id) in counts else {}
    if isinstance(body, VersionBody):
        improved = body.total_score < body.previous_score
        for w in body.units:
            if bytes(w.unit_id) == bytes(unit_id):
                return {"weight": w.weight, "improved": improved}
        for e in body.excluded:
            if bytes(e.unit_id) == bytes(unit_id):
                return {"excluded": e.reason.name.lower(), "improved": improved}
    return {}


# -- txs and the mempool ------------------------------------------------------------------------


async def sendrawtransaction(ctx: RpcContext, hex: str) -> str:
    """Admit and publish (`TxSubmitter.submit_tx`); the mempool decodes and checks it, once."""
    try:
        raw = bytes.fromhex(hex)
    except ValueError:
        raise RpcError(RpcErrorCode.INVALID_PARAMS, "hex must be the hex encoding of a tx") from None
    result = _txs(ctx, "sendrawtransaction").submit_tx(raw)
    if isinstance(result, ErrorCode):
        error = rejected(result, "tx refused")
        if result is ErrorCode.INSUFFICIENT_BALANCE:
            _add_balance_figures(ctx, raw, error)
        raise error
    return result.hex()


def _add_balance_figures(ctx: RpcContext, raw: bytes, error: RpcError) -> None:
    """INSUFFICIENT_BALANCE with the figures an operator needs: the sender's confirmed balance versus
    amount plus fee (in `data`, base units, and in the message). Pending txs of the sender may be
    what spends the balance: `data.pending` counts them."""
    from chain.codec import decode

    tx = decode(Tx, raw)
    store = ctx.parts.store
    if isinstance(tx, ErrorCode) or store is None or error.data is None:
        return
    sender = account_id(tx.sender)
    account = store.reader().account(sender)
    balance, amount = int(account.balance), int(getattr(tx.payload, "amount", 0))
    pool = ctx.parts.mempool
    pending = pool.next_nonce(sender) - int(account.nonce) if pool is not None else 0
    error.data.update(balance=balance, amount=amount, fee=int(tx.fee), needed=amount + int(tx.fee))
    error.data["pending"] = max(0, pending)
    error.message = (
        f"tx refused: INSUFFICIENT_BALANCE: balance {balance} < amount {amount} + fee {int(tx.fee)}"
        " (base units)"
    )


async def getmempoolinfo(ctx: RpcContext) -> dict[str, Any]:
    pool = _mempool(ctx, "getmempoolinfo")
    return mempool_json(pool.statistics(ctx.now_ms()), pool.params.min_fee)


async def getrawmempool(ctx: RpcContext, verbose: bool = False) -> list[Any]:
    pool = _mempool(ctx, "getrawmempool")
    if not verbose:
        return [i.hex() for i in pool.ids()]
    return [tx_json(tx, ctx.hrp) for tx in (pool.get(i) for i in pool.ids()) if tx is not None]


# -- peers -------------------------------------------------------------------------------------


async def getpeerinfo(ctx: RpcContext) -> list[dict[str, Any]]:
    return [peer_json(p) for p in _p2p(ctx, "getpeerinfo").peers()]


async def addpeer(ctx: RpcContext, addr: str) -> dict[str, Any]:
    p2p = _p2p(ctx, "addpeer")
    if "/p2p/" not in addr:
        raise RpcError(RpcErrorCode.INVALID_PARAMS, "addr must be a multiaddr ending in /p2p/<peer id>")
    try:
        code = await p2p.add_peer(addr)
    except (OSError, ValueError) as exc:
        raise RpcError(RpcErrorCode.REJECTED, f"cannot connect to {addr}: {exc}") from None
    if code is not None:
        raise RpcError(RpcErrorCode.REJECTED, f"cannot connect to {addr}: {code.name} ({int(code)})")
    return {"added": addr}


async def disconnectpeer(ctx: RpcContext, peer_id: str) -> dict[str, Any]:
    p2p = _p2p(ctx, "disconnectpeer")
    if not any(p.peer_id == peer_id for p in p2p.peers()):
        raise RpcError(RpcErrorCode.NOT_FOUND, f"not connected to {peer_id}")
    p2p.disconnect_peer(peer_id)
    return {"disconnected": peer_id}


# -- staking -----------------------------------------------------------------------------------


async def getvalidators(ctx: RpcContext) -> list[dict[str, Any]]:
    reader = _store(ctx, "getvalidators").reader()
    out = [_validator_json(reader, v.pubkey, ctx.hrp) for v in reader.validators()]
    return sorted((v for v in out if v is not None), key=lambda v: -int(v["stake_total"]))


async def getstakinginfo(ctx: RpcContext, address: str | None = None) -> dict[str, Any]:
    reader = _store(ctx, "getstakinginfo").reader()
    out: dict[str, Any] = {
        "height": reader.height,
        "total_stake": sum(v.stake_total for v in reader.validators()),
        "min_stake": reader.params.min_stake,
        "unbonding_blocks": reader.params.unbonding_blocks,
        "stake_maturity_blocks": reader.params.stake_maturity_blocks,
        "validator_count": len(reader.validators()),
        "node_validator": None,
    }
    if ctx.validator_pubkey is not None:
        out["node_validator"] = _validator_json(reader, ctx.validator_pubkey, ctx.hrp) or {
            "validator_pubkey": ctx.validator_pubkey.hex(),
            "stake_total": 0,
            "eligible": False,
        }
    parts = ctx.parts
    if parts.chain is not None and parts.vdf is not None:
        out["producer"] = producer_json(parts.chain.statistics(), parts.vdf, parts.producer, parts.attester)
    if address is not None:
        account = _parse_address(ctx, address)
        bonded, unbonding, stakes = _staked_by(reader, account)
        out["account"] = {
            "address": encode_address(account, ctx.hrp),
            "staked": bonded,
            "unbonding": unbonding,
            "stakes": stakes,
        }
    return out


# -- the model and learning (the federated-learning issue fills these in) -----------------------


async def getmodelinfo(ctx: RpcContext) -> dict[str, Any]:
    """The current version, the base model, and the rounds service's statistics (`rounds`: state,
    versions computed and failed, the last round's outcome and seconds; None before it starts)."""
    reader = _store(ctx, "getmodelinfo").reader()
    out: dict[str, Any] = to_json(reader.model_version(), ctx.hrp)
    out["base_model"] = to_json(ctx.genesis.base_model, ctx.hrp)
    out["lora_rank"] = ctx.genesis.params.lora_rank
    out["aggregation_rule"] = ctx.genesis.params.aggregation_rule.name.lower()
    rounds = ctx.parts.rounds
    out["rounds"] = to_json(rounds.statistics(), ctx.hrp) if rounds is not None else None
    return out


async def getversionhistory(ctx: RpcContext) -> list[Any]:
    """Every VERSION block, oldest first (chain.state.learning): the CLI's `model history` contract."""
    reader = _store(ctx, "getversionhistory").reader()
    return [version_entry_json(e) for e in learning.version_history(reader)]


async def gettraininginfo(ctx: RpcContext) -> dict[str, Any]:
    """This node's trainer (None without `train_data`) and the shared training worker (None
    until a job first needed it): state, device, model id, last job, tokens/s, last unit."""
    worker = ctx.parts.worker
    stats = worker.statistics() if worker is not None else None
    trainer = ctx.parts.trainer
    return {
        "base_model_available": worker is not None,
        "trainer": to_json(trainer.statistics(), ctx.hrp) if trainer is not None else None,
        "worker": to_json(stats, ctx.hrp) if stats is not None else None,
    }


def _trainer(ctx: RpcContext, method: str) -> Trainer:
    if ctx.parts.trainer is None:
        if ctx.warming_up:
            raise _missing(ctx, method, "trainer")
        raise not_available(method, "a trainer (set train_data in the [training] settings)")
    return ctx.parts.trainer


async def starttraining(ctx: RpcContext) -> dict[str, Any]:
    """Let the trainer train again (on the current final version if it has not yet)."""
    trainer = _trainer(ctx, "starttraining")
    trainer.start()
    return {"enabled": trainer.enabled}


async def stoptraining(ctx: RpcContext) -> dict[str, Any]:
    """Stop training: the job in flight is cancelled; the node keeps validating and scoring."""
    trainer = _trainer(ctx, "stoptraining")
    trainer.stop()
    return {"enabled": trainer.enabled}


async def _current_adapter(ctx: RpcContext, method: str) -> tuple[TrainingSupervisor, ModelVersion, str]:
    """The worker, the current global version and its adapter file ("" for version 0)."""
    if ctx.parts.worker is None or ctx.parts.data is None:
        raise _missing(ctx, method, "training worker (the base model)")
    version = _store(ctx, method).reader().model_version()
    try:
        supervisor, _ = await ctx.parts.worker.get()
    except JobFailed as e:
        raise RpcError(RpcErrorCode.NOT_AVAILABLE_YET, f"{method}: the training worker: {e}") from None
    if version.version == 0:
        return supervisor, version, ""
    blobs = ctx.parts.data.blobs
    if not blobs.has(version.adapter_blob_hash):
        ctx.parts.data.want(version.adapter_blob_hash)
        raise RpcError(
            RpcErrorCode.NOT_FOUND, f"{method}: fetching the adapter of version {version.version}, retry"
        )
    return supervisor, version, str(blobs.path(version.adapter_blob_hash))


async def exportmodel(ctx: RpcContext, out_dir: str, merged: bool = False) -> dict[str, Any]:
    """The worker's `export` of the current global version into `out_dir` (on the node's machine):
    a PEFT adapter directory, and with `merged` a full model in `out_dir/merged`."""
    if not out_dir.startswith("/"):
        raise RpcError(RpcErrorCode.INVALID_PARAMS, "out_dir must be an absolute path")
    supervisor, version, adapter = await _current_adapter(ctx, "exportmodel")
    try:
        result = await supervisor.export(wp.Export(adapter, out_dir, merged))
    except JobFailed as e:
        raise RpcError(RpcErrorCode.REJECTED, f"exportmodel: {e}", {"reason": e.code.name}) from None
    return {
        "version": version.version,
        "adapter_hash": bytes(version.adapter_blob_hash).hex(),
        "adapter_dir": result.adapter_dir,
        "merged_dir": result.merged_dir,
    }


async def generatetext(ctx: RpcContext, prompt: str, max_new_tokens: int = 64) -> dict[str, Any]:
    """Greedy text after `prompt` from the base model plus the current global adapter."""
    if not 1 <= max_new_tokens <= 1024:
        raise RpcError(RpcErrorCode.INVALID_PARAMS, "max_new_tokens must be in 1..1024")
    if len(prompt.encode()) > 16 * 1024:
        raise RpcError(RpcErrorCode.INVALID_PARAMS, "prompt is longer than 16 KiB")
    supervisor, version, adapter = await _current_adapter(ctx, "generatetext")
    try:
        result = await supervisor.generate(wp.Generate(prompt, adapter, max_new_tokens, 0, 0))
    except JobFailed as e:
        raise RpcError(RpcErrorCode.REJECTED, f"generatetext: {e}", {"reason": e.code.name}) from None
    return {"version": version.version, "prompt": prompt, "text": result.text, "n_tokens": result.n_tokens}


async def submitdataunit(ctx: RpcContext, path: str) -> dict[str, Any]:
    """Register the JSONL test data at `path` (on the node's machine) as a data unit (PROTOCOL §3.3):
    checked line by line, stored as a blob, mined and sent as a `DATA_UNIT` tx signed and paid
    (`min_fee`) by this node's validator key."""
    data_blocks = ctx.parts.data
    if data_blocks is None:
        raise _missing(ctx, "submitdataunit", "blob store")
    if ctx.unit_key is None:
        raise not_available("submitdataunit", "a key to sign with (validator nodes only)")
    params = ctx.genesis.params
    data, fmt = _read_data_file(path, params.max_data_unit_bytes)
    unit = await store_data_unit(params, data_blocks.blobs, ctx.unit_key, data, fmt, ctx.now_ms())
    sender = account_id(ctx.unit_key.pubkey)
    pool = ctx.parts.mempool
    nonce = int(_store(ctx, "submitdataunit").reader().account(sender).nonce)
    nonce = max(nonce, pool.next_nonce(sender)) if pool is not None else nonce
    tx = make_tx(ctx.unit_key, params.chain_id, nonce, params.min_fee, unit)
    result = _txs(ctx, "submitdataunit").submit_tx(encode(tx))
    if isinstance(result, ErrorCode):
        raise rejected(result, "data unit tx refused")
    return {
        "unit_id": unit.id.hex(),
        "tx_id": result.hex(),
        "blob_hash": unit.blob_hash.hex(),
        "n_examples": unit.n_examples,
        "byte_size": unit.byte_size,
        "format": unit.format.name.lower(),
    }


def _read_data_file(path: str, limit: int) -> tuple[bytes, DataFormat]:
    """The file's bytes and format; INVALID_PARAMS naming the line of the first fault."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise RpcError(RpcErrorCode.INVALID_PARAMS, f"cannot read {path}: {e.strerror}") from None
    if len(data) > limit:
        raise RpcError(RpcErrorCode.INVALID_PARAMS, f"{path} is larger than max_data_unit_bytes ({limit})")
    kinds = set()
    for number, line in enumerate(split_lines(data), start=1):
        example = parse_line(line)
        if isinstance(example, str):
            raise RpcError(RpcErrorCode.INVALID_PARAMS, f"{path} line {number}: {example}")
        kinds.add(example.kind)
    if len(kinds) != 1:
        raise RpcError(RpcErrorCode.INVALID_PARAMS, f"{path}: no examples, or text and pairs mixed")
    return data, DataFormat.JSONL_TEXT if kinds == {"text"} else DataFormat.JSONL_PROMPT_COMPLETION


GETBLOB_MAX_BYTES: Final = 4 * 1024 * 1024  # one answer: 8 MiB of hex at most


async def getblob(
    ctx: RpcContext, blob_hash: str, offset: int = 0, length: int = GETBLOB_MAX_BYTES
) -> dict[str, Any]:
    """Bytes of a blob this node holds (data units, test sets, adapters: content-addressed, so the
    caller checks them against `blob_hash`), at most GETBLOB_MAX_BYTES per call from `offset`;
    `complete` says whether the answer reaches the end (a larger blob: call again from there)."""
    raw = BlobHash(_parse_hash(blob_hash, "blob_hash"))
    if not 0 < length <= GETBLOB_MAX_BYTES or offset < 0:
        raise RpcError(RpcErrorCode.INVALID_PARAMS, f"length must be in 1..{GETBLOB_MAX_BYTES}, offset >= 0")
    if ctx.parts.data is None:
        raise _missing(ctx, "getblob", "blob store")
    blobs = ctx.parts.data.blobs
    size = blobs.size(raw)
    data = await blobs.read_range(raw, offset, length) if size is not None and offset <= size else None
    if size is None or data is None:
        raise RpcError(RpcErrorCode.NOT_FOUND, f"blob {blob_hash} not held here (or offset past its end)")
    return {
        "blob_hash": raw.hex(),
        "size": size,
        "offset": offset,
        "length": len(data),
        "complete": offset + len(data) == size,
        "hex": data.hex(),
    }


async def help_(ctx: RpcContext) -> list[dict[str, Any]]:
    return [
        {"method": r.name, "params": [p.name for p in r.params], "help": r.help, "devnet_only": r.devnet_only}
        for r in ROUTES
    ]


# -- the route table ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """One RPC method: its name, the function (called as `fn(ctx, **params)`), parameters, help."""

    name: str
    fn: Callable[..., Awaitable[Any]]
    params: tuple[Param, ...] = ()
    help: str = ""
    devnet_only: bool = False


BLOCK_REF: Final = Param("block", (str, int))

ROUTES: Final[tuple[Route, ...]] = (
    Route("getnodeinfo", getnodeinfo, (), "peer id, listen addresses, validator key, version"),
    Route("getblockchaininfo", getblockchaininfo, (), "height, best and final block, round, model"),
    Route("getblock", getblock, (BLOCK_REF, Param("verbosity", (int,), 1)), "a block"),
    Route("getblockhash", getblockhash, (Param("height", (int,)),), "hash of the best-chain block"),
    Route("getblockheader", getblockheader, (BLOCK_REF,), "a header"),
    Route("gettransaction", gettransaction, (Param("txid", (str,)),), "a tx, confirmed or pending"),
    Route("getaccount", getaccount, (Param("address", (str,)),), "balance, nonce, stake"),
    Route("sendrawtransaction", sendrawtransaction, (Param("hex", (str,)),), "submit a signed tx"),
    Route("getmempoolinfo", getmempoolinfo, (), "mempool statistics"),
    Route("getrawmempool", getrawmempool, (Param("verbose", (bool,), False),), "pending tx ids"),
    Route("getpeerinfo", getpeerinfo, (), "connected peers"),
    Route("addpeer", addpeer, (Param("addr", (str,)),), "connect to a multiaddr"),
    Route("disconnectpeer", disconnectpeer, (Param("peer_id", (str,)),), "drop a peer"),
    Route("getstakinginfo", getstakinginfo, (Param("address", (str,), None),), "stake overview"),
    Route("getvalidators", getvalidators, (), "validator set"),
    Route("getmodelinfo", getmodelinfo, (), "current global model version"),
    Route("getversionhistory", getversionhistory, (), "model version history"),
    Route("gettraininginfo", gettraininginfo, (), "local training status"),
    Route("starttraining", starttraining, (), "let this node's trainer train"),
    Route("stoptraining", stoptraining, (), "stop this node's trainer (cancels the job)"),
    Route(
        "exportmodel",
        exportmodel,
        (Param("out_dir", (str,)), Param("merged", (bool,), False)),
        "export the current global adapter (PEFT dir, optionally merged)",
    ),
    Route(
        "generatetext",
        generatetext,
        (Param("prompt", (str,)), Param("max_new_tokens", (int,), 64)),
        "text from the current global model",
    ),
    Route("submitdataunit", submitdataunit, (Param("path", (str,)),), "submit test data"),
    Route(
        "getblob",
        getblob,
        (Param("blob_hash", (str,)), Param("offset", (int,), 0), Param("length", (int,), GETBLOB_MAX_BYTES)),
        "bytes of a blob this node holds, by hash (at most 4 MiB per call)",
    ),
    Route("explainrewards", explainrewards, (Param("target", (str, int)),), "rewards of address/height"),
    Route("stop", stop, (), "stop the daemon"),
    Route("uptime", uptime, (), "seconds since start"),
    Route("setmocktime", setmocktime, (Param("timestamp_ms", (int,)),), "devnet: fix the clock", True),
    Route("help", help_, (), "this list"),
)


def build_methods(ctx: RpcContext) -> list[Method]:
    """The dispatcher's methods: every route bound to `ctx`."""
    return [Method(r.name, functools.partial(r.fn, ctx), r.params, r.help, r.devnet_only) for r in ROUTES]
