"""JSON views of chain objects for RPC answers (docs/rpc.md): the shape scripts rely on.

Owns: turning frozen chain dataclasses into JSON values: bytes as hex, `AccountId` fields as bech32m
addresses, enums as lower-case names, amounts as integers in base units; plus the extra `hash`/`id`
fields of blocks and txs, and the JSON of the mempool, peer and producer statistics. Must not: read
the store or call a component (callers pass the objects).
"""

from __future__ import annotations

import dataclasses
from enum import IntEnum
from functools import lru_cache
from typing import Any, get_type_hints

from chain.address import encode_address
from chain.block import Block
from chain.codec import encode
from chain.header import Header, round_for_height
from chain.state.learning import VersionEntry
from chain.tx import Tx
from chain.types import AccountId
from linguachaind.services.attester import Attester
from linguachaind.services.chain_service import ChainStatistics
from linguachaind.services.producer import Producer
from linguachaind.services.vdf_service import VdfService
from mempool.config import MempoolStats, PoolKind
from p2p.service import PeerSummary


@lru_cache(maxsize=256)
def _hints(cls: type[Any]) -> dict[str, Any]:
    return get_type_hints(cls, include_extras=False)


def to_json(value: Any, hrp: str, hint: Any = None) -> Any:
    """A JSON-able view of any codec value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hints = _hints(type(value))
        return {
            f.name: to_json(getattr(value, f.name), hrp, hints.get(f.name)) for f in dataclasses.fields(value)
        }
    if isinstance(value, IntEnum):
        return value.name.lower()
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, bytes):
        if hint is AccountId and len(value) == 20:
            return encode_address(AccountId(value), hrp)
        return value.hex()
    if isinstance(value, tuple | list):
        return [to_json(v, hrp) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v, hrp) for k, v in value.items()}
    return str(value)


def tx_json(tx: Tx, hrp: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": tx.id.hex(), "sender_address": encode_address(tx.sender_account, hrp)}
    out.update(to_json(tx, hrp))
    out["size"] = len(encode(tx))
    return out


def header_json(header: Header, hrp: str) -> dict[str, Any]:
    out: dict[str, Any] = {"hash": header.hash.hex(), "round": round_for_height(header.height)}
    out.update(to_json(header, hrp))
    return out


def block_json(block: Block, hrp: str, *, final: bool | None = None, verbose: bool = True) -> dict[str, Any]:
    out = header_json(block.header, hrp)
    body = block.body
    if final is not None:
        out["final"] = final
    out["size"] = len(encode(block))
    txs = getattr(body, "txs", None)
    if txs is not None:
        out["tx_count"] = len(txs)
        out["txs"] = [tx_json(t, hrp) for t in txs] if verbose else [t.id.hex() for t in txs]
    else:
        out["body"] = to_json(body, hrp)
    return out


def mempool_json(stats: MempoolStats, min_fee: int) -> dict[str, Any]:
    """`getmempoolinfo`: totals, then one object per pool (`tx`, `data`, `learning`)."""
    out: dict[str, Any] = {
        "size": stats.count,
        "bytes": stats.bytes,
        "senders": stats.senders,
        "oldest_age_ms": stats.oldest_age_ms,
        "future_held": stats.future_held,
        "accepted_total": stats.accepted_total,
        "rejected_total": stats.rejected_total,
        "evicted_total": stats.evicted_total,
        "expired_total": stats.expired_total,
        "min_fee": min_fee,
    }
    for p in stats.pools:
        out[PoolKind(p.kind).name.lower()] = {
            "count": p.count,
            "bytes": p.bytes,
            "max_count": p.max_count,
            "max_bytes": p.max_bytes,
            "min_fee_rate": p.min_fee_rate,
            "min_fee_rate_to_enter": p.min_fee_rate_to_enter,
        }
    return out


def peer_json(peer: PeerSummary) -> dict[str, Any]:
    """`getpeerinfo`: one connected peer (height -1 before its status arrived)."""
    height = peer.height if peer.height is not None else -1
    return {"peer_id": peer.peer_id, "addrs": list(peer.addrs), "height": height, "score": float(peer.score)}


def producer_json(
    chain: ChainStatistics, vdf: VdfService, producer: Producer | None, attester: Attester | None
) -> dict[str, Any]:
    """`getstakinginfo`'s `producer` object: what this node's consensus services did."""
    return {
        "proposed": producer.proposed if producer is not None else 0,
        "attested": attester.attested if attester is not None else 0,
        "vdf_computed": vdf.computed,
        "vdf_received": vdf.received,
        "blocks_imported": chain.imported,
        "blocks_rejected": chain.rejected,
        "reorgs": chain.reorgs,
        "side_blocks": chain.side_blocks,
        "orphans": chain.orphans,
    }


def version_entry_json(entry: VersionEntry) -> dict[str, Any]:
    """One VERSION block of the version history (`getversionhistory`, the CLI's `model history`)."""
    return {
        "version": entry.version,
        "height": entry.height,
        "round": entry.round,
        "adapter_hash": bytes(entry.adapter_hash).hex(),
        "units": entry.n_units,
        "score_micro": entry.score,
        "previous_score_micro": entry.previous_score,
        "noop": entry.noop,
    }
