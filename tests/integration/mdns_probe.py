"""One p2p node for the mDNS test, run inside a network namespace: listen on the given address with
mDNS on and no bootstrap peer, wait until a peer is connected (or the time runs out), print the
result as one JSON line: {"me": peer id, "peers": [peer ids]}.

    python tests/integration/mdns_probe.py <ip> <wait_s> [--no-mdns]
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from pathlib import Path

import trio

from chain.params import DEVNET
from p2p.blobstore import FileBlobStore
from p2p.host import HostConfig
from p2p.service import P2PConfig, P2PService
from p2p.testing import CheckingValidator, MemoryChain, make_chain, wait_for


async def probe(ip: str, wait_s: float, mdns: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="lc-mdns-") as tmp:
        host = HostConfig(listen_addrs=(f"/ip4/{ip}/tcp/0",), enable_mdns=mdns)
        config = P2PConfig(keys_dir=Path(tmp) / "keys", host=host)
        chain = MemoryChain(make_chain(1))
        service = P2PService(
            config, DEVNET, CheckingValidator(), chain, chain, FileBlobStore(Path(tmp) / "b")
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            with contextlib.suppress(trio.TooSlowError):  # alone at the deadline: reported as such
                await wait_for(lambda: bool(service.peers()), wait_s)
            print(json.dumps({"me": str(service.peer_id), "peers": [p.peer_id for p in service.peers()]}))
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(probe, sys.argv[1], float(sys.argv[2]), "--no-mdns" not in sys.argv[3:])
