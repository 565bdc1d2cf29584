"""A testnet in Linux network namespaces: one namespace per node, veth pairs to a bridge, real daemons.

Owns: creating and removing the namespaces (a hub namespace holds the bridge, so no address or route
ever appears in the host's own namespace), the node addresses `10.77.0.(10+K)/24` that exist only
inside them, cutting/healing a node's link, group partitions (blackhole routes inside the nodes'
namespaces), delay/loss (`tc netem` where the kernel has it, loss through iptables otherwise),
starting/killing `linguachaind` inside a namespace and an RPC forwarder (host 127.0.0.1:P -> the
node's 127.0.0.1:19332 inside its namespace), and the run summary parsed from the nodes' debug logs.
Used by scripts/testnet and tests/netns/. Must not: send traffic anywhere but 127.0.0.0/8 and its own
namespaces, or leave a namespace behind (`destroy` is idempotent; callers run it in `finally`/trap).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from linguachain_cli.rpc import RpcCallError, RpcClient, RpcConnectionError
from tests.functional.framework import wait_until

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SUBNET = "10.77.0"
P2P_PORT = 19333
RPC_PORT = 19332
INIT_SCRIPT = REPO / "docker" / "testnet_init.py"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def _in_ns(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, check=check, timeout=30
    )


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here (None: they can)."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_NET_ADMIN)"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"lcprobe{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
        _ip("-n", probe, "link", "add", "br0", "type", "bridge")
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        return f"cannot create a network namespace with a bridge here: {detail}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


def node_ip(k: int) -> str:
    return f"{SUBNET}.{10 + k}"


def has_netem() -> bool:
    """Whether the kernel has the netem qdisc (some VM kernels do not)."""
    probe = f"lcprobe{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
        _ip("-n", probe, "link", "set", "lo", "up")
        return (
            _in_ns(
                probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms", check=False
            ).returncode
            == 0
        )
    finally:
        _ip("netns", "del", probe, check=False)


@dataclass
class LabNode:
    """One node: its namespace, address, datadir, daemon process and RPC forwarder."""

    index: int
    ns: str
    datadir: Path
    rpc_port: int = 0  # host-side forwarder port
    pid: int = 0
    fwd_pid: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    forwarder: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def ip(self) -> str:
        return node_ip(self.index)

    def rpc(self, timeout: float = 10.0) -> RpcClient:
        cookie = self.datadir / ".cookie"
        user, _, password = cookie.read_text().strip().partition(":")
        return RpcClient(
            "127.0.0.1", self.rpc_port, user=user, password=password, timeout=timeout, cookie_file=cookie
        )

    def call(self, method: str, *params: Any, timeout: float = 10.0) -> Any:
        return self.rpc(timeout).call(method, *params)

    @property
    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return _alive(self.pid)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


class Lab:
    """N nodes in namespaces `<tag>-n<K>` bridged in `<tag>-hub`; state in `root/lab.json`."""

    def __init__(self, root: Path, n_nodes: int, *, tag: str | None = None) -> None:
        self.root = root
        self.tag = tag or f"lc{secrets.token_hex(2)}"
        self.hub = f"{self.tag}-hub"
        self.nodes = [LabNode(k, f"{self.tag}-n{k}", root / f"node{k}") for k in range(n_nodes)]
        self.cut_nodes: set[int] = set()
        self.partitions: list[list[int]] = []

    # -- state (scripts/testnet runs one command per process) ------------------------------------

    def save(self) -> None:
        state = {
            "tag": self.tag,
            "nodes": [
                {"index": n.index, "rpc_port": n.rpc_port, "pid": n.pid, "fwd_pid": n.fwd_pid}
                for n in self.nodes
            ],
            "cut": sorted(self.cut_nodes),
            "partitions": self.partitions,
        }
        tmp = self.root / "lab.json.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.root / "lab.json")

    @classmethod
    def load(cls, root: Path) -> Lab:
        state = json.loads((root / "lab.json").read_text())
        lab = cls(root, len(state["nodes"]), tag=state["tag"])
        for node, saved in zip(lab.nodes, state["nodes"], strict=True):
            node.rpc_port, node.pid, node.fwd_pid = saved["rpc_port"], saved["pid"], saved["fwd_pid"]
        lab.cut_nodes = set(state["cut"])
        lab.partitions = state["partitions"]
        return lab

    # -- network -------------------------------------------------------------------------------

    def create_network(self) -> None:
        _ip("netns", "add", self.hub)
        _ip("-n", self.hub, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for node in self.nodes:
            k = node.index
            _ip("netns", "add", node.ns)
            _ip("link", "add", f"{self.tag}h{k}", "netns", self.hub, "type", "veth",
                "peer", "name", f"{self.tag}n{k}", "netns", node.ns)  # fmt: skip
            _ip("-n", node.ns, "link", "set", f"{self.tag}n{k}", "name", "eth0")
            _ip("-n", node.ns, "addr", "add", f"{node.ip}/24", "dev", "eth0")
            _ip("-n", node.ns, "link", "set", "eth0", "up")
            _ip("-n", node.ns, "link", "set", "lo", "up")
            _ip("-n", self.hub, "link", "set", f"{self.tag}h{k}", "master", "br0")
            _ip("-n", self.hub, "link", "set", f"{self.tag}h{k}", "up")

    def destroy_network(self) -> None:
        for node in self.nodes:
            _ip("netns", "del", node.ns, check=False)
        _ip("netns", "del", self.hub, check=False)

    def cut(self, k: int) -> None:
        """Node k loses its link (packets vanish; TCP notices by timeout, like a pulled cable)."""
        _ip("-n", self.hub, "link", "set", f"{self.tag}h{k}", "down")
        self.cut_nodes.add(k)

    def heal(self, k: int) -> None:
        _ip("-n", self.hub, "link", "set", f"{self.tag}h{k}", "up")
        self.cut_nodes.discard(k)

    def partition(self, groups: list[list[int]]) -> None:
        """Nodes in different groups cannot reach each other (blackhole routes in each namespace)."""
        self.heal_partition()
        for group in groups:
            for k in group:
                for other in range(len(self.nodes)):
                    if other not in group:
                        _ip("-n", self.nodes[k].ns, "route", "add", "blackhole", f"{node_ip(other)}/32")
        self.partitions = groups

    def heal_partition(self) -> None:
        for node in self.nodes:
            for other in range(len(self.nodes)):
                _ip("-n", node.ns, "route", "del", "blackhole", f"{node_ip(other)}/32", check=False)
        self.partitions = []

    def netem(self, k: int, delay_ms: float, loss_pct: float) -> str:
        """Delay and loss on node k's link; returns what was applied."""
        ns = self.nodes[k].ns
        _in_ns(ns, "tc", "qdisc", "del", "dev", "eth0", "root", check=False)
        for chain in ("INPUT", "OUTPUT"):  # the node's own namespace: nothing else lives there
            _in_ns(ns, "iptables", "-F", chain, check=False)
        if delay_ms <= 0 and loss_pct <= 0:
            return "cleared"
        args = ["tc", "qdisc", "add", "dev", "eth0", "root", "netem"]
        if delay_ms > 0:
            args += ["delay", f"{delay_ms:g}ms"]
        if loss_pct > 0:
            args += ["loss", f"{loss_pct:g}%"]
        if _in_ns(ns, *args, check=False).returncode == 0:
            return f"netem {' '.join(args[7:])}"
        if delay_ms > 0:
            raise RuntimeError(
                "this kernel has no netem qdisc (sch_netem): --delay needs it;"
                " --loss alone works through iptables"
            )
        p = f"{loss_pct / 100:.4f}"
        for chain, flag in (("INPUT", "-i"), ("OUTPUT", "-o")):
            _in_ns(ns, "iptables", "-A", chain, flag, "eth0", "-m", "statistic", "--mode", "random",
                   "--probability", p, "-j", "DROP")  # fmt: skip
        return f"iptables loss {loss_pct:g}% each way (no netem in this kernel)"

    # -- nodes ---------------------------------------------------------------------------------

    def init_nodes(
        self,
        *,
        chain_id: str = "lc-netns-1",
        genesis_delay_s: float = 10.0,
        train: dict[int, Path] | None = None,
    ) -> None:
        """Fresh keys, one genesis, every datadir (docker/testnet_init.py, as the compose init does)."""
        hosts = ",".join(n.ip for n in self.nodes) + ("," if len(self.nodes) == 1 else "")
        train_arg = ",".join(f"node{k}:{p}" for k, p in (train or {}).items())
        subprocess.run(
            [PYTHON, str(INIT_SCRIPT), "--root", str(self.root), "--shared", str(self.root),
             "--nodes", str(len(self.nodes)), "--network", "devnet", "--chain-id", chain_id,
             "--hosts", hosts, "--p2p-port", str(P2P_PORT), "--rpc-port", str(RPC_PORT),
             "--genesis-delay-s", str(genesis_delay_s), "--train-data", train_arg],
            check=True, capture_output=True, cwd=REPO, timeout=120,
        )  # fmt: skip

    def start_forwarder(self, node: LabNode) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        node.rpc_port = sock.getsockname()[1]
        proc = subprocess.Popen(
            ["ip", "netns", "exec", node.ns, PYTHON, "-m", "tests.netns.lab", "forward",
             str(sock.fileno()), str(RPC_PORT)],
            pass_fds=(sock.fileno(),), cwd=REPO, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        sock.close()
        node.forwarder = proc
        node.fwd_pid = proc.pid

    def start(self, k: int, extra: tuple[str, ...] = ()) -> None:
        node = self.nodes[k]
        for stale in (".rpcport", ".cookie"):
            with contextlib.suppress(FileNotFoundError):
                (node.datadir / stale).unlink()
        with (node.datadir / "stderr.log").open("ab") as err:
            node.process = subprocess.Popen(
                ["ip", "netns", "exec", node.ns, PYTHON, "-m", "linguachaind", "start",
                 "--datadir", str(node.datadir), "--quiet", *extra],
                stdout=err, stderr=err, stdin=subprocess.DEVNULL, cwd=REPO, start_new_session=True,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )  # fmt: skip
        node.pid = node.process.pid
        if node.fwd_pid == 0 or not _alive(node.fwd_pid):
            self.start_forwarder(node)

    def wait_ready(self, k: int, timeout: float = 90.0) -> None:
        node = self.nodes[k]

        def ready() -> bool:
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(
                    f"{node.name} exited with {node.process.returncode}:\n{self.tail(k, 'stderr.log')}"
                )
            try:
                cookie = (node.datadir / ".cookie").exists()
                return bool(cookie and node.call("getnodeinfo", timeout=5).get("ready"))
            except OSError:
                return False

        try:
            wait_until(ready, timeout=timeout, what=f"{node.name} answering RPC")
        except AssertionError as e:
            raise RuntimeError(f"{e}:\n{self.tail(k, 'stderr.log')}") from None

    def kill(self, k: int, sig: int = signal.SIGKILL, timeout: float = 30.0) -> int | None:
        """Signal node k's daemon and wait until it is gone; its exit code when it is our child."""
        node = self.nodes[k]
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.pid, sig)
        if node.process is not None:
            return node.process.wait(timeout=timeout)

        def gone() -> bool:
            return not _alive(node.pid)

        try:
            wait_until(gone, timeout=timeout, interval=0.1, what=f"{node.name} gone")
        except AssertionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGKILL)
            wait_until(gone, timeout=10.0, interval=0.1, what=f"{node.name} gone after SIGKILL")
        return None

    def stop_all(self) -> None:
        """SIGTERM every daemon (ordered shutdown), SIGKILL what is left after 30 s; forwarders too."""
        for node in self.nodes:
            if node.running:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for node in self.nodes:
            with contextlib.suppress(AssertionError):  # SIGKILL below
                left = max(0.0, deadline - time.monotonic())
                wait_until(lambda n=node: not n.running, timeout=left, interval=0.1)  # type: ignore[misc]
            if node.running:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.pid, signal.SIGKILL)
            if node.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.process.wait(timeout=10)
            if node.fwd_pid and _alive(node.fwd_pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.fwd_pid, signal.SIGKILL)
            if node.forwarder is not None:
                node.forwarder.wait(timeout=10)

    def tail(self, k: int, name: str = "debug.log", n: int = 30) -> str:
        try:
            return "\n".join((self.nodes[k].datadir / name).read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


# -- the run summary ---------------------------------------------------------------------------

_EVENT = re.compile(r"^(\S+Z) \S+\s+\S+: EVENT (\w+) (.*)$")


def events(log: Path) -> list[tuple[float, str, dict[str, str]]]:
    out: list[tuple[float, str, dict[str, str]]] = []
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        m = _EVENT.match(line)
        if not m:
            continue
        try:
            ts = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        fields = dict(kv.split("=", 1) for kv in m.group(3).split() if "=" in kv)
        out.append((ts, m.group(2), fields))
    return out


def finality_lags(log: Path) -> list[float]:
    """Seconds from `block_connected height=h` to the first `block_final` at >= h, per height."""
    connected: dict[int, float] = {}
    lags: list[float] = []
    for ts, name, f in events(log):
        if name == "block_connected" and "height" in f:
            connected.setdefault(int(f["height"]), ts)
        elif name == "block_final" and "height" in f:
            final = int(f["height"])
            for h in [h for h in connected if h <= final]:
                lags.append(ts - connected.pop(h))
    return lags


def reorg_depths(log: Path) -> list[int]:
    return [
        int(f["old_height"]) - int(f["fork_height"])
        for _, name, f in events(log)
        if name == "reorg" and "old_height" in f and "fork_height" in f
    ]


def banned_count(log: Path) -> int:
    try:
        return sum(" banned after " in line for line in log.read_text(errors="replace").splitlines())
    except FileNotFoundError:
        return 0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def summary(lab: Lab) -> dict[str, Any]:
    """Blocks, finality lag p50/p95, reorg depths, peers banned, versions made (from logs + RPC)."""
    lags: list[float] = []
    depths: list[int] = []
    banned = 0
    per_node = []
    for node in lab.nodes:
        log = node.datadir / "debug.log"
        lags += finality_lags(log)
        depths += reorg_depths(log)
        banned += banned_count(log)
        info: dict[str, Any] = {}
        if node.running:
            with contextlib.suppress(RpcConnectionError, RpcCallError, OSError):
                info = node.call("getblockchaininfo", timeout=5)
        per_node.append(
            {"node": node.name, "height": info.get("height"), "final_height": info.get("final_height"),
             "best": (info.get("best_hash") or "")[:16], "model_version": info.get("model_version")}
        )  # fmt: skip
    heights = [p["height"] for p in per_node if p["height"] is not None]
    return {
        "blocks": max(heights) if heights else None,
        "final_height_min": min(
            (p["final_height"] for p in per_node if p["final_height"] is not None), default=None
        ),
        "finality_lag_s": {"p50": round(_pct(lags, 50), 2), "p95": round(_pct(lags, 95), 2), "n": len(lags)},
        "reorgs": len(depths),
        "reorg_depth_max": max(depths, default=0),
        "reorg_depths": sorted(depths),
        "peers_banned": banned,
        "versions_made": max((p["model_version"] or 0 for p in per_node), default=0),
        "nodes": per_node,
    }


def format_summary(s: dict[str, Any]) -> str:
    lag = s["finality_lag_s"]
    lines = [
        f"blocks: {s['blocks']} (lowest final height {s['final_height_min']})",
        f"finality lag: p50 {lag['p50']} s, p95 {lag['p95']} s ({lag['n']} block finalisations)",
        f"reorgs: {s['reorgs']}, depths {s['reorg_depths'] or '-'} (max {s['reorg_depth_max']})",
        f"peers banned: {s['peers_banned']}",
        f"versions made: {s['versions_made']}",
    ]
    for p in s["nodes"]:
        lines.append(f"  {p['node']}: height {p['height']} final {p['final_height']} best {p['best']}")
    return "\n".join(lines)


# -- the RPC forwarder (runs inside a node's namespace with a listening socket from the host's) ----


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _serve_pair(client: socket.socket, port: int) -> None:
    try:
        upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    t = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
    t.start()
    _pipe(client, upstream)
    t.join()
    client.close()
    upstream.close()


def forward(listen_fd: int, port: int) -> None:
    """Accept on the inherited (host-namespace) socket, connect to 127.0.0.1:port in this namespace."""
    lsock = socket.socket(fileno=listen_fd)
    while True:
        client, _ = lsock.accept()
        threading.Thread(target=_serve_pair, args=(client, port), daemon=True).start()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "forward":
        forward(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit("usage: python -m tests.netns.lab forward FD PORT")
