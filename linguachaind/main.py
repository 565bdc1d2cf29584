"""The `linguachaind` command: `init`, `start`, `stop`, `make-genesis` (docs/operator-guide.md).

Owns: command-line parsing (click), turning flags into the `flags` layer of `build_config`, the
datadir initialisation, exit codes (0 ok, 1 operator error shown as one line, 2 usage), and running
`Node` under `trio.run`. Must not: wire components (node.py does). Heavy modules are imported inside
the commands so `linguachaind --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from chain.errors import ConfigError, LinguaChainError


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="linguachain", prog_name="linguachaind")
def cli() -> None:
    """LinguaChain daemon. Run `linguachaind start` for a single-node devnet in ~/.linguachain/devnet."""


def init_datadir(
    *,
    network: str,
    datadir: Path | None,
    genesis_file: Path | None,
    validators: int,
    dev_validator: int | None,
    settings: dict[str, Any],
    force: bool,
) -> Path:
    """Create the datadir (0700): keys and `linguachain.toml` (0600), `genesis.json`. Returns it.

    `dev_validator` (a publicly derivable key) is refused on any network but devnet."""
    from chain.genesis import genesis_to_json, load_genesis, parse_genesis
    from linguachaind.config import config_file_text, default_datadir
    from linguachaind.datadir import Layout, ensure_dirs, load_or_create_seed, write_private
    from linguachaind.devgenesis import dev_validator_key, devnet_genesis_doc

    root = (datadir or default_datadir(network)).expanduser().absolute()
    if dev_validator is not None and network != "devnet":
        raise ConfigError(
            f"--dev-validator is only for devnet: its keys are derived from public labels, and on "
            f"{network} anyone could sign as that validator"
        )
    layout = Layout(root)
    if layout.config.exists() and not force:
        raise ConfigError(f"{root} is already initialised (use --force to rewrite its config and genesis)")
    if genesis_file is not None:
        genesis = load_genesis(genesis_file)
        if genesis.params.network != network:
            raise ConfigError(f"{genesis_file} is a {genesis.params.network} genesis, not {network}")
    elif network == "devnet":
        genesis = parse_genesis(devnet_genesis_doc(validators))
    else:
        raise ConfigError(f"{network} needs the network's genesis file: --genesis FILE")
    ensure_dirs(layout)
    seed = dev_validator_key(dev_validator, network).seed if dev_validator is not None else None
    if network == "devnet" and dev_validator is None and genesis_file is None:
        seed = dev_validator_key(0).seed  # the single-node devnet's node is its genesis validator
    if seed is not None and layout.validator_key.exists() and force:
        layout.validator_key.unlink()
    load_or_create_seed(layout.validator_key, seed=seed)
    try:
        from p2p.host import load_or_create_key

        load_or_create_key(layout.keys)
    except ImportError:
        pass  # the p2p service creates its key at first start
    write_private(
        layout.genesis, (json.dumps(genesis_to_json(genesis), indent=2) + "\n").encode(), mode=0o644
    )
    write_private(layout.config, config_file_text({"network": network, **settings}).encode(), mode=0o600)
    return root


@cli.command()
@click.option(
    "--network", type=click.Choice(["devnet", "testnet", "mainnet"]), default="devnet", show_default=True
)
@click.option("--datadir", type=click.Path(path_type=Path), help="default: ~/.linguachain/<network>")
@click.option("--genesis", "genesis_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--validators", type=click.IntRange(1, 64), default=1, show_default=True, help="devnet genesis size"
)
@click.option("--dev-validator", type=click.IntRange(0, 63), help="use deterministic dev validator key K")
@click.option("--rpc-port", type=click.IntRange(0, 65535))
@click.option("--listen", multiple=True, help="libp2p multiaddr (repeatable)")
@click.option("--bootstrap", multiple=True, help="bootstrap multiaddr with /p2p/<id> (repeatable)")
@click.option("--force", is_flag=True, help="rewrite config and genesis of an initialised datadir")
def init(
    network: str,
    datadir: Path | None,
    genesis_file: Path | None,
    validators: int,
    dev_validator: int | None,
    rpc_port: int | None,
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    force: bool,
) -> None:
    """Create a datadir: keys (mode 0600), linguachain.toml and genesis.json."""
    settings: dict[str, Any] = {}
    if rpc_port is not None:
        settings["rpc_port"] = rpc_port
    if listen:
        settings["listen"] = list(listen)
    if bootstrap:
        settings["bootstrap"] = list(bootstrap)
    try:
        root = init_datadir(
            network=network,
            datadir=datadir,
            genesis_file=genesis_file,
            validators=validators,
            dev_validator=dev_validator,
            settings=settings,
            force=force,
        )
    except (LinguaChainError, OSError) as exc:
        _fail(str(exc))
    click.echo(f"initialised {network} datadir {root}")
    try:
        for maddr in node_multiaddrs(root):
            click.echo(f"other nodes bootstrap to it with: --bootstrap {maddr}")
    except (LinguaChainError, OSError) as exc:
        click.echo(f"(its address for peers is unknown until it starts: {exc})")
    click.echo(f"start it with: linguachaind start --datadir {root}")


@cli.command()
@click.option("--datadir", type=click.Path(path_type=Path))
@click.option("--network", type=click.Choice(["devnet", "testnet", "mainnet"]))
@click.option("--genesis", "genesis_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--listen", multiple=True, help="libp2p multiaddr (repeatable)")
@click.option("--bootstrap", multiple=True, help="bootstrap multiaddr with /p2p/<id> (repeatable)")
@click.option("--rpc-port", type=click.IntRange(0, 65535), help="0: any free port (see <datadir>/.rpcport)")
@click.option(
    "--validator/--no-validator", default=None, help="produce and attest blocks with keys/validator.key"
)
@click.option("--mdns/--no-mdns", default=None, help="find peers on the local network by multicast DNS")
@click.option("--checkpoint", help="HEIGHT:HASH of a final block this node must have (weak subjectivity)")
@click.option("--train-data", type=click.Path(path_type=Path))
@click.option("--device", type=click.Choice(["cpu", "cuda"]))
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--quiet", is_flag=True, help="log to debug.log only, not to stderr")
def start(
    datadir: Path | None,
    network: str | None,
    genesis_file: Path | None,
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    rpc_port: int | None,
    validator: bool | None,
    mdns: bool | None,
    checkpoint: str | None,
    train_data: Path | None,
    device: str | None,
    log_level: str | None,
    quiet: bool,
) -> None:
    """Run the node in the foreground until SIGINT/SIGTERM or `linguachaind stop`."""
    from linguachaind.config import CONFIG_FILE, build_config, resolve_network_and_datadir

    flags: dict[str, Any] = {
        "datadir": str(datadir) if datadir else None,
        "network": network,
        "genesis_file": genesis_file,
        "listen": listen or None,
        "bootstrap": bootstrap or None,
        "rpc_port": rpc_port,
        "validator": validator,
        "mdns": mdns,
        "checkpoint": checkpoint,
        "train_data": train_data,
        "device": device,
        "log_level": log_level.upper() if log_level else None,
        "log_stderr": False if quiet else None,
    }
    try:
        net, root = resolve_network_and_datadir(flags, os.environ)
        if not (root / CONFIG_FILE).exists():
            if net != "devnet":
                _fail(
                    f"{root} is not initialised: run `linguachaind init --network {net} --genesis FILE` first"
                )
            _init_single_node_devnet(root, genesis_file)
        config = build_config(flags)
        warning = preflight(config)
    except (LinguaChainError, OSError) as exc:
        _fail(str(exc))
    sys.exit(run_node(config, warning=warning))


def _init_single_node_devnet(root: Path, genesis_file: Path | None) -> None:
    """`start` on an empty datadir: a one-validator devnet, with its funded dev accounts listed."""
    init_datadir(
        network="devnet", datadir=root, genesis_file=genesis_file, validators=1,
        dev_validator=None, settings={}, force=False,
    )  # fmt: skip
    click.echo(f"initialised a single-node devnet in {root}", err=True)
    if genesis_file is None:
        _write_dev_accounts(root / "accounts.json", n_accounts=10, n_validators=1)
        click.echo(f"funded dev accounts (public test keys): {root / 'accounts.json'}", err=True)


def preflight(config: Any) -> str | None:
    """Checks before the node starts: a taken port fails here with one line; a staked validator key
    on a node with validator = false gives the warning returned (also printed when stderr is quiet)."""
    from linguachaind.datadir import Layout

    # A daemon on this datadir holds these ports: its lock error (from the node) is the one to show.
    clash = port_clash(config) if daemon_pid(Layout(config.datadir)) is None else None
    if clash is not None:
        _fail(clash)
    try:
        idle = idle_validator_warning(config)
    except (LinguaChainError, OSError):
        return None  # the node reports a bad genesis or key itself, with its context
    if idle is not None and not config.log_stderr:  # else the node's log line reaches stderr anyway
        click.echo(f"WARNING: {idle}", err=True)
    return idle


def _write_dev_accounts(path: Path, *, n_accounts: int, n_validators: int, network: str = "devnet") -> None:
    """`accounts.json`: the funded dev accounts of a dev genesis with their secret keys (public test
    keys, derived from labels), then the validators' own addresses. Mode 0600 like every key file."""
    from linguachaind.datadir import write_private
    from linguachaind.devgenesis import dev_accounts

    text = json.dumps(dev_accounts(n_accounts, n_validators, network), indent=2) + "\n"
    write_private(path, text.encode(), mode=0o600)


def port_clash(config: Any) -> str | None:
    """One line naming the port and the flag that sets it when a port the node needs is taken, else None.

    Checked before anything starts (a bind, closed at once), so the operator gets the port and the
    flag instead of a bare `[Errno 98] Address already in use` from deep inside the RPC or p2p start."""
    import errno
    import socket

    wanted: list[tuple[str, int, str]] = []
    if config.rpc_port:
        rpc_hint = "it is the RPC port: choose another with --rpc-port P (or rpc_port in linguachain.toml)"
        wanted.append((config.rpc_bind, config.rpc_port, rpc_hint))
    for maddr in config.listen:
        parts = str(maddr).split("/")
        tcp = len(parts) >= 5 and parts[1] in ("ip4", "ip6") and parts[3] == "tcp" and parts[4].isdigit()
        if tcp and int(parts[4]):
            hint = f"it is the p2p listen address {maddr}: choose another with --listen MADDR"
            wanted.append((parts[2], int(parts[4]), hint))
    for host, port, what in wanted:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the real listeners do
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    return f"cannot listen on {host}:{port} ({exc.strerror}); {what}"
                return f"port {port} on {host} is already in use; {what}"
    return None


def run_node(config: Any, *, warning: str | None = None) -> int:
    """Configure logging and run the node (logging `warning` first); the exit code."""
    import trio

    from linguachaind.datadir import DatadirLockedError, Layout
    from linguachaind.logsetup import configure_logging
    from linguachaind.node import Node

    configure_logging(
        level=config.log_level,
        debug_log=Layout(config.datadir).debug_log,
        stderr=config.log_stderr,
        module_levels=config.log_debug,
    )
    import logging

    log = logging.getLogger("linguachaind")
    if warning is not None:
        log.warning("%s", warning)
    try:
        trio.run(Node(config).run)
    except DatadirLockedError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # one line for the operator, the traceback in debug.log
        first = _first_leaf(exc)
        if isinstance(first, LinguaChainError | OSError):
            log.error("fatal: %s", first)
            click.echo(f"error: {first}", err=True)
        else:
            log.critical("fatal internal error", exc_info=exc)
            click.echo(
                f"error: internal error: {first!r} (traceback in {config.datadir}/debug.log)", err=True
            )
        return 1
    return 0


def _first_leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


@cli.command()
@click.option("--datadir", type=click.Path(path_type=Path))
@click.option("--network", type=click.Choice(["devnet", "testnet", "mainnet"]))
@click.option("--timeout", type=float, default=60.0, show_default=True)
def stop(datadir: Path | None, network: str | None, timeout: float) -> None:
    """Stop the daemon of a datadir and wait until it exited: the `stop` RPC (cookie auth), else
    SIGTERM to the pid that holds the datadir's lock. Both give the same ordered shutdown."""
    from linguachaind.config import resolve_network_and_datadir
    from linguachaind.datadir import Layout

    try:
        _, root = resolve_network_and_datadir(
            {"datadir": str(datadir) if datadir else None, "network": network}, os.environ
        )
    except ConfigError as exc:
        _fail(str(exc))
    layout = Layout(root)
    pid = daemon_pid(layout)
    if pid is None:
        _fail(f"no linguachaind is running on {root}{_remove_stale_runtime_files(layout)}")
    how = _request_stop(layout, pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            click.echo(f"stopped linguachaind (pid {pid}, {how})")
            return
        time.sleep(0.1)
    _fail(f"linguachaind (pid {pid}) did not stop within {timeout:.0f} s")


def daemon_pid(layout: Any) -> int | None:
    """The pid of the linguachaind that runs on this datadir, or None.

    The datadir lock (`flock` on `.lock`, dropped by the kernel when the process dies) is the proof:
    a pid file left by a killed daemon names a pid that may since belong to another process, so the
    pid is taken only from a lock that is held, and must be a linguachaind (its command line)."""
    import fcntl

    try:
        fd = os.open(layout.lock, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None  # nobody holds the lock: no daemon
    finally:
        os.close(fd)
    if not text.isdigit():
        return None
    pid = int(text)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid  # no /proc: trust the lock
    return pid if b"linguachaind" in cmdline else None


def _remove_stale_runtime_files(layout: Any) -> str:
    """After a crash: remove the pid file, cookie and port file nobody owns; say what was removed."""
    removed = []
    for path in (layout.pid, layout.cookie, layout.rpc_port_file):
        if path.exists():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return f" (removed the stale {', '.join(removed)})" if removed else ""


def _request_stop(layout: Any, pid: int) -> str:
    """Ask over RPC; fall back to SIGTERM when the RPC does not answer. Which one was used."""
    import signal

    from linguachain_cli.rpc import RpcCallError, RpcClient, RpcConnectionError

    try:
        RpcClient.from_datadir(layout.root, timeout=5.0).call("stop")
        return "RPC stop"
    except (RpcConnectionError, RpcCallError):
        pass
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it exited meanwhile
    except PermissionError:
        _fail(f"not allowed to signal pid {pid}")
    return "SIGTERM"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


@cli.command("make-genesis")
@click.option("--network", type=click.Choice(["devnet", "testnet"]), default="devnet", show_default=True)
@click.option("--validators", type=click.IntRange(1, 64), default=3, show_default=True, help="dev validators")
@click.option(
    "--validator-key",
    "validator_keys",
    multiple=True,
    help="a real validator public key (hex, from `linguachaind keygen`); repeatable; replaces --validators",
)
@click.option("--accounts", type=click.IntRange(0, 1000), default=10, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--accounts-out", type=click.Path(dir_okay=False, path_type=Path), help="write accounts.json")
def make_genesis(
    network: str,
    validators: int,
    validator_keys: tuple[str, ...],
    accounts: int,
    out: Path,
    accounts_out: Path | None,
) -> None:
    """Write a genesis file: funded dev accounts (public test keys) and either deterministic dev
    validators (devnet, never for value) or the real validator keys given with --validator-key, each
    staked from its own address (a testnet: every validator operator runs `keygen` first)."""
    from chain.genesis import genesis_to_json, parse_genesis
    from linguachaind.devgenesis import devnet_genesis_doc

    try:
        count = len(validator_keys) or validators
        doc = devnet_genesis_doc(count, accounts, network=network)
        if validator_keys:
            _use_validator_keys(doc, validator_keys, network)
        genesis = parse_genesis(doc)
    except (LinguaChainError, ValueError) as exc:
        _fail(str(exc))
    out.write_text(json.dumps(genesis_to_json(genesis), indent=2) + "\n")
    if accounts_out is not None:
        dev_validators = 0 if validator_keys else validators
        _write_dev_accounts(accounts_out, n_accounts=accounts, n_validators=dev_validators, network=network)
    kind = "operator" if validator_keys else "dev"
    click.echo(f"wrote {out} ({count} {kind} validators, {accounts} funded accounts)")
    click.echo("every node of the network initialises with this file:")
    click.echo(f"  linguachaind init --network {network} --genesis {out}")


def _use_validator_keys(doc: dict[str, Any], keys: tuple[str, ...], network: str) -> None:
    """Replace the dev validators of a genesis document by real public keys, each staked from (and
    rewarding) its own address, which also gets the dev validators' balance for fees."""
    from chain.address import HRP_BY_NETWORK, address_of
    from chain.types import PubKey

    dev_addrs = {v["staker"] for v in doc["validators"]}
    balance = next(a["amount"] for a in doc["allocations"] if a["address"] in dev_addrs)
    doc["allocations"] = [a for a in doc["allocations"] if a["address"] not in dev_addrs]
    stake = doc["validators"][0]["stake"]
    doc["validators"] = []
    for text in keys:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"--validator-key {text!r} is not hex") from None
        if len(raw) != 32:
            raise ValueError(f"--validator-key {text!r} is not 32 bytes (64 hex characters)")
        addr = address_of(PubKey(raw), HRP_BY_NETWORK[network])
        doc["allocations"].append({"address": addr, "amount": balance})
        doc["validators"].append({"staker": addr, "validator_pubkey": raw.hex(), "stake": stake})


@cli.command()
@click.option(
    "--network", type=click.Choice(["devnet", "testnet", "mainnet"]), default="testnet", show_default=True
)
@click.option("--datadir", type=click.Path(path_type=Path), help="default: ~/.linguachain/<network>")
def keygen(network: str, datadir: Path | None) -> None:
    """Create this node's keys before the network's genesis exists (random, mode 0600) and print the
    validator public key to send to whoever writes the genesis (`make-genesis --validator-key`)."""
    from chain.address import HRP_BY_NETWORK, address_of
    from linguachaind.config import default_datadir
    from linguachaind.datadir import Layout, ensure_dirs, load_or_create_seed

    root = (datadir or default_datadir(network)).expanduser().absolute()
    layout = Layout(root)
    try:
        ensure_dirs(layout)
        existed = layout.validator_key.exists()
        key = load_or_create_seed(layout.validator_key, seed=None)
        peer_id = _peer_id(layout)
    except (LinguaChainError, OSError) as exc:
        _fail(str(exc))
    pubkey = _pubkey_of(key)
    click.echo(f"{'kept the existing' if existed else 'created a new'} validator key {layout.validator_key}")
    click.echo(f"validator pubkey {pubkey.hex()}")
    click.echo(f"its address      {address_of(pubkey, HRP_BY_NETWORK[network])} (stake and rewards)")
    if peer_id:
        click.echo(f"p2p peer id      {peer_id}")
    click.echo("back up the keys/ directory; then, once you have the genesis file:")
    click.echo(f"  linguachaind init --network {network} --datadir {root} --genesis GENESIS_FILE")


def _pubkey_of(seed: bytes) -> Any:
    from chain.crypto import SecretKey

    return SecretKey(seed).pubkey


def idle_validator_warning(config: Any) -> str | None:
    """A warning when this node holds a validator key staked in the genesis but runs with
    `validator = false` (the default outside devnet): it would connect and never produce or attest,
    and the chain may stall waiting for its stake. None when there is nothing to say."""
    from chain.genesis import load_genesis
    from linguachaind.datadir import Layout, load_or_create_seed

    layout = Layout(config.datadir)
    if config.validator or not layout.validator_key.exists():
        return None
    pubkey = _pubkey_of(load_or_create_seed(layout.validator_key))
    genesis = load_genesis(config.genesis_path)
    stake = sum(int(v.stake) for v in genesis.validators if bytes(v.validator) == bytes(pubkey))
    if not stake:
        return None
    total = sum(int(v.stake) for v in genesis.validators)
    return (
        f"this node's validator key {bytes(pubkey).hex()} holds {100 * stake / total:.0f}% of the genesis "
        "stake but validator = false: it will NOT produce or attest blocks. Start it with --validator "
        "(or validator = true in linguachain.toml)"
    )


def _peer_id(layout: Any) -> str | None:
    try:
        from p2p.host import load_or_create_key, peer_id_of
    except ImportError:
        return None
    return peer_id_of(load_or_create_key(layout.keys))


def node_multiaddrs(root: Path) -> list[str]:
    """The addresses other nodes bootstrap to: each listen address of the datadir's config with
    `/p2p/<peer id>`; a 0.0.0.0 listen address is shown as `<this host's IP>`, to be filled in."""
    from linguachaind.config import build_config
    from linguachaind.datadir import Layout

    peer_id = _peer_id(Layout(root))
    if peer_id is None:
        return []
    config = build_config({"datadir": str(root)})
    out = []
    for maddr in config.listen:
        text = str(maddr).replace("/ip4/0.0.0.0/", "/ip4/<this host's IP>/")
        out.append(f"{text}/p2p/{peer_id}")
    return out


def main() -> None:
    cli(prog_name="linguachaind")


if __name__ == "__main__":
    main()
