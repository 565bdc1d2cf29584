"""`stake deposit|withdraw|status`: bind coins of a (cold) wallet to a (hot) validator key.

Owns: the STAKE and UNSTAKE txs built from a wallet and a validator public key (PROTOCOL §3.1),
and the stake overview. Must not: handle the validator key itself (it stays in the node's datadir).
"""

from __future__ import annotations

from typing import Any

import click

from linguachain_cli.app import App, CliError, pass_app, resolve_address, sign_and_send, wait_for_tx
from linguachain_cli.output import format_lc, kv, lc_fields, parse_lc, table


@click.group()
def stake() -> None:
    """Stake coins on a validator key, withdraw them, see stakes."""


def _validator_key(app: App, validator: str | None) -> bytes:
    """The validator public key given, or the node's own (`getnodeinfo.validator_pubkey`)."""
    text = validator or app.nodeinfo().get("validator_pubkey")
    if not text:
        raise CliError(
            "the node runs with validator = false, so it names no validator key: pass --validator"
            " PUBKEY_HEX (`linguachaind keygen --datadir DIR` prints a datadir's key) and start that"
            " node with --validator, or the stake makes no blocks"
        )
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise CliError("--validator must be a hex public key") from None
    if len(raw) != 32:
        raise CliError("--validator must be 32 bytes (64 hex characters)")
    return raw


def _send(
    app: App,
    kind: str,
    from_: str,
    validator: str | None,
    amount_lc: str,
    fee_lc: str | None,
    wait_s: float | None,
) -> None:
    from chain.tx import Stake, Unstake
    from chain.types import Amount, PubKey

    amount = parse_lc(amount_lc)
    key = PubKey(_validator_key(app, validator))
    payload = Stake(key, Amount(amount)) if kind == "deposit" else Unstake(key, Amount(amount))
    spend = amount if kind == "deposit" else 0  # a withdrawal pays only its fee
    result: dict[str, Any] = sign_and_send(app, from_, payload, parse_lc(fee_lc) if fee_lc else None, spend)
    result.update(validator_pubkey=key.hex(), amount=amount)
    if wait_s is not None:
        tx = wait_for_tx(app, result["txid"], wait_s)
        result.update(height=tx["height"], block_hash=tx["block_hash"])
    verb = "staked" if kind == "deposit" else "started unbonding"
    app.out(
        result,
        lambda: click.echo(f"{verb} {format_lc(amount)} on validator {key.hex()}\ntxid {result['txid']}"),
    )


_common = [
    click.option("--from", "from_", required=True, help="wallet that owns the stake"),
    click.option("--validator", help="validator public key (hex); default: the node's own"),
    click.option("--fee", "fee_lc", help="fee in LC"),
    click.option("--wait", "wait_s", type=float, default=None, help="wait up to N seconds for a block"),
]


def _with_common(f: Any) -> Any:
    for opt in reversed(_common):
        f = opt(f)
    return f


@stake.command("deposit")
@click.argument("amount_lc")
@_with_common
@pass_app
def stake_deposit(
    app: App, amount_lc: str, from_: str, validator: str | None, fee_lc: str | None, wait_s: float | None
) -> None:
    """Lock AMOUNT_LC as stake bound to a validator key."""
    _send(app, "deposit", from_, validator, amount_lc, fee_lc, wait_s)


@stake.command("withdraw")
@click.argument("amount_lc")
@_with_common
@pass_app
def stake_withdraw(
    app: App, amount_lc: str, from_: str, validator: str | None, fee_lc: str | None, wait_s: float | None
) -> None:
    """Start unbonding AMOUNT_LC; the coins return after `unbonding_blocks`."""
    _send(app, "withdraw", from_, validator, amount_lc, fee_lc, wait_s)


@stake.command("status")
@click.argument("address_or_name", required=False)
@pass_app
def stake_status(app: App, address_or_name: str | None) -> None:
    """Staking overview, this node's validator, and the stakes of an address or wallet."""
    params = [resolve_address(app, address_or_name)] if address_or_name else []
    info = app.call("getstakinginfo", *params)

    def human() -> None:
        kv("staking", [
            ("height", info["height"]),
            ("total stake", format_lc(info["total_stake"])),
            ("min stake", format_lc(info["min_stake"])),
            ("unbonding blocks", info["unbonding_blocks"]),
            ("validators", info["validator_count"]),
        ])  # fmt: skip
        nv = info.get("node_validator")
        if nv:
            kv("this node's validator", lc_fields(nv))
        acct = info.get("account")
        if acct:
            rows = []
            for s in acct["stakes"]:
                ub = ", ".join(f"{format_lc(u['amount'])} at {u['release_height']}" for u in s["unbonding"])
                rows.append([s["validator_pubkey"], format_lc(s["amount"]), ub or "-"])
            table(f"stakes of {acct['address']}", ["validator", "amount", "unbonding"], rows)

    app.out(info, human)
