"""`linguachain-cli`: a pure JSON-RPC client with a local encrypted wallet (docs/cli.md).

Owns: the command tree, finding the node (`--rpc` or `--datadir`), the script contract (`--json`
prints the RPC result or the command's result object, amounts as integers in base units; human output
shows LC with 8 decimals), errors as one line (exit 1; usage errors exit 2), and passphrase input
(prompt, or `LINGUACHAIN_PASSPHRASE`). Must not: import trio, plyvel, libp2p, torch or the daemon;
never sends a private key anywhere (txs are signed here and sent as raw hex).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from linguachain_cli.app import App, CliError
from linguachain_cli.rpc import RpcCallError, RpcConnectionError


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Turns every expected failure into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        from chain.errors import LinguaChainError
        from linguachain_cli.keystore import KeystoreError
        from linguachain_cli.output import AmountError

        try:
            return super().invoke(ctx)
        except RpcCallError as exc:
            reason = exc.data.get("reason") if isinstance(exc.data, dict) else None
            extra = f", {reason}" if reason and reason not in exc.message else ""
            _fail(f"{exc.message} (code {exc.code}{extra})")
        except (RpcConnectionError, CliError, KeystoreError, AmountError, LinguaChainError) as exc:
            _fail(str(exc))
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as exc:
            if os.environ.get("LINGUACHAIN_CLI_TRACEBACK"):
                raise
            _fail(f"internal error: {exc!r} (set LINGUACHAIN_CLI_TRACEBACK=1 for details)")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--rpc", envvar="LINGUACHAIN_RPC", help="node URL, http://[user:pass@]127.0.0.1:PORT")
@click.option(
    "--datadir",
    envvar="LINGUACHAIN_DATADIR",
    type=click.Path(path_type=Path),
    help="read port and cookie from DIR",
)
@click.option("--network", envvar="LINGUACHAIN_NETWORK", type=click.Choice(["devnet", "testnet", "mainnet"]))
@click.option("--wallet-dir", envvar="LINGUACHAIN_WALLET_DIR", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="machine output: JSON, amounts in base units")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="RPC timeout in seconds")
@click.option("--rpcwait", is_flag=True, help="wait for the node to start and be ready (progress on stderr)")
@click.option(
    "--rpcwait-timeout", type=float, default=120.0, show_default=True, help="how long --rpcwait waits"
)
@click.version_option(package_name="linguachain", prog_name="linguachain-cli")
@click.pass_context
def cli(
    ctx: click.Context,
    rpc: str | None,
    datadir: Path | None,
    network: str | None,
    wallet_dir: Path | None,
    as_json: bool,
    timeout: float,
    rpcwait: bool,
    rpcwait_timeout: float,
) -> None:
    """LinguaChain command-line client: talks to a linguachaind over JSON-RPC, keeps wallet keys locally.

    Global options go before the command; `--json` is also accepted after it."""
    ctx.obj = App(
        rpc,
        datadir.expanduser() if datadir else None,
        network,
        wallet_dir,
        as_json,
        timeout,
        rpcwait_timeout if rpcwait else None,
    )


# Sub-command groups live in their own modules; importing them registers the commands.
from linguachain_cli import cmd_chain, cmd_data, cmd_model, cmd_node, cmd_stake, cmd_train, cmd_wallet  # noqa: E402

cli.add_command(cmd_chain.status)
cli.add_command(cmd_chain.peers)
cli.add_command(cmd_chain.chain)
cli.add_command(cmd_chain.mempool)
cli.add_command(cmd_chain.validators)
cli.add_command(cmd_chain.rewards)
cli.add_command(cmd_wallet.wallet)
cli.add_command(cmd_stake.stake)
cli.add_command(cmd_node.rpc)
cli.add_command(cmd_node.stop)
cli.add_command(cmd_node.addpeer)
cli.add_command(cmd_node.disconnectpeer)
cli.add_command(cmd_node.waitforheight)
cli.add_command(cmd_data.data)
cli.add_command(cmd_model.model)
cli.add_command(cmd_train.train)


def _json_after_command(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_object(App).json = True  # type: ignore[union-attr]


def _accept_json_anywhere(command: click.Command) -> None:
    """Give every leaf command its own `--json`, so `chain block 5 --json` works like `--json chain
    block 5` (operators and docs write both)."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _accept_json_anywhere(sub)
    elif not any(p.name == "json_after" for p in command.params):
        command.params.append(
            click.Option(
                ["--json", "json_after"],
                is_flag=True,
                expose_value=False,
                callback=_json_after_command,
                help="machine output (same as the global --json)",
            )
        )


for _command in cli.commands.values():
    _accept_json_anywhere(_command)


def main() -> None:
    cli(prog_name="linguachain-cli")


if __name__ == "__main__":
    main()
