"""`wallet create|import|list|address|balance|send|history`: local keys, remote balances.

Owns: the wallet commands and their result objects. Keys are created, stored and used through
`keystore` only; `send` signs locally (`app.sign_and_send`). Must not: send a private key to the node.
"""

from __future__ import annotations

from typing import Any

import click

from linguachain_cli.app import (
    App,
    CliError,
    pass_app,
    passphrase,
    resolve_address,
    sign_and_send,
    wait_for_tx,
)
from linguachain_cli.output import format_lc, kv, parse_lc, table


@click.group()
def wallet() -> None:
    """Encrypted local wallet: keys never leave this machine."""


def _kdf() -> str:
    import os

    return os.environ.get("LINGUACHAIN_KDF", "interactive")


@wallet.command("create")
@click.option("--name", required=True, help="wallet name (letters, digits, _ . -)")
@pass_app
def wallet_create(app: App, name: str) -> None:
    """Generate a new key, encrypted with a passphrase."""
    from chain.crypto import SecretKey

    ks = app.keystore()
    entry = ks.add(name, SecretKey.generate(), passphrase(confirm=True), kdf=_kdf())
    result = {
        "name": entry.name,
        "network": entry.network,
        "address": entry.address,
        "pubkey": entry.pubkey.hex(),
    }
    app.out(
        result,
        lambda: click.echo(f"created wallet {name}: {entry.address}\n" + backup_advice(app, entry.path)),
    )


def backup_advice(app: App, path: Any) -> str:
    """What to keep, where it is, and which wallets this keystore serves (docs/cli.md, Keystore)."""
    return (
        f"keystore file: {path}\n"
        "BACK IT UP NOW: copy this file somewhere safe and remember the passphrase; without both the\n"
        "coins are lost. The file is encrypted; no one can recover a forgotten passphrase.\n"
        f"(wallets live per network, in {path.parent}: every {app.network} node and devnet on this\n"
        "machine sees them; --wallet-dir DIR keeps a separate set)"
    )


@wallet.command("import")
@click.option("--name", required=True)
@click.option("--secret-key-hex", help="32-byte Ed25519 seed as 64 hex characters (prompted if omitted)")
@pass_app
def wallet_import(app: App, name: str, secret_key_hex: str | None) -> None:
    """Import a key (e.g. a devnet account from accounts.json)."""
    from chain.crypto import SecretKey

    if secret_key_hex is None:
        secret_key_hex = click.prompt("secret key (hex)", hide_input=True, err=True)
    try:
        seed = bytes.fromhex(secret_key_hex.strip())
    except ValueError:
        raise CliError("--secret-key-hex must be hex") from None
    if len(seed) != 32:
        raise CliError("--secret-key-hex must be 32 bytes (64 hex characters)")
    ks = app.keystore()
    entry = ks.add(name, SecretKey(seed), passphrase(confirm=True), kdf=_kdf())
    result = {
        "name": entry.name,
        "network": entry.network,
        "address": entry.address,
        "pubkey": entry.pubkey.hex(),
    }
    app.out(result, lambda: click.echo(f"imported wallet {name}: {entry.address}"))


@wallet.command("list")
@pass_app
def wallet_list(app: App) -> None:
    """Wallets of this network in the keystore."""
    entries = app.keystore().list()
    result = [{"name": e.name, "address": e.address, "pubkey": e.pubkey.hex()} for e in entries]
    app.out(
        result,
        lambda: table(
            f"wallets ({app.network})", ["name", "address"], [[e.name, e.address] for e in entries]
        ),
    )


@wallet.command("address")
@click.option("--name", required=True)
@pass_app
def wallet_address(app: App, name: str) -> None:
    """The address of a wallet."""
    entry = app.keystore().get(name)
    app.out({"name": name, "address": entry.address}, lambda: click.echo(entry.address))


@wallet.command("balance")
@click.argument("address_or_name")
@pass_app
def wallet_balance(app: App, address_or_name: str) -> None:
    """Balance, nonce and stake of an address or wallet name."""
    account = app.call("getaccount", resolve_address(app, address_or_name))
    app.out(
        account,
        lambda: kv(
            account["address"],
            [
                ("balance", format_lc(account["balance"])),
                ("staked", format_lc(account["staked"])),
                ("unbonding", format_lc(account.get("unbonding", 0))),
                ("nonce", account["nonce"]),
                ("height", account.get("height")),
            ],
        ),
    )


@wallet.command("send")
@click.option("--from", "from_", required=True, help="wallet name that pays")
@click.argument("address")
@click.argument("amount_lc")
@click.option("--fee", "fee_lc", help="fee in LC (default: the node's minimum, at least 0.0001 LC)")
@click.option("--memo", default="", help="up to 256 bytes")
@click.option("--wait", "wait_s", type=float, default=None, help="wait up to N seconds for a block")
@pass_app
def wallet_send(
    app: App, from_: str, address: str, amount_lc: str, fee_lc: str | None, memo: str, wait_s: float | None
) -> None:
    """Send AMOUNT_LC to ADDRESS; signed here, sent as a raw tx."""
    from chain.address import decode_address
    from chain.tx import Transfer
    from chain.types import Amount

    amount = parse_lc(amount_lc)
    fee = parse_lc(fee_lc) if fee_lc is not None else None
    memo_bytes = memo.encode()
    if len(memo_bytes) > 256:
        raise CliError("--memo is longer than 256 bytes")
    to = decode_address(resolve_address(app, address))
    result = sign_and_send(app, from_, Transfer(to, Amount(amount), memo_bytes), fee, spend=amount)
    result.update(to=resolve_address(app, address), amount=amount)
    if wait_s is not None:
        tx = wait_for_tx(app, result["txid"], wait_s)
        result.update(height=tx["height"], block_hash=tx["block_hash"])
    app.out(
        result,
        lambda: click.echo(
            f"sent {format_lc(amount)} to {result['to']} (fee {format_lc(result['fee'])})\n"
            f"txid {result['txid']}" + (f"\nin block {result['height']}" if "height" in result else "")
        ),
    )


@wallet.command("history")
@click.argument("address_or_name")
@click.option(
    "--blocks", type=click.IntRange(1, 100_000), default=200, show_default=True, help="how far back"
)
@pass_app
def wallet_history(app: App, address_or_name: str, blocks: int) -> None:
    """Txs sent or received in the last N blocks, plus pending ones."""
    address = resolve_address(app, address_or_name)
    tip = int(app.call("getblockchaininfo")["height"])
    rows: list[dict[str, Any]] = []
    for height in range(tip, max(0, tip - blocks), -1):
        block = app.call("getblock", height)
        for tx in block.get("txs") or []:
            if isinstance(tx, dict) and _touches(tx, address):
                rows.append(_history_row(tx, address, "confirmed", height))
    try:
        pending = app.call("getrawmempool", True)
    except Exception:  # the mempool back-end may not exist on this node yet
        pending = []
    for tx in pending:
        if _touches(tx, address):
            rows.insert(0, _history_row(tx, address, "pending", None))
    app.out(
        rows,
        lambda: table(
            f"history of {address}",
            ["height", "status", "kind", "direction", "amount", "fee", "counterparty", "txid"],
            [
                [
                    r["height"],
                    r["status"],
                    r["kind"],
                    r["direction"],
                    format_lc(r["amount"]),
                    format_lc(r["fee"]),
                    r["counterparty"],
                    r["txid"],
                ]
                for r in rows
            ],
        ),
    )


def _touches(tx: dict[str, Any], address: str) -> bool:
    return bool(tx.get("sender_address") == address or tx.get("payload", {}).get("to") == address)


def _history_row(tx: dict[str, Any], address: str, status: str, height: int | None) -> dict[str, Any]:
    payload = tx.get("payload", {})
    outgoing = tx.get("sender_address") == address
    return {
        "txid": tx["id"],
        "height": height,
        "status": status,
        "kind": tx["kind"],
        "direction": "out" if outgoing else "in",
        "amount": int(payload.get("amount", 0)),
        "fee": int(tx["fee"]) if outgoing else 0,
        "counterparty": payload.get("to") if outgoing else tx.get("sender_address"),
    }
