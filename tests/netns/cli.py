"""`scripts/testnet`: the compose testnet's topology in network namespaces, no Docker (docs/testnet.md).

  scripts/testnet up [--nodes 4] [--dir DIR] [--train-node 1]   namespaces, bridge, keys, genesis, daemons
  scripts/testnet status|down [--dir DIR]                       heights; down prints the run summary
  scripts/testnet cut|heal NODE                                 pull / plug node's cable
  scripts/testnet partition 0,1/2,3 | heal-all                  group partition / undo it and every cut
  scripts/testnet netem NODE --delay MS --loss PCT              delay/loss on node's link (0 0 clears)
  scripts/testnet kill|start NODE                               SIGKILL / restart a node's daemon
  scripts/testnet cli NODE ARGS...                              linguachain-cli inside the node's namespace
  scripts/testnet soak [--nodes 6] [--minutes 30] [--kill-every 300]   the long fault run, then down

Owns: the command line and the soak schedule. Must not: hold namespace logic (tests/netns/lab.py).
Every command that creates something removes it again when it fails (and on SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from tests.netns.lab import PYTHON, REPO, Lab, format_summary, summary, unavailable_reason

DEFAULT_DIR = Path("/tmp/lc-testnet")


def _node(text: str) -> int:
    return int(text.removeprefix("node"))


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _teardown(lab: Lab) -> dict[str, object]:
    result = summary(lab)
    lab.stop_all()
    lab.destroy_network()
    (lab.root / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    with __import__("contextlib").suppress(FileNotFoundError):
        (lab.root / "lab.json").unlink()
    return result


def cmd_up(root: Path, nodes: int, train_node: int | None) -> Lab:
    reason = unavailable_reason()
    if reason:
        raise SystemExit(f"error: {reason}")
    if (root / "lab.json").exists():
        raise SystemExit(f"error: a testnet runs in {root} (scripts/testnet down --dir {root} first)")
    if root.exists():
        import shutil

        shutil.rmtree(root)
    root.mkdir(parents=True)
    lab = Lab(root, nodes)
    try:
        lab.create_network()
        lab.save()  # from here on `down` can clean up even if this process dies
        train = {}
        if train_node is not None:
            data = root / "train.jsonl"
            data.write_text((REPO / "docker" / "train" / "node1.jsonl").read_text())
            train = {train_node: data}
        lab.init_nodes(genesis_delay_s=5.0 + nodes, train=train)
        for k in range(nodes):
            lab.start(k)
        lab.save()
        for k in range(nodes):
            lab.wait_ready(k)
    except BaseException:
        _teardown(lab)
        raise
    print(f"testnet of {nodes} nodes in namespaces {lab.tag}-n0..{nodes - 1} (state in {root})")
    for node in lab.nodes:
        print(f"  {node.name}: {node.ip}  rpc on host 127.0.0.1:{node.rpc_port}  datadir {node.datadir}")
    print(f"  CLI: scripts/testnet cli node0 status --dir {root}")
    return lab


def cmd_status(lab: Lab) -> None:
    s = summary(lab)
    for p in s["nodes"]:
        cut = " (cut)" if _node(p["node"]) in lab.cut_nodes else ""
        print(f"{p['node']}: height {p['height']} final {p['final_height']} best {p['best']}{cut}")
    if lab.partitions:
        print(f"partition: {lab.partitions}")


def _heights(lab: Lab) -> str:
    out = []
    for node in lab.nodes:
        try:
            info = node.call("getblockchaininfo", timeout=5)
            out.append(f"{info['height']}/{info['final_height']}")
        except Exception:  # a killed node, a busy one: the report says so and goes on
            out.append("down")
    return "height/final " + " ".join(out)


def soak(lab: Lab, minutes: float, kill_every: float) -> None:
    """Kill -9 a node (round robin, skipping node0 the first time) every `kill_every` s, restart it
    after 20 s; one 2-way partition for 60 s in the middle; report heights as it goes."""
    n = len(lab.nodes)
    end = time.monotonic() + minutes * 60
    next_kill = time.monotonic() + kill_every
    partition_at = time.monotonic() + minutes * 30 - 30
    victim = 1
    partitioned = False
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_kill:
            print(f"[soak] kill -9 node{victim}", flush=True)
            lab.kill(victim)
            time.sleep(20)  # the schedule itself, not a wait for a condition
            lab.start(victim)
            lab.wait_ready(victim)
            print(f"[soak] node{victim} restarted", flush=True)
            victim = (victim + 1) % n
            next_kill = now + kill_every
        if not partitioned and now >= partition_at:
            groups = [list(range(n // 2 + 1)), list(range(n // 2 + 1, n))]
            print(f"[soak] partition {groups} for 60 s", flush=True)
            lab.partition(groups)
            time.sleep(60)
            lab.heal_partition()
            print("[soak] partition healed", flush=True)
            partitioned = True
        time.sleep(30)  # the report interval
        print(f"[soak] t={minutes * 60 - (end - time.monotonic()):.0f}s {_heights(lab)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/testnet", description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"state directory ({DEFAULT_DIR})")
    sub = parser.add_subparsers(dest="cmd", required=True)
    add = functools.partial(sub.add_parser, parents=[common])
    p = add("up")
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--train-node", type=int, default=1, help="node with train_data (-1: none)")
    add("down")
    add("status")
    for name in ("cut", "heal", "kill", "start"):
        add(name).add_argument("node")
    add("partition").add_argument("groups", help="e.g. 0,1/2,3")
    add("heal-all")
    p = add("netem")
    p.add_argument("node")
    p.add_argument("--delay", type=float, default=0.0, help="ms")
    p.add_argument("--loss", type=float, default=0.0, help="percent")
    p = add("cli")
    p.add_argument("node")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p = add("soak")
    p.add_argument("--nodes", type=int, default=6)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--kill-every", type=float, default=300.0, help="seconds")
    args = parser.parse_args(argv)
    if args.cmd == "cli" and "--dir" in args.args[:-1]:  # `cli NODE ... --dir D`: D is ours
        i = args.args.index("--dir")
        args.dir = Path(args.args[i + 1])
        del args.args[i : i + 2]
    root = args.dir.absolute()
    signal.signal(signal.SIGTERM, _raise_interrupt)

    if args.cmd in ("up", "soak"):
        train = (
            None if args.cmd == "up" and args.train_node < 0 else (args.train_node if args.cmd == "up" else 1)
        )
        lab = cmd_up(root, args.nodes, train)
        if args.cmd == "up":
            return 0
        try:
            soak(lab, args.minutes, args.kill_every)
        finally:
            print(format_summary(_teardown(lab)))
        return 0
    if not (root / "lab.json").exists():
        raise SystemExit(f"error: no testnet runs in {root} (scripts/testnet up --dir {root})")
    lab = Lab.load(root)
    if args.cmd == "down":
        print(format_summary(_teardown(lab)))
        print(f"testnet removed (summary in {root / 'summary.json'})")
        return 0
    if args.cmd == "status":
        cmd_status(lab)
        return 0
    if args.cmd == "cli":
        node = lab.nodes[_node(args.node)]
        cmd = ["ip", "netns", "exec", node.ns, PYTHON, "-m", "linguachain_cli.main",
               "--datadir", str(node.datadir), *args.args]  # fmt: skip
        return subprocess.run(cmd, cwd=REPO, check=False).returncode
    if args.cmd == "partition":
        lab.partition([[int(k) for k in g.split(",")] for g in args.groups.split("/")])
    elif args.cmd == "heal-all":
        lab.heal_partition()
        for k in list(lab.cut_nodes):
            lab.heal(k)
    elif args.cmd == "cut":
        lab.cut(_node(args.node))
    elif args.cmd == "heal":
        lab.heal(_node(args.node))
    elif args.cmd == "netem":
        try:
            print(lab.netem(_node(args.node), args.delay, args.loss))
        except RuntimeError as exc:
            raise SystemExit(f"error: {exc}") from None
    elif args.cmd == "kill":
        lab.kill(_node(args.node))
    elif args.cmd == "start":
        k = _node(args.node)
        lab.start(k)
        lab.save()
        lab.wait_ready(k)
    lab.save()
    print(f"{args.cmd} done")
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
