"""Read-only commands: `status`, `peers`, `chain info|block|tx`, `mempool`, `validators`, `rewards explain`.

Owns: which RPCs each command calls and how the answer is shown. Must not: hold keys or sign.
`--json` prints the RPC result unchanged (amounts in base units).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from linguachain_cli.app import App, pass_app
from linguachain_cli.output import format_lc, kv, table
from linguachain_cli.rpc import RpcCallError

NOT_AVAILABLE = -32003
WARMING_UP = -32007


def _optional(app: App, method: str, *params: Any) -> Any:
    """The result, or None when the node has no back-end for `method` yet."""
    try:
        return app.call(method, *params)
    except RpcCallError as exc:
        if exc.code in (NOT_AVAILABLE, WARMING_UP):
            return None
        raise


def sync_progress(chain: dict[str, Any] | None, peers: list[dict[str, Any]] | None) -> float | None:
    """Our height over the best height a peer reports (1.0 = caught up), like bitcoind's
    `verificationprogress`; None without a chain. Without peers that know their height: 1.0 if the
    node says it is synced, else 0.0."""
    if chain is None:
        return None
    best_peer = max((int(p["height"]) for p in peers or [] if int(p.get("height", -1)) >= 0), default=-1)
    height = int(chain["height"])
    if best_peer <= 0:
        return 1.0 if chain.get("synced") or best_peer == 0 else 0.0
    return min(1.0, height / best_peer)


def _not_validating(app: App) -> str:
    """`status`'s validator row of a node with validator = false: say when it holds a key anyway."""
    if app.datadir is not None and (app.datadir / "keys" / "validator.key").exists():
        return "no (validator = false, but keys/validator.key exists: start with --validator to use it)"
    return "no"


@click.command()
@pass_app
def status(app: App) -> None:
    """Node, chain and peer summary (every value in full, ready to copy)."""
    node = app.call("getnodeinfo")
    chain = _optional(app, "getblockchaininfo")
    peers = _optional(app, "getpeerinfo")
    # The node's own figure (its syncer's target height) when it has one, else ours from the peers.
    progress = chain["sync_progress"] if chain and "sync_progress" in chain else sync_progress(chain, peers)
    result = {
        "node": node,
        "chain": chain,
        "peer_count": len(peers) if peers is not None else None,
        "sync_progress": progress,
    }

    def human() -> None:
        rows: list[tuple[str, Any]] = [
            ("network", node["network"]),
            ("version", node["version"]),
            ("peer id", node.get("peer_id")),
            *[("address for peers", a) for a in node.get("listen_addrs") or []],
            ("validator", node.get("validator_pubkey") if node.get("validator") else _not_validating(app)),
            ("peers", result["peer_count"]),
        ]
        if chain is not None:
            rows += [
                ("height", chain["height"]),
                ("best block", chain["best_hash"]),
                ("final height", chain["final_height"]),
                ("round", chain["round"]),
                ("model version", chain["model_version"]),
                ("synced", f"{chain['synced']} ({100 * (progress or 0):.1f}% of the best peer height)"),
            ]
        else:
            rows.append(("chain", "not available yet"))
        if not node.get("ready", True):
            rows.append(("ready", "no: services are still starting"))
        kv("linguachaind status", rows)

    app.out(result, human)


@click.command()
@pass_app
def peers(app: App) -> None:
    """Connected peers."""
    result = app.call("getpeerinfo")
    app.out(
        result,
        lambda: table(
            f"{len(result)} peers",
            ["peer id", "height", "score", "addresses"],
            [[p["peer_id"], p["height"], p["score"], ", ".join(p["addrs"])] for p in result],
        ),
    )


@click.group()
def chain() -> None:
    """Blocks, transactions and the chain tip."""


@chain.command("info")
@pass_app
def chain_info(app: App) -> None:
    """Height, best and final block, round, model version."""
    result = app.call("getblockchaininfo")
    app.out(result, lambda: kv("chain", list(result.items())))


@chain.command("block")
@click.argument("height_or_hash")
@pass_app
def chain_block(app: App, height_or_hash: str) -> None:
    """A block by height or hash (the JSON carries its `hash`)."""
    ref: int | str = int(height_or_hash) if height_or_hash.isdigit() else height_or_hash
    block = app.call("getblock", ref)

    def human() -> None:
        rows = [
            (k, block[k])
            for k in (
                "hash",
                "height",
                "kind",
                "round",
                "timestamp_ms",
                "prev_hash",
                "proposer",
                "rank",
                "final",
            )
            if k in block
        ]
        rows.append(("attestations", len(block.get("parent_certificate", []))))
        if "txs" in block:
            rows.append(("txs", block.get("tx_count", len(block["txs"]))))
        kv(f"block {block['height']}", rows)
        txs = block.get("txs") or []
        if txs and isinstance(txs[0], dict):
            table("transactions", ["id", "kind", "from", "fee"], [
                [t["id"], t["kind"], t["sender_address"], format_lc(t["fee"])] for t in txs
            ])  # fmt: skip

    app.out(block, human)


@chain.command("tx")
@click.argument("txid")
@pass_app
def chain_tx(app: App, txid: str) -> None:
    """A transaction by id (confirmed or pending)."""
    tx = app.call("gettransaction", txid)

    def human() -> None:
        rows: list[tuple[str, Any]] = [
            ("id", tx["id"]),
            ("status", tx["status"]),
            ("kind", tx["kind"]),
            ("from", tx["sender_address"]),
            ("nonce", tx["nonce"]),
            ("fee", format_lc(tx["fee"])),
            ("height", tx.get("height")),
            ("block", tx.get("block_hash")),
        ]
        payload = tx.get("payload", {})
        for k, v in payload.items():
            rows.append((f"payload.{k}", format_lc(v) if k == "amount" else v))
        kv("transaction", rows)

    app.out(tx, human)


@click.command()
@click.option("--txs", is_flag=True, help="also list the pending tx ids")
@pass_app
def mempool(app: App, txs: bool) -> None:
    """Mempool statistics (and pending tx ids with --txs)."""
    info = app.call("getmempoolinfo")
    result: dict[str, Any] = dict(info)
    if txs:
        result["txids"] = app.call("getrawmempool")

    def human() -> None:
        rows: list[tuple[str, Any]] = []
        for k, v in result.items():
            if isinstance(v, dict):
                rows.append((f"{k} pool", f"{v.get('count')} txs, {v.get('bytes')} bytes"))
            elif k != "txids":
                rows.append((k, v))
        kv("mempool", rows)
        if txs:
            for t in result["txids"]:
                click.echo(t)

    app.out(result, human)


@click.command()
@pass_app
def validators(app: App) -> None:
    """The validator set with stake, reputation and eligibility."""
    result = app.call("getvalidators")
    app.out(
        result,
        lambda: table(
            f"{len(result)} validators",
            ["validator", "address", "stake", "eligible", "reputation", "jailed until", "last proposed"],
            [
                [
                    v["validator_pubkey"],
                    v["address"],
                    format_lc(v["stake_total"]),
                    v["eligible"],
                    v["reputation"],
                    v["jailed_until"],
                    v["last_proposed"],
                ]
                for v in result
            ],
        ),
    )


@click.group()
def rewards() -> None:
    """Coins minted, moved or burned by rule (PROTOCOL §5)."""


@rewards.command("explain")
@click.argument("target")
@pass_app
def rewards_explain(app: App, target: str) -> None:
    """Every reward of an address (or wallet name), of a block height, or of a unit id (64 hex:
    what its author was paid when a DATA or VERSION block used it, and why), with its reason."""
    from linguachain_cli.app import resolve_address

    ref = explain_target(target, lambda name: resolve_address(app, name))
    result = app.call("explainrewards", ref)
    app.out(
        result,
        lambda: table(
            f"rewards of {explained_subject(result)}: {format_lc(result['total'])}",
            ["height", "account", "amount", "reason", "ref"],
            [
                [r["height"], r["account"], format_lc(r["amount"]), reason_text(r), r["ref"]]
                for r in result["rewards"]
            ],
        ),
    )


def explain_target(target: str, resolve: Callable[[str], str]) -> int | str:
    """`explainrewards`' parameter: a height (digits), a unit id (64 hex, as the node reports unit
    ids), else an address or a wallet name (`resolve`)."""
    if target.isdigit():
        return int(target)
    if len(target) == 64 and all(c in "0123456789abcdef" for c in target.lower()):
        return target.lower()
    return resolve(target)


def explained_subject(result: dict[str, Any]) -> str:
    """The table title's subject: the address, the height, or the unit with why it was paid."""
    if "unit_id" not in result:
        return str(result.get("address", result.get("height")))
    why = [f"{k} {result[k]}" for k in ("accepted_examples", "weight", "excluded", "improved") if k in result]
    used = f"used at height {result['used_height']}" if result.get("used_height") else "not used yet"
    return f"{result['kind']} unit {result['unit_id']} ({', '.join([used, *why])})"


def reason_text(record: dict[str, Any]) -> str:
    """The reward's reason; a slash's names its fault (explainrewards' `evidence`)."""
    fault = record.get("evidence")
    if not fault:
        return str(record["reason"])
    return f"{record['reason']} ({fault['kind']} by {str(fault['validator'])[:16]} at {fault['height']})"
