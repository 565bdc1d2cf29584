"""Functional test framework: real `linguachaind` processes driven by RPC (Bitcoin Core's is the model).

Owns: `TestNode` (one daemon: datadir, free ports, start/stop/kill, an RPC proxy so that
`node.getblockchaininfo()` is an RPC call, `cli()` for `linguachain-cli --json`), and
`LinguaChainTestFramework` (`set_test_params()` + `run_test()`, a shared devnet genesis, `connect_nodes`,
`sync_blocks`, `sync_mempools`, `wait_until` with deadlines, logs kept on failure, processes reaped).
Must not: sleep to wait (every wait polls a predicate with a deadline) or leave a process behind.
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from linguachain_cli.rpc import RpcCallError, RpcClient, RpcConnectionError

log = logging.getLogger("functional")

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
RPC_TIMEOUT_S = 30.0
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
_LIVE: list[subprocess.Popen[bytes]] = []  # every daemon started in this process, for reaping


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (the kernel picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.2, what: str = ""
) -> Any:
    """Poll `predicate` until it returns a truthy value (returned) or fail at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (RpcCallError, RpcConnectionError) as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_exc})" if last_exc else ""
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what or predicate.__name__}{detail}"
            )
        time.sleep(interval)


def reap_all() -> None:
    for proc in _LIVE:
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
    _LIVE.clear()


class TestNode:
    """One linguachaind process with its own datadir and ports."""

    __test__ = False  # not a pytest class

    def __init__(self, index: int, datadir: Path, *, extra_args: Sequence[str] = ()) -> None:
        self.index = index
        self.datadir = datadir
        self.p2p_port = free_port()
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self._rpc: RpcClient | None = None
        self.stderr_path = datadir / "stderr.log"

    # -- process control -----------------------------------------------------------------------

    def command(self, extra_args: Sequence[str] = ()) -> list[str]:
        return [
            PYTHON, "-m", "linguachaind", "start",
            "--datadir", str(self.datadir),
            "--rpc-port", "0",
            "--listen", f"/ip4/127.0.0.1/tcp/{self.p2p_port}",
            "--quiet",
            *self.extra_args, *extra_args,
        ]  # fmt: skip

    def start(self, extra_args: Sequence[str] = (), *, wait: bool = True) -> None:
        assert self.process is None or self.process.poll() is not None, f"node{self.index} already running"
        for stale in (".rpcport", ".cookie"):
            with contextlib.suppress(FileNotFoundError):
                (self.datadir / stale).unlink()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self.stderr_path.open("ab") as err:
            self.process = subprocess.Popen(
                self.command(extra_args), stdout=err, stderr=err, stdin=subprocess.DEVNULL, cwd=REPO, env=env
            )
        _LIVE.append(self.process)
        self._rpc = None
        if wait:
            self.wait_for_rpc_connection()

    def wait_for_rpc_connection(self, timeout: float = START_TIMEOUT_S) -> None:
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"node{self.index} exited with {self.process.returncode} while starting:\n"
                    + self.stderr_tail()
                )
            if not (self.datadir / ".rpcport").exists() or not (self.datadir / ".cookie").exists():
                return False
            self._rpc = RpcClient.from_datadir(self.datadir, timeout=RPC_TIMEOUT_S)
            return bool(self._rpc.call("getnodeinfo").get("ready"))

        wait_until(ready, timeout=timeout, what=f"node{self.index} RPC")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop_node(self, *, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        """Send `sig` (SIGTERM: ordered stop) and wait for the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(f"node{self.index} did not stop within {timeout:g} s after {sig}") from None
        self._rpc = None
        return code

    def assert_start_raises_init_error(self, expected: str, extra_args: Sequence[str] = ()) -> str:
        """Start a second process on this datadir/config and check it exits 1 with `expected` in one
        line on stderr (Bitcoin Core's helper of the same name); returns that line."""
        proc = subprocess.run(
            self.command(extra_args), capture_output=True, cwd=REPO, timeout=START_TIMEOUT_S, text=True
        )
        err = proc.stderr.strip()
        assert proc.returncode == 1, f"expected exit code 1, got {proc.returncode}: {err}"
        assert expected in err, f"expected {expected!r} in {err!r}"
        assert "Traceback" not in err
        assert len(err.splitlines()) == 1, err
        return err

    def kill(self) -> None:
        """SIGKILL: a crash. The datadir lock goes with the process."""
        self.stop_node(sig=signal.SIGKILL)

    def stderr_tail(self, n: int = 40) -> str:
        try:
            lines = self.stderr_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-n:])

    def debug_log_tail(self, n: int = 60) -> str:
        try:
            lines = (self.datadir / "debug.log").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-n:])

    # -- RPC and CLI ---------------------------------------------------------------------------

    @property
    def rpc(self) -> RpcClient:
        if self._rpc is None:
            self._rpc = RpcClient.from_datadir(self.datadir, timeout=RPC_TIMEOUT_S)
        return self._rpc

    def __getattr__(self, name: str) -> Any:
        """`node.getblockchaininfo()` is an RPC call (Bitcoin Core style)."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.rpc, name)

    def cli(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> Any:
        """`linguachain-cli --datadir D --json ARGS`: the parsed JSON (or CalledProcessError)."""
        cmd = [PYTHON, "-m", "linguachain_cli.main", "--datadir", str(self.datadir), "--json", *args]
        proc = subprocess.run(
            cmd, capture_output=True, cwd=REPO, env={**os.environ, **(env or {})}, timeout=120
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"linguachain-cli {' '.join(args)} failed ({proc.returncode}): {proc.stderr.decode()}"
            )
        return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else proc

    def p2p_addr(self) -> str:
        info = self.getnodeinfo()
        addrs = [a for a in info["listen_addrs"] if "127.0.0.1" in a] or info["listen_addrs"]
        addr = addrs[0]
        return addr if "/p2p/" in addr else f"{addr}/p2p/{info['peer_id']}"


class LinguaChainTestFramework(abc.ABC):
    """Subclass, set `num_nodes` in `set_test_params()`, write `run_test()`; run with `main()`."""

    def __init__(self) -> None:
        self.num_nodes = 1
        self.num_validators: int | None = None  # default: one dev validator per node
        self.extra_args: list[list[str]] = []
        self.connect_topology = "line"  # "line": bootstrap to node0 and connect i -> i-1; "none": none
        self.genesis_delay_s = 8.0  # genesis timestamp = setup time + this: first block after all connect
        self.nodes: list[TestNode] = []
        self.tmpdir = Path()
        self.wallet_dir = Path()
        self.keep_tmpdir = bool(os.environ.get("LC_KEEP_TMPDIR"))

    # -- to override ---------------------------------------------------------------------------

    @abc.abstractmethod
    def set_test_params(self) -> None:
        """Set `num_nodes` and other parameters (called before the network starts)."""

    @abc.abstractmethod
    def run_test(self) -> None:
        """The test itself, once the nodes run and are connected."""

    def setup_network(self) -> None:
        """Shared genesis, N datadirs, start every node, connect them."""
        self.setup_nodes()
        if self.connect_topology == "line" and self.nodes[0].getnodeinfo().get("peer_id"):
            for i in range(1, self.num_nodes):
                self.connect_nodes(i, i - 1)

    # -- building blocks -----------------------------------------------------------------------

    def setup_nodes(self) -> None:
        from chain.genesis import parse_genesis
        from linguachaind.devgenesis import devnet_genesis_doc
        from linguachaind.main import init_datadir

        n_val = self.num_validators if self.num_validators is not None else self.num_nodes
        genesis_path = self.tmpdir / "genesis.json"
        # The genesis lies a little in the future: no node proposes before every node is up and
        # connected (nodes that build separate chains first are a different test).
        start_ms = int(time.time() * 1000) + int(self.genesis_delay_s * 1000)
        doc = devnet_genesis_doc(n_val, timestamp_ms=start_ms)
        parse_genesis(doc)
        genesis_path.write_text(json.dumps(doc, indent=2))
        bootstrap: list[str] = []
        for i in range(self.num_nodes):
            datadir = self.tmpdir / f"node{i}"
            node = TestNode(i, datadir, extra_args=self.extra_args[i] if i < len(self.extra_args) else [])
            settings = {"bootstrap": bootstrap[:]} if self.connect_topology == "line" else {}
            init_datadir(
                network="devnet", datadir=datadir, genesis_file=genesis_path, validators=n_val,
                dev_validator=i if i < n_val else None, settings=settings, force=False,
            )  # fmt: skip
            if i == 0:
                from p2p.host import load_or_create_key, peer_id_of

                peer = peer_id_of(load_or_create_key(datadir / "keys"))
                bootstrap.append(f"/ip4/127.0.0.1/tcp/{node.p2p_port}/p2p/{peer}")
            self.nodes.append(node)
        for node in self.nodes:
            node.start(wait=False)
        for node in self.nodes:
            node.wait_for_rpc_connection()

    def connect_nodes(self, a: int, b: int) -> None:
        """Node `a` dials node `b`; returns once each lists the other as a peer."""
        self.nodes[a].addpeer(self.nodes[b].p2p_addr())
        id_a = self.nodes[a].getnodeinfo()["peer_id"]
        id_b = self.nodes[b].getnodeinfo()["peer_id"]
        wait_until(
            lambda: (
                any(p["peer_id"] == id_b for p in self.nodes[a].getpeerinfo())
                and any(p["peer_id"] == id_a for p in self.nodes[b].getpeerinfo())
            ),
            timeout=30,
            what=f"node{a} <-> node{b} connected",
        )

    def sync_blocks(self, nodes: Sequence[TestNode] | None = None, *, timeout: float = 120) -> None:
        """Wait until every node has the same best block."""
        nodes = list(nodes or self.nodes)

        def same_tip() -> bool:
            return len({n.getblockchaininfo()["best_hash"] for n in nodes}) == 1

        wait_until(same_tip, timeout=timeout, what="blocks in sync")

    def sync_mempools(self, nodes: Sequence[TestNode] | None = None, *, timeout: float = 60) -> None:
        nodes = list(nodes or self.nodes)

        def same_pool() -> bool:
            return len({tuple(sorted(n.getrawmempool())) for n in nodes}) == 1

        wait_until(same_pool, timeout=timeout, what="mempools in sync")

    def wait_for_height(
        self, height: int, nodes: Sequence[TestNode] | None = None, *, timeout: float = 120
    ) -> None:
        nodes = list(nodes or self.nodes)
        wait_until(
            lambda: all(n.getblockchaininfo()["height"] >= height for n in nodes),
            timeout=timeout,
            what=f"height {height} on {len(nodes)} node(s)",
        )

    def cli_env(self) -> dict[str, str]:
        """Environment for `node.cli(...)`: a private wallet dir, a fixed test passphrase."""
        return {"LINGUACHAIN_WALLET_DIR": str(self.wallet_dir), "LINGUACHAIN_PASSPHRASE": "functional-test"}

    def save_logs(self) -> Path:
        """Copy every node's logs out of the tmpdir (pytest prunes old tmpdirs): $LC_FAILURE_DIR or
        /tmp/lc-functional-failures/<test>-<time>/nodeK/."""
        base = Path(os.environ.get("LC_FAILURE_DIR", "/tmp/lc-functional-failures"))
        dest = base / f"{type(self).__name__}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        for node in self.nodes:
            target = dest / f"node{node.index}"
            target.mkdir(parents=True, exist_ok=True)
            for name in ("debug.log", "stderr.log", "linguachain.toml"):
                with contextlib.suppress(OSError):
                    shutil.copy(node.datadir / name, target / name)
        return dest

    # -- running -------------------------------------------------------------------------------

    def main(self, tmpdir: Path | None = None) -> None:
        """Set up, run, tear down. On failure the datadirs are kept and the logs' tails printed."""
        self.set_test_params()
        self.tmpdir = Path(tmpdir) if tmpdir else Path(tempfile.mkdtemp(prefix="lc_func_"))
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        self.wallet_dir = self.tmpdir / "wallets"
        ok = False
        try:
            self.setup_network()
            self.run_test()
            ok = True
        finally:
            for node in self.nodes:
                if node.running:
                    try:
                        node.stop_node()
                    except AssertionError as exc:
                        log.error("%s", exc)
            reap_all()
            if not ok:
                saved = self.save_logs()
                for node in self.nodes:
                    sys.stderr.write(
                        f"\n===== node{node.index} debug.log (tail) =====\n{node.debug_log_tail()}\n"
                    )
                    sys.stderr.write(f"===== node{node.index} stderr (tail) =====\n{node.stderr_tail()}\n")
                sys.stderr.write(f"\nkept datadirs in {self.tmpdir}; logs copied to {saved}\n")
            elif not self.keep_tmpdir and tmpdir is None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
