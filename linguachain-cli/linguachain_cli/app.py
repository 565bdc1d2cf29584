"""State shared by the CLI's commands: reaching the node, the wallet, output mode, signing and sending.

Owns: `App` (one per invocation), `CliError`, passphrase input (`LINGUACHAIN_PASSPHRASE` or a hidden
prompt), building + signing a tx locally and sending it as raw hex, waiting for confirmation.
Must not: import trio, plyvel, libp2p or torch; never sends a private key to the node.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from linguachain_cli.rpc import RpcCallError, RpcClient, RpcConnectionError

NOT_FOUND = -32005
WARMING_UP = -32007
SHUTTING_DOWN = -32008


class CliError(Exception):
    """Raised for an error the user can act on; printed as one line."""


class App:
    """Shared state of one invocation: how to reach the node, output mode, wallet location."""

    def __init__(
        self,
        rpc: str | None,
        datadir: Path | None,
        network: str | None,
        wallet_dir: Path | None,
        as_json: bool,
        timeout: float,
        rpcwait_s: float | None = None,
    ) -> None:
        self.rpcwait_s = rpcwait_s  # wait up to this long for the node to answer and be ready
        self.rpc_url = rpc
        self.datadir = datadir
        self._network = network
        self.wallet_dir = wallet_dir
        self.json = as_json
        self.timeout = timeout
        self._client: RpcClient | None = None
        self._nodeinfo: dict[str, Any] | None = None

    @property
    def client(self) -> RpcClient:
        if self._client is None and self.rpcwait_s is not None:
            wait_for_node(self, self.rpcwait_s)
        return self._connect()

    def _connect(self) -> RpcClient:
        if self._client is None:
            if self.rpc_url:
                self._client = RpcClient.from_url(self.rpc_url, timeout=self.timeout)
                if self._client.user is None and self.datadir is not None:
                    self._client.cookie_file = self.datadir / ".cookie"
                    self._client._load_cookie()
            else:
                datadir = self.datadir or Path.home() / ".linguachain" / (self._network or "devnet")
                self._client = RpcClient.from_datadir(datadir, timeout=self.timeout)
        return self._client

    def call(self, method: str, *params: Any) -> Any:
        return self.client.call(method, *params)

    def nodeinfo(self) -> dict[str, Any]:
        if self._nodeinfo is None:
            info = self.call("getnodeinfo")
            assert isinstance(info, dict)
            self._nodeinfo = info
        return self._nodeinfo

    @property
    def network(self) -> str:
        """`--network`, else the datadir's config, else the node's answer, else devnet."""
        if self._network:
            return self._network
        if self.datadir is not None:
            import tomllib

            try:
                with (self.datadir / "linguachain.toml").open("rb") as fh:
                    net = tomllib.load(fh).get("network")
                if isinstance(net, str):
                    self._network = net
                    return net
            except (OSError, tomllib.TOMLDecodeError):
                pass
        if self.rpc_url:
            self._network = str(self.nodeinfo()["network"])
            return self._network
        self._network = "devnet"
        return self._network

    def keystore(self) -> Any:
        from linguachain_cli.keystore import Keystore, default_wallet_dir

        return Keystore(self.wallet_dir or default_wallet_dir(), self.network)

    def out(self, value: Any, human: Any = None) -> None:
        """`--json`: print `value`; otherwise call `human()` (or print `value` plainly)."""
        if self.json:
            from linguachain_cli.output import emit_json

            emit_json(value)
        elif human is not None:
            human()
        else:
            click.echo(value)


pass_app = click.make_pass_decorator(App)


class Progress:
    """One line on stderr while the CLI waits, rewritten in place on a terminal (never on stdout, so
    `--json` output stays clean; nothing at all when stderr is not a terminal unless `always`)."""

    def __init__(self, always: bool = False) -> None:
        self.live = sys.stderr.isatty()
        self.always = always
        self.last = ""
        self.started = time.monotonic()

    def show(self, text: str) -> None:
        line = f"{text} ({time.monotonic() - self.started:.0f} s)"
        if self.live:
            sys.stderr.write("\r" + line.ljust(len(self.last)))
            sys.stderr.flush()
        elif self.always and text != self.last.rsplit(" (", 1)[0]:
            sys.stderr.write(line + "\n")
        self.last = line

    def done(self) -> None:
        if self.live and self.last:
            sys.stderr.write("\r" + " " * len(self.last) + "\r")
            sys.stderr.flush()


def wait_for_node(app: App, timeout: float) -> None:
    """`--rpcwait`: poll until the node answers and `getnodeinfo.ready` (all services started),
    showing what it waits for; `CliError` at the deadline."""
    deadline = time.monotonic() + timeout
    progress = Progress(always=True)
    try:
        while True:
            try:
                info = app._connect().call("getnodeinfo")
                if not isinstance(info, dict) or info.get("ready", True):
                    return
                reason = "services are still starting"
            except RpcConnectionError as exc:
                app._client = None  # re-read .rpcport and .cookie: the node writes them when it starts
                reason = f"no answer yet: {exc}"
            except RpcCallError as exc:
                if exc.code not in (WARMING_UP, SHUTTING_DOWN):
                    raise
                reason = exc.message
            if time.monotonic() > deadline:
                raise CliError(f"the node was not ready within {timeout:g} s (last: {reason})")
            progress.show(f"waiting for linguachaind: {reason}")
            time.sleep(0.25)
    finally:
        progress.done()


def wait_for_tx(app: App, txid: str, timeout: float) -> dict[str, Any]:
    """Poll `gettransaction` until the tx is in a block (or `CliError` at the deadline)."""
    deadline = time.monotonic() + timeout
    progress = Progress()
    try:
        while True:
            try:
                tx = app.call("gettransaction", txid)
                if isinstance(tx, dict) and tx.get("status") == "confirmed":
                    return tx
                state = "in the mempool"
            except RpcCallError as exc:
                if exc.code != NOT_FOUND:  # not relayed back yet
                    raise
                state = "not seen by the node yet"
            if time.monotonic() > deadline:
                raise CliError(f"tx {txid} not in a block after {timeout:g} s (it may still confirm)")
            progress.show(f"waiting for tx {txid[:16]}... to be in a block: {state}")
            time.sleep(0.25)
    finally:
        progress.done()


def passphrase(confirm: bool = False) -> str:
    """`LINGUACHAIN_PASSPHRASE`, or a hidden prompt (twice when creating a key)."""
    env = os.environ.get("LINGUACHAIN_PASSPHRASE")
    if env is not None:
        return env
    if not sys.stdin.isatty():
        raise CliError("no terminal to ask for the passphrase: set LINGUACHAIN_PASSPHRASE")
    value: str = click.prompt("passphrase", hide_input=True, confirmation_prompt=confirm, err=True)
    return value


def resolve_address(app: App, ref: str) -> str:
    """An address as given, or the address of the wallet named `ref`."""
    from chain.address import AddressError, decode_address

    try:
        decode_address(ref)
        return ref
    except AddressError as exc:
        from linguachain_cli.keystore import NAME_RE, KeystoreError

        if NAME_RE.match(ref) and not ref.startswith(("lc1", "tlc1", "rlc1")):
            try:
                return str(app.keystore().get(ref).address)
            except KeystoreError:
                raise CliError(f"{ref!r} is neither an address nor a wallet name on {app.network}") from None
        raise CliError(str(exc)) from None


def check_balance(account: dict[str, Any], spend: int, fee: int) -> None:
    """`CliError` showing balance versus amount plus fee when the account cannot pay (the node would
    answer INSUFFICIENT_BALANCE without the figures). Pending txs are not subtracted: the node
    decides those."""
    from linguachain_cli.output import format_lc

    balance = int(account.get("balance", 0))
    if balance < spend + fee:
        raise CliError(
            f"insufficient balance (INSUFFICIENT_BALANCE): {account.get('address')} has {format_lc(balance)},"
            f" needs {format_lc(spend + fee)} = amount {format_lc(spend)} + fee {format_lc(fee)}"
        )


def sign_and_send(app: App, wallet: str, payload: Any, fee: int | None, spend: int = 0) -> dict[str, Any]:
    """Build a tx with `payload` from wallet `wallet` (spending `spend` base units besides the fee),
    check the balance covers both, sign it here, send it; the result object."""
    from chain.codec import encode
    from chain.tx import make_tx
    from chain.types import ChainId

    info = app.nodeinfo()
    app._network = str(info["network"])
    ks = app.keystore()
    entry = ks.get(wallet)
    account = app.call("getaccount", entry.address)
    fee_units = fee if fee is not None else max(int(info.get("min_fee", 0)), 10_000)
    check_balance(account, spend, fee_units)
    key = ks.unlock(wallet, passphrase())
    nonce = int(account.get("next_nonce", account["nonce"]))
    tx = make_tx(key, ChainId(str(info["chain_id"])), nonce, fee_units, payload)
    try:
        txid = app.call("sendrawtransaction", encode(tx).hex())
    except RpcCallError as exc:
        reason = exc.data.get("reason") if isinstance(exc.data, dict) else None
        if reason == "INSUFFICIENT_BALANCE":  # e.g. pending txs of this wallet spend it first
            check_balance(app.call("getaccount", entry.address), spend, fee_units)
            raise CliError(
                f"{exc.message} (INSUFFICIENT_BALANCE): the balance covers amount + fee, but this"
                f" wallet's pending txs (nonce {account['nonce']} to {nonce - 1}) spend it first"
            ) from None
        raise
    return {
        "txid": txid,
        "from": entry.address,
        "nonce": nonce,
        "fee": fee_units,
        "kind": tx.kind.name.lower(),
    }
