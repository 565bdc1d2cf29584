"""In-process test of `Node`: start order, RPC up, ordered stop in reverse, datadir left clean.

Owns: the lifecycle contract of linguachaind.node (services stop in the reverse order of starting,
stores close after every service, cookie/pid/.rpcport removed, the lock released). Must not: test
consensus (the functional tests run real multi-node devnets).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import trio

from linguachain_cli.rpc import RpcClient
from linguachaind.config import build_config
from linguachaind.datadir import DatadirLock, Layout
from linguachaind.main import init_datadir
from linguachaind.node import Node


async def test_start_serve_and_stop_in_reverse_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    root = init_datadir(
        network="devnet", datadir=tmp_path / "n", genesis_file=None, validators=1,
        dev_validator=None, settings={"rpc_port": 0, "listen": ["/ip4/127.0.0.1/tcp/0"]}, force=False,
    )  # fmt: skip
    layout = Layout(root)
    node = Node(build_config({"datadir": str(root)}, {}), handle_signals=False)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(60):
            port = await nursery.start(node.run)
        assert layout.cookie.exists()
        assert layout.pid.exists()
        assert int(layout.rpc_port_file.read_text()) == port
        client = RpcClient.from_datadir(root)
        info = await trio.to_thread.run_sync(client.getnodeinfo)
        assert info["ready"] is True
        assert info["peer_id"]
        chain = await trio.to_thread.run_sync(client.getblockchaininfo)
        assert chain["network"] == "devnet"
        node.request_stop()
    text = caplog.text
    started = re.findall(r"EVENT service_started name=(\S+)", text)
    stopped = re.findall(r"EVENT service_stopped name=(\S+)", text)
    closed = re.findall(r"EVENT store_closed name=(\S+)", text)
    assert started == [  # the start order of linguachaind.node, top to bottom
        "rpc", "p2p", "blob-fetch", "training-worker", "rounds", "tx-submit", "vote-reannounce",
        "chain", "vdf", "attester", "producer", "evidence", "mempool-expiry",
    ]  # fmt: skip
    assert stopped == list(reversed(started))
    assert closed == ["slashing_protection", "mempool", "chain"]
    assert text.index("service_stopped name=rpc") < text.index("store_closed name=chain")
    for gone in (layout.cookie, layout.pid, layout.rpc_port_file):
        assert not gone.exists()
    with DatadirLock(layout):  # released: a new daemon can take it
        pass
