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

from linguachain_cli.rpc import RpcCallError, RpcClient

NOT_FOUND = -32005


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
    ) -> None:
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


def wait_for_tx(app: App, txid: str, timeout: float) -> dict[str, Any]:
    """Poll `gettransaction` until the tx is in a block (or `CliError` at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            tx = app.call("gettransaction", txid)
            if isinstance(tx, dict) and tx.get("status") == "confirmed":
                return tx
        except RpcCallError as exc:
            if exc.code != NOT_FOUND:  # not relayed back yet
                raise
        if time.monotonic() > deadline:
            raise CliError(f"tx {txid} not in a block after {timeout:g} s (it may still confirm)")
        time.sleep(0.25)


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


def sign_and_send(app: App, wallet: str, payload: Any, fee: int | None) -> dict[str, Any]:
    """Build a tx with `payload` from wallet `wallet`, sign it here, send it; the result object."""
    from chain.address import address_of
    from chain.codec import encode
    from chain.tx import make_tx
    from chain.types import ChainId

    info = app.nodeinfo()
    app._network = str(info["network"])
    ks = app.keystore()
    entry = ks.get(wallet)
    key = ks.unlock(wallet, passphrase())
    sender = address_of(key.pubkey, ks.hrp)
    account = app.call("getaccount", sender)
    nonce = int(account.get("next_nonce", account["nonce"]))
    fee_units = fee if fee is not None else max(int(info.get("min_fee", 0)), 10_000)
    tx = make_tx(key, ChainId(str(info["chain_id"])), nonce, fee_units, payload)
    txid = app.call("sendrawtransaction", encode(tx).hex())
    return {
        "txid": txid,
        "from": entry.address,
        "nonce": nonce,
        "fee": fee_units,
        "kind": tx.kind.name.lower(),
    }
