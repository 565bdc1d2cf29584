"""Node control and the raw RPC: `rpc`, `stop`, `addpeer`, `disconnectpeer`, `waitforheight`.

Owns: the bitcoin-cli habits operators reach for: any RPC by name with its params given as JSON
(or as plain strings), stopping the node, connecting or dropping a peer at runtime, and waiting for
a height. Must not: hold keys or sign (the wallet commands do); reinterpret results (`rpc` prints
them as the node sent them).
"""

from __future__ import annotations

import json
from typing import Any

import click

from linguachain_cli.app import App, CliError, pass_app
from linguachain_cli.output import emit_json


def parse_param(text: str) -> Any:
    """A command-line param as JSON when it parses (`5`, `true`, `null`, `[1]`, `"x"`), else the text
    itself, so hashes and addresses need no quotes (bitcoin-cli does the same)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@click.command("rpc")
@click.argument("method")
@click.argument("params", nargs=-1)
@click.option("--named", is_flag=True, help="params are NAME=VALUE pairs (named JSON-RPC params)")
@pass_app
def rpc(app: App, method: str, params: tuple[str, ...], named: bool) -> None:
    """Call any RPC METHOD with PARAMS (JSON or plain text); print the result as JSON.

    `linguachain-cli rpc help` lists the methods; `rpc getblock 5 0`, `rpc --named getblock block=5`.
    """
    if named:
        pairs: dict[str, Any] = {}
        for item in params:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise CliError(f"--named params are NAME=VALUE, got {item!r}")
            pairs[name] = parse_param(value)
        result = app.client.call(method, **pairs)
    else:
        result = app.call(method, *(parse_param(p) for p in params))
    if isinstance(result, str) and not app.json:
        click.echo(result)
    else:
        emit_json(result)


@click.command("stop")
@pass_app
def stop(app: App) -> None:
    """Ask the node to stop (the `stop` RPC; the ordered shutdown follows)."""
    result = app.call("stop")
    app.out(result, lambda: click.echo(result))


@click.command("addpeer")
@click.argument("multiaddr")
@pass_app
def addpeer(app: App, multiaddr: str) -> None:
    """Connect to a peer now: /ip4/HOST/tcp/PORT/p2p/PEER_ID (what `status` shows as "address for peers")."""
    if "/p2p/" not in multiaddr:
        raise CliError("the address needs the peer id: /ip4/HOST/tcp/PORT/p2p/PEER_ID")
    result = app.call("addpeer", multiaddr)
    app.out(result, lambda: click.echo(f"connected to {multiaddr}"))


@click.command("disconnectpeer")
@click.argument("peer_id")
@pass_app
def disconnectpeer(app: App, peer_id: str) -> None:
    """Drop a connected peer (its id from `peers`)."""
    result = app.call("disconnectpeer", peer_id)
    app.out(result, lambda: click.echo(f"disconnected {peer_id}"))


@click.command("waitforheight")
@click.argument("height", type=click.IntRange(0))
@click.option("--final", is_flag=True, help="wait for the final height instead of the best height")
@click.option("--timeout", "timeout_s", type=float, default=120.0, show_default=True, help="seconds")
@pass_app
def waitforheight(app: App, height: int, final: bool, timeout_s: float) -> None:
    """Wait until the node's chain reaches HEIGHT (bitcoin-cli's waitforblockheight), showing progress
    on stderr; print the chain info then. Exit 1 at the timeout."""
    import time

    from linguachain_cli.app import Progress

    key = "final_height" if final else "height"
    deadline = time.monotonic() + timeout_s
    progress = Progress()
    try:
        while True:
            info = app.call("getblockchaininfo")
            if int(info[key]) >= height:
                break
            if time.monotonic() > deadline:
                raise CliError(f"{key.replace('_', ' ')} is {info[key]} after {timeout_s:g} s, not {height}")
            progress.show(f"waiting for {key.replace('_', ' ')} {height}: now {info[key]}")
            time.sleep(0.25)
    finally:
        progress.done()
    app.out(info, lambda: click.echo(f"{key.replace('_', ' ')} {info[key]}, best block {info['best_hash']}"))
