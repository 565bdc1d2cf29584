"""One-shot initialisation of a multi-node testnet: fresh validator keys, one shared genesis, N datadirs.

Used by the `init` service of docker/docker-compose.yml (inside the image) and by scripts/testnet
(network namespaces, on the host). Owns: generating each node's validator key (random, 0600, never a
public dev key), the genesis that names exactly those keys, `linguachaind init` of every datadir and
`peers.json` (name, peer id, host, port of every node). Must not: start a node, or overwrite an
initialised testnet (it exits 0 when `genesis.json` exists: running it twice is harmless).

The funded accounts are the labelled dev accounts of the network (public secrets, in accounts.json):
this is a test network, its coins are worth nothing.

  python testnet_init.py --root /nodes --shared /shared --nodes 4 [--network devnet]
      [--chain-id lc-compose-1] [--hosts node{k}] [--p2p-port 19333] [--rpc-port 19332]
      [--rpc-bind 0.0.0.0] [--genesis-delay-s 15] [--owner 1000:1000]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _chown_tree(root: Path, owner: str) -> None:
    uid, gid = (int(x) for x in owner.split(":"))
    for dirpath, _dirs, files in os.walk(root):
        os.chown(dirpath, uid, gid)
        for name in files:
            os.chown(os.path.join(dirpath, name), uid, gid)


def genesis_doc(
    pubkeys: list[bytes], *, network: str, chain_id: str, accounts: int, delay_s: float
) -> dict[str, Any]:
    """The dev genesis layout (funded labelled accounts) with these validator keys and chain id."""
    from chain.address import HRP_BY_NETWORK, address_of
    from chain.types import PubKey
    from linguachaind.devgenesis import DEV_VALIDATOR_BALANCE, DEV_VALIDATOR_STAKE, devnet_genesis_doc

    doc = devnet_genesis_doc(1, accounts, network=network, timestamp_ms=int((time.time() + delay_s) * 1000))
    hrp = HRP_BY_NETWORK[network]
    allocations = [a for a in doc["allocations"][:accounts]]
    validators = []
    for pub in pubkeys:
        addr = address_of(PubKey(pub), hrp)
        allocations.append({"address": addr, "amount": DEV_VALIDATOR_BALANCE})
        validators.append({"staker": addr, "validator_pubkey": pub.hex(), "stake": DEV_VALIDATOR_STAKE})
    doc.update(allocations=allocations, validators=validators, extra_data=f"linguachain {chain_id}")
    if chain_id:
        doc["params"] = {**doc.get("params", {}), "chain_id": chain_id}
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="datadirs go to ROOT/node0..")
    parser.add_argument("--shared", type=Path, required=True, help="genesis.json, accounts.json, peers.json")
    parser.add_argument("--nodes", type=int, required=True, help="number of nodes (all validators)")
    parser.add_argument("--network", default="devnet", choices=["devnet", "testnet"])
    parser.add_argument("--chain-id", default="", help="override the preset's chain id")
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--hosts", default="node{k}", help="host of node k: a template or a list a,b,c")
    parser.add_argument("--p2p-port", type=int, default=19333)
    parser.add_argument("--rpc-port", type=int, default=19332)
    parser.add_argument("--rpc-bind", default="127.0.0.1")
    parser.add_argument("--genesis-delay-s", type=float, default=15.0)
    parser.add_argument("--owner", default="", help="uid:gid to own the datadirs (when run as root)")
    parser.add_argument("--train-data", default="", help="node:PATH[,node:PATH] (train_data in config)")
    args = parser.parse_args(argv)

    from chain.crypto import SecretKey
    from chain.genesis import parse_genesis
    from linguachaind.datadir import Layout, ensure_dirs, load_or_create_seed
    from linguachaind.main import init_datadir
    from p2p.host import load_or_create_key, peer_id_of

    genesis_path = args.shared / "genesis.json"
    if genesis_path.exists():
        print(f"testnet already initialised ({genesis_path} exists)")
        return 0
    if not 1 <= args.nodes <= 64:
        print("error: --nodes must be in 1..64", file=sys.stderr)
        return 2
    names = [f"node{k}" for k in range(args.nodes)]
    hosts = (
        args.hosts.split(",") if "," in args.hosts else [args.hosts.format(k=k) for k in range(args.nodes)]
    )
    train = dict(item.split(":", 1) for item in args.train_data.split(",") if item)
    pubkeys = []
    for name in names:
        layout = Layout(args.root / name)
        ensure_dirs(layout)
        pubkeys.append(SecretKey(load_or_create_seed(layout.validator_key)).pubkey)
    doc = genesis_doc(
        [bytes(p) for p in pubkeys], network=args.network, chain_id=args.chain_id,
        accounts=args.accounts, delay_s=args.genesis_delay_s,
    )  # fmt: skip
    parse_genesis(doc)  # validates before anything is written
    args.shared.mkdir(parents=True, exist_ok=True)
    tmp_genesis = args.shared / "genesis.json.tmp"
    tmp_genesis.write_text(json.dumps(doc, indent=2) + "\n")
    peers = []
    for name, host in zip(names, hosts, strict=True):
        peer_id = peer_id_of(load_or_create_key(Layout(args.root / name).keys))
        peers.append({"name": name, "peer_id": peer_id, "host": host, "port": args.p2p_port})
    for name, host in zip(names, hosts, strict=True):
        settings: dict[str, Any] = {
            "listen": [f"/ip4/{host if _is_ip(host) else '0.0.0.0'}/tcp/{args.p2p_port}"],
            "rpc_port": args.rpc_port,
            "rpc_bind": args.rpc_bind,
            "validator": True,
            # Static addresses (namespaces) go into the config; names (compose) are resolved at start.
            "bootstrap": [
                f"/ip4/{p['host']}/tcp/{p['port']}/p2p/{p['peer_id']}"
                for p in peers
                if p["name"] != name and _is_ip(str(p["host"]))
            ],
        }
        if name in train:
            settings["train_data"] = train[name]
        init_datadir(
            network=args.network, datadir=args.root / name, genesis_file=tmp_genesis,
            validators=args.nodes, dev_validator=None, settings=settings, force=False,
        )  # fmt: skip
    from linguachaind.devgenesis import dev_accounts

    (args.shared / "accounts.json").write_text(
        json.dumps(dev_accounts(args.accounts, 0, args.network), indent=2) + "\n"
    )
    (args.shared / "peers.json").write_text(json.dumps(peers, indent=2) + "\n")
    os.replace(tmp_genesis, genesis_path)  # last: its presence means "initialised"
    if args.owner:
        _chown_tree(args.root, args.owner)
        _chown_tree(args.shared, args.owner)
    print(
        f"initialised a {args.nodes}-node {args.network} testnet"
        f" (chain id {parse_genesis(doc).params.chain_id})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
