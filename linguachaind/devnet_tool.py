"""`scripts/devnet`: N local nodes on loopback from one command (ARCHITECTURE.md §7). A contract.

Commands (scripts and tests outside this repository rely on them):
  devnet [run --verbose]                   3 nodes in the foreground, one line per block (every log
                                           line with --verbose); Ctrl-C stops all in order
  devnet up --nodes N --dir DIR            N nodes in the background; returns once every node answers RPC
  devnet start-node --dir DIR --node K     (re)start node K with its original settings
  devnet down --dir DIR                    stop every node (SIGTERM, ordered shutdown)
  devnet status --dir DIR                  height and peers of each node
Layout: DIR/genesis.json (shared), DIR/accounts.json (`[{"name", "address", "secret_key_hex"}]`),
DIR/devnet.json (ports), DIR/nodeK/ (a datadir with `linguachaind.pid` while it runs).

Owns: creating the devnet directory (dev validator K on node K, fixed free ports, bootstrap to
node 0), starting/stopping daemons as detached processes. Must not: hold node logic; every node is a
plain `linguachaind start --datadir DIR/nodeK`, its flags in its `linguachain.toml`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from linguachain_cli.rpc import RpcCallError, RpcClient, RpcConnectionError

DEFAULT_DIR: Final = Path.home() / ".linguachain" / "devnet-local"
START_TIMEOUT_S: Final = 90.0
STOP_TIMEOUT_S: Final = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _say(text: str) -> None:
    print(text, flush=True)


def create(root: Path, n_nodes: int, n_accounts: int = 10) -> dict[str, Any]:
    """Write genesis, accounts and N initialised datadirs (idempotent: an existing devnet is reused)."""
    from chain.genesis import genesis_to_json, parse_genesis
    from linguachaind.devgenesis import dev_accounts, devnet_genesis_doc
    from linguachaind.main import init_datadir

    meta_path = root / "devnet.json"
    if meta_path.exists():
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        if meta["nodes"] != n_nodes:
            raise SystemExit(
                f"error: {root} holds a {meta['nodes']}-node devnet; "
                f"use --nodes {meta['nodes']} or another --dir"
            )
        return meta
    root.mkdir(parents=True, exist_ok=True)
    # The genesis lies a few seconds ahead so that no node proposes before the others are up and
    # connected to node 0 (nodes that start on separate chains are a harder case than a local demo).
    start_ms = int(time.time() * 1000) + min(20_000, 5_000 + 500 * n_nodes)
    genesis = parse_genesis(devnet_genesis_doc(n_nodes, n_accounts, timestamp_ms=start_ms))
    (root / "genesis.json").write_text(json.dumps(genesis_to_json(genesis), indent=2) + "\n")
    (root / "accounts.json").write_text(json.dumps(dev_accounts(n_accounts, n_nodes), indent=2) + "\n")
    nodes = []
    bootstrap: list[str] = []
    for k in range(n_nodes):
        p2p_port, rpc_port = _free_port(), _free_port()
        datadir = root / f"node{k}"
        init_datadir(
            network="devnet",
            datadir=datadir,
            genesis_file=root / "genesis.json",
            validators=n_nodes,
            dev_validator=k,
            settings={
                "rpc_port": rpc_port,
                "listen": [f"/ip4/127.0.0.1/tcp/{p2p_port}"],
                "bootstrap": bootstrap[:],
            },
            force=False,
        )
        peer_id = _peer_id(datadir)
        if peer_id is not None and k == 0:
            bootstrap.append(f"/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{peer_id}")
        nodes.append(
            {
                "node": k,
                "datadir": str(datadir),
                "p2p_port": p2p_port,
                "rpc_port": rpc_port,
                "peer_id": peer_id,
            }
        )
    meta = {"nodes": n_nodes, "created_ms": int(time.time() * 1000), "node_info": nodes}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _peer_id(datadir: Path) -> str | None:
    try:
        from p2p.host import load_or_create_key, peer_id_of
    except ImportError:
        return None
    return peer_id_of(load_or_create_key(datadir / "keys"))


def _pid(datadir: Path) -> int | None:
    try:
        text = (datadir / "linguachaind.pid").read_text().strip()
    except FileNotFoundError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def spawn(datadir: Path, *, foreground_logs: bool = False) -> subprocess.Popen[bytes]:
    """Start `linguachaind start --datadir D` detached (its own session, output in D/stdout.log)."""
    for stale in (".rpcport", ".cookie"):
        (datadir / stale).unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "linguachaind", "start", "--datadir", str(datadir)]
    if not foreground_logs:
        cmd.append("--quiet")
    log = (datadir / "stdout.log").open("ab")
    try:
        # Own session even in the foreground: a terminal's Ctrl-C reaches only this tool, which stops
        # each node with one SIGTERM (the node also survives a second signal, see node.py).
        return subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        log.close()


def wait_rpc(
    datadir: Path, proc: subprocess.Popen[bytes] | None, timeout: float = START_TIMEOUT_S
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            tail = (datadir / "stdout.log").read_text(errors="replace").splitlines()[-15:]
            raise SystemExit(f"error: node in {datadir} exited ({proc.returncode}):\n" + "\n".join(tail))
        try:
            info: dict[str, Any] = RpcClient.from_datadir(datadir, timeout=5).call("getnodeinfo")
            if info.get("ready", True):
                return info
        except (RpcConnectionError, RpcCallError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"error: node in {datadir} did not answer RPC within {timeout:.0f} s")
        time.sleep(0.2)


def start_node(root: Path, k: int) -> None:
    datadir = root / f"node{k}"
    if not (datadir / "linguachain.toml").exists():
        raise SystemExit(
            f"error: {datadir} is not a devnet node (run `scripts/devnet up --dir {root}` first)"
        )
    if _pid(datadir) is not None:
        _say(f"node{k} already running (pid {_pid(datadir)})")
        return
    proc = spawn(datadir)
    wait_rpc(datadir, proc)
    _say(f"node{k} up (pid {proc.pid}): {cli_command()} --datadir {datadir} status")


def stop_node(root: Path, k: int) -> bool:
    datadir = root / f"node{k}"
    pid = _pid(datadir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _pid(datadir) == pid and _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    return True


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


def cli_command() -> str:
    """`linguachain-cli` as the operator can type it: the bare name when the shell finds this
    install's script on PATH, else its absolute path (a fresh clone has nothing on PATH)."""
    script = Path(sys.executable).parent / "linguachain-cli"
    found = shutil.which("linguachain-cli")
    if found is not None and (not script.exists() or Path(found).resolve() == script.resolve()):
        return "linguachain-cli"
    return str(script) if script.exists() else "linguachain-cli"


def hints(root: Path, meta: dict[str, Any]) -> None:
    cli = cli_command()
    _say(f"\ndevnet of {meta['nodes']} nodes in {root}")
    for info in meta["node_info"]:
        _say(f"  node{info['node']}: {cli} --datadir {info['datadir']} status")
    accounts = json.loads((root / "accounts.json").read_text())
    _say(f"funded dev accounts (public test keys): {root / 'accounts.json'}; import dev0 with")
    _say(
        f"  {cli} --datadir {root / 'node0'} wallet import --name dev0"
        f" --secret-key-hex {accounts[0]['secret_key_hex']}"
    )
    if cli != "linguachain-cli":
        _say(f"(`source {Path(sys.executable).parent}/activate` puts both commands on PATH)")


def cmd_up(root: Path, n: int) -> None:
    meta = create(root, n)
    procs = {}
    for k in range(n):
        datadir = root / f"node{k}"
        if _pid(datadir) is None:
            procs[k] = spawn(datadir)
    for k in range(n):
        wait_rpc(root / f"node{k}", procs.get(k))
    hints(root, meta)


def cmd_down(root: Path) -> None:
    if not (root / "devnet.json").exists():
        raise SystemExit(f"error: {root} is not a devnet directory")
    meta = json.loads((root / "devnet.json").read_text())
    stopped = [k for k in reversed(range(meta["nodes"])) if stop_node(root, k)]
    _say(f"stopped {len(stopped)} node(s) in {root}")


def cmd_status(root: Path) -> None:
    meta = json.loads((root / "devnet.json").read_text())
    for k in range(meta["nodes"]):
        datadir = root / f"node{k}"
        if _pid(datadir) is None:
            _say(f"node{k}: stopped")
            continue
        try:
            rpc = RpcClient.from_datadir(datadir, timeout=5)
            info = rpc.call("getblockchaininfo")
            _say(f"node{k}: height {info['height']} final {info['final_height']} best {info['best_hash']}")
        except (RpcConnectionError, RpcCallError) as exc:
            _say(f"node{k}: running, RPC: {exc}")


def cmd_foreground(root: Path, n: int, verbose: bool = False) -> None:
    """Start N nodes, show one summary line per block (every log line with `verbose`), stop them all
    in order on Ctrl-C or SIGTERM."""
    meta = create(root, n)
    procs = {k: spawn(root / f"node{k}", foreground_logs=True) for k in range(n)}
    stop = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    # SIGHUP too: a closed terminal must stop the nodes in order, not orphan them (own sessions).
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        for k in range(n):
            wait_rpc(root / f"node{k}", procs[k])
            if stop:
                return
        hints(root, meta)
        what = "every node's log" if verbose else f"one line per block (full logs: {root}/nodeK/debug.log)"
        _say(f"{what} follows; Ctrl-C stops every node\n")
        _follow(root, procs, verbose, lambda: stop)
    finally:
        _say("\nstopping the devnet ...")
        for k in reversed(range(n)):
            if procs[k].poll() is None:
                procs[k].send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
        _say(f"stopped; the chain stays in {root} (run scripts/devnet again to resume)")


def _follow(
    root: Path, procs: dict[int, subprocess.Popen[bytes]], verbose: bool, stopped: Callable[[], bool]
) -> None:
    """Print the nodes' new log lines (prefixed) or their block summaries until `stopped()`."""
    files = {k: (root / f"node{k}" / "stdout.log").open("r", errors="replace") for k in procs}
    for fh in files.values():
        fh.seek(0, os.SEEK_END)
    summary = BlockSummary()
    while not stopped() and any(p.poll() is None for p in procs.values()):
        idle = True
        for k, fh in files.items():
            for line in fh.readlines():
                idle = False
                out = f"node{k} | {line}" if verbose else summary.feed(k, line)
                if out:
                    sys.stdout.write(out if out.endswith("\n") else out + "\n")
        sys.stdout.flush()
        if idle:
            time.sleep(0.2)
    for fh in files.values():
        fh.close()


_FIELD = re.compile(r"(\w+)=(\S+)")


class BlockSummary:
    """Turns the nodes' log lines into one line per proposed block, plus every warning and error."""

    def __init__(self) -> None:
        self.final = -1
        self.kinds: dict[str, tuple[str, str]] = {}  # block hash -> (kind, txs)

    def feed(self, node: int, line: str) -> str | None:
        if " EVENT " not in line:
            level = line.split(" ", 2)[1] if line.count(" ") >= 2 else ""
            syncing = ": sync: from " in line or ": sync: reached " in line  # a late node catching up
            return f"node{node} | {line}" if syncing or level in ("WARNING", "ERROR", "CRITICAL") else None
        name, _, rest = line.partition(" EVENT ")[2].partition(" ")
        fields = dict(_FIELD.findall(rest))
        if name == "block_connected":
            self.kinds[fields.get("hash", "")] = (fields.get("kind", "?"), fields.get("txs", "-"))
            if len(self.kinds) > 1000:
                self.kinds.pop(next(iter(self.kinds)))
        elif name == "block_final":
            self.final = max(self.final, int(fields.get("height", "-1")))
        elif name == "block_proposed":
            kind, txs = self.kinds.get(fields.get("hash", ""), ("?", "-"))
            final = self.final if self.final >= 0 else "-"
            return (
                f"height {fields.get('height', '?'):>4}  {kind:<7} {fields.get('hash')}  by node{node}"
                f" (rank {fields.get('rank')})  final {final}" + (f"  txs {txs}" if kind == "TX" else "")
            )
        elif name in ("reorg", "stopping", "stopped"):
            return f"node{node} | {line}"
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/devnet", description="Run a local LinguaChain devnet.")
    sub = parser.add_subparsers(dest="cmd")
    for name in ("up", "run"):
        p = sub.add_parser(name, help="start N nodes" + (" in the background" if name == "up" else ""))
        p.add_argument("--nodes", type=int, default=3)
        p.add_argument("--dir", type=Path, default=DEFAULT_DIR)
        if name == "run":
            p.add_argument("--verbose", action="store_true", help="every log line instead of block summaries")
    p = sub.add_parser("start-node", help="(re)start one node with its original settings")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--node", type=int, required=True)
    p = sub.add_parser("stop-node", help="stop one node (SIGTERM)")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--node", type=int, required=True)
    for name in ("down", "status"):
        p = sub.add_parser(name)
        p.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.cmd in (None, "run"):
        root = getattr(args, "dir", DEFAULT_DIR).absolute()
        cmd_foreground(root, getattr(args, "nodes", 3), getattr(args, "verbose", False))
        return
    root = args.dir.absolute()
    if args.cmd == "up":
        if not 1 <= args.nodes <= 64:
            raise SystemExit("error: --nodes must be in 1..64")
        cmd_up(root, args.nodes)
    elif args.cmd == "start-node":
        start_node(root, args.node)
    elif args.cmd == "stop-node":
        _say(f"node{args.node}: " + ("stopped" if stop_node(root, args.node) else "was not running"))
    elif args.cmd == "down":
        cmd_down(root)
    elif args.cmd == "status":
        cmd_status(root)


if __name__ == "__main__":
    main()
