"""`scripts/devnet`: N local nodes on loopback from one command (ARCHITECTURE.md §7). A contract.

Commands (scripts and tests outside this repository rely on them):
  devnet [run --verbose]                   3 nodes in the foreground, one line per block (every log
                                           line with --verbose); Ctrl-C stops all in order
  devnet up --nodes N --dir DIR            N nodes in the background; returns once every node answers RPC
     [--start M]                           start only nodes 0..M-1 (start the others later: start-node)
     [--train-data DIR] [--test-data FILE] the devnet learns by default: node K trains on
     [--no-training]                       DIR/nodeK.jsonl (default data/sample/, made by
     [--adversary KIND --adversary-node K] scripts/make_sample_data.py) and FILE (default
                                           data/sample/test.jsonl) is submitted as a data unit; an
                                           adversary (sign-flip, scale, noise) distorts node K's updates
  devnet start-node --dir DIR --node K     (re)start node K with its original settings
  devnet down --dir DIR                    stop every node (SIGTERM, ordered shutdown)
  devnet status --dir DIR                  height and peers of each node
Layout: DIR/genesis.json (shared), DIR/accounts.json (`[{"name", "address", "secret_key_hex"}]`),
DIR/devnet.json (ports, the training settings), DIR/nodeK/ (a datadir with `linguachaind.pid` while it
runs), DIR/data/ (the training shards and test file the nodes use).

Owns: creating the devnet directory (dev validator K on node K, fixed free ports, bootstrap to
node 0), starting/stopping daemons as detached processes. Must not: hold node logic; every node is a
plain `linguachaind start --datadir DIR/nodeK`, its flags in its `linguachain.toml`.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from linguachain_cli.rpc import RpcCallError, RpcClient, RpcConnectionError

DEFAULT_DIR: Final = Path.home() / ".linguachain" / "devnet-local"
REPO: Final = Path(__file__).resolve().parent.parent
SAMPLE_DATA: Final = REPO / "data" / "sample"
ADVERSARIES: Final = ("sign-flip", "scale", "noise")
# Sized for 2 shared cores (docs/learning.md "The devnet learns"): one torch thread per node, and a
# job of 30 steps of 8 examples takes a few seconds on lc-tiny, well inside version_lag_rounds.
TRAIN_SETTINGS: Final = {"train_steps": 30, "train_batch_size": 8, "train_lr": 0.02, "train_threads": 1}
START_TIMEOUT_S: Final = 90.0
STOP_TIMEOUT_S: Final = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _say(text: str) -> None:
    print(text, flush=True)


@dataclass(frozen=True)
class Learning:
    """What the devnet learns from: per-node shards (None: --no-training), the test file, an adversary."""

    train_dir: Path | None = SAMPLE_DATA
    test_file: Path | None = SAMPLE_DATA / "test.jsonl"
    adversary: str = ""
    adversary_node: int = -1  # -1: the last node


def _training_settings(root: Path, k: int, n_nodes: int, learning: Learning) -> dict[str, Any]:
    """Node K's `[training]` settings: its shard copied into DIR/data/ (the devnet stays whole if
    the source moves), the sized defaults, and the adversary on its node."""
    if learning.train_dir is None:
        return {}
    source = learning.train_dir / f"node{k}.jsonl"
    if not source.is_file():
        raise SystemExit(f"error: {source} is missing (--train-data needs one nodeK.jsonl per node)")
    target = root / "data" / f"node{k}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    settings: dict[str, Any] = {"train_data": str(target), **TRAIN_SETTINGS}
    bad = learning.adversary_node if learning.adversary_node >= 0 else n_nodes - 1
    if learning.adversary and k == bad:
        settings["train_adversary"] = learning.adversary
    return settings


def _sample_data(root: Path, n_nodes: int) -> Path:
    """The bundled shards when they cover `n_nodes`, else shards made for `n_nodes` in DIR/sample."""
    if all((SAMPLE_DATA / f"node{k}.jsonl").is_file() for k in range(n_nodes)):
        return SAMPLE_DATA
    out = root / "sample"
    script = REPO / "scripts" / "make_sample_data.py"
    subprocess.run([sys.executable, str(script), "--out", str(out), "--nodes", str(n_nodes)], check=True)
    return out


def create(
    root: Path, n_nodes: int, n_accounts: int = 10, learning: Learning | None = None
) -> dict[str, Any]:
    """Write genesis, accounts and N initialised datadirs (idempotent: an existing devnet is reused)."""
    learning = Learning() if learning is None else learning
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
    if learning.train_dir == SAMPLE_DATA:
        learning = dataclasses.replace(learning, train_dir=_sample_data(root, n_nodes))
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
                **_training_settings(root, k, n_nodes, learning),
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
    test = learning.test_file
    if test is not None and learning.train_dir is not None:
        if not test.is_file():
            raise SystemExit(f"error: the test data {test} is missing")
        shutil.copyfile(test, root / "data" / "test.jsonl")
    meta = {
        "nodes": n_nodes,
        "created_ms": int(time.time() * 1000),
        "node_info": nodes,
        "training": learning.train_dir is not None,
        "test_data": str(root / "data" / "test.jsonl") if test is not None and learning.train_dir else None,
        "test_unit": None,
    }
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


def submit_test_data(root: Path, meta: dict[str, Any]) -> None:
    """Once: node 0 submits the held-out test file as a data unit (recorded in devnet.json)."""
    if not meta.get("test_data") or meta.get("test_unit"):
        return
    try:
        unit = RpcClient.from_datadir(root / "node0", timeout=60).call("submitdataunit", meta["test_data"])
    except (RpcConnectionError, RpcCallError) as exc:
        _say(f"warning: the test data was not submitted ({exc}); retry with scripts/devnet up")
        return
    meta["test_unit"] = unit["unit_id"]
    (root / "devnet.json").write_text(json.dumps(meta, indent=2) + "\n")
    _say(f"test data: {unit['n_examples']} examples submitted as data unit {unit['unit_id'][:16]}")


def cmd_up(root: Path, n: int, learning: Learning | None = None, start: int | None = None) -> None:
    meta = create(root, n, learning=learning)
    procs = {}
    started = range(n if start is None else start)
    for k in started:
        datadir = root / f"node{k}"
        if _pid(datadir) is None:
            procs[k] = spawn(datadir)
    for k in started:
        wait_rpc(root / f"node{k}", procs.get(k))
    if 0 in started:
        submit_test_data(root, meta)
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


def cmd_foreground(root: Path, n: int, verbose: bool = False, learning: Learning | None = None) -> None:
    """Start N nodes, show one summary line per block (every log line with `verbose`), stop them all
    in order on Ctrl-C or SIGTERM."""
    meta = create(root, n, learning=learning)
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
        submit_test_data(root, meta)
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
        elif name in ("reorg", "stopping", "stopped", "learning_unit"):
            return f"node{node} | {line}"
        return None


def _learning_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train-data", type=Path, help="a directory with nodeK.jsonl per node (default: bundled)")
    p.add_argument("--test-data", type=Path, help="a JSONL file submitted as test data (default: bundled)")
    p.add_argument("--no-training", action="store_true", help="no trainers, no test data")
    p.add_argument("--adversary", choices=ADVERSARIES, help="one node distorts its updates (experiments)")
    p.add_argument("--adversary-node", type=int, default=-1, help="the adversary's node (default: the last)")


def _learning(args: argparse.Namespace, nodes: int) -> Learning:
    if args.no_training:
        if args.train_data or args.test_data or args.adversary:
            raise SystemExit("error: --no-training excludes --train-data, --test-data and --adversary")
        return Learning(None, None)
    if not -1 <= args.adversary_node < nodes:
        raise SystemExit("error: --adversary-node must name one of the nodes")
    train = args.train_data.absolute() if args.train_data else SAMPLE_DATA
    test = args.test_data.absolute() if args.test_data else SAMPLE_DATA / "test.jsonl"
    return Learning(train, test, args.adversary or "", args.adversary_node)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/devnet", description="Run a local LinguaChain devnet.")
    sub = parser.add_subparsers(dest="cmd")
    for name in ("up", "run"):
        p = sub.add_parser(name, help="start N nodes" + (" in the background" if name == "up" else ""))
        p.add_argument("--nodes", type=int, default=3)
        p.add_argument("--dir", type=Path, default=DEFAULT_DIR)
        _learning_flags(p)
        if name == "run":
            p.add_argument("--verbose", action="store_true", help="every log line instead of block summaries")
        else:
            p.add_argument("--start", type=int, default=None, help="start only nodes 0..M-1 (default: all)")
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
        nodes = getattr(args, "nodes", 3)
        learning = _learning(args, nodes) if args.cmd == "run" else Learning()
        cmd_foreground(root, nodes, getattr(args, "verbose", False), learning)
        return
    root = args.dir.absolute()
    if args.cmd == "up":
        if not 1 <= args.nodes <= 64:
            raise SystemExit("error: --nodes must be in 1..64")
        if args.start is not None and not 1 <= args.start <= args.nodes:
            raise SystemExit("error: --start must be in 1..--nodes")
        cmd_up(root, args.nodes, _learning(args, args.nodes), args.start)
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
