"""Functional, slow (issue 12 finding 9): a js-libp2p peer written from docs/wire.md joins a devnet.

Owns: installing `tests/functional/interop_js/` (libp2p 2.10, gossipsub 14.1, from npm, pinned by its
package-lock.json) into a cache directory (`$XDG_CACHE_HOME/linguachain-interop-js`), running its
`peer.mjs` against a real one-node devnet, and checking that the js peer connects over Noise/yamux,
receives gossiped blocks, publishes a signed transfer that the chain confirms, and is banned and
disconnected after publishing garbage, which also ends the node's dials to it. Skips with the reason
where node or npm is missing or the npm install fails (no registry). Must not: run in the default
suite (slow: npm install plus block production).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from chain.codec import encode
from chain.crypto import account_id
from chain.tx import Transfer, make_tx
from chain.types import Amount, ChainId
from linguachaind.devgenesis import dev_account_key
from tests.functional.framework import LinguaChainTestFramework, wait_until

pytestmark = [pytest.mark.functional, pytest.mark.slow]

JS_DIR = Path(__file__).with_name("interop_js")
NODE = shutil.which("node")
NPM = shutil.which("npm")


def _installed() -> Path:
    """A directory holding peer.mjs and its node_modules, installed once per package.json."""
    if NODE is None or NPM is None:
        pytest.skip("node and npm are needed for the js-libp2p interop test")
    manifest = (JS_DIR / "package.json").read_bytes() + (JS_DIR / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    target = cache / "linguachain-interop-js" / hashlib.blake2b(manifest, digest_size=8).hexdigest()
    target.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json", "peer.mjs", "polyfill.mjs"):
        shutil.copy(JS_DIR / name, target / name)
    if not (target / "node_modules" / "libp2p").is_dir():
        proc = subprocess.run(
            [NPM, "ci", "--no-audit", "--no-fund"], cwd=target, capture_output=True, timeout=600
        )
        if proc.returncode != 0:
            pytest.skip(f"npm install failed (no registry?): {proc.stderr.decode(errors='replace')[-300:]}")
    return target


class JsPeer:
    """The js process: its JSON-line events, collected by a reader thread."""

    def __init__(self, workdir: Path, bootstrap: str, chain_id: str) -> None:
        assert NODE is not None
        self.proc = subprocess.Popen(
            [NODE, "peer.mjs", bootstrap, chain_id],
            cwd=workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                self.events.append(event)

    def seen(self, **match: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if all(e.get(k) == v for k, v in match.items())]

    def publish(self, topic: str, payload: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"publish {topic} {payload.hex()}\n".encode())
        self.proc.stdin.flush()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


class JsInteropTest(LinguaChainTestFramework):
    def set_test_params(self) -> None:
        self.num_nodes = 1

    def run_test(self) -> None:
        workdir = _installed()
        node = self.nodes[0]
        info = node.getnodeinfo()
        js = JsPeer(workdir, node.p2p_addr(), info["chain_id"])
        try:
            self.check(node, js, info["chain_id"])
        finally:
            js.stop()

    def check(self, node: Any, js: JsPeer, chain_id: str) -> None:
        wait_until(lambda: js.seen(event="started"), timeout=30, what="js peer started")
        js_id = js.seen(event="started")[0]["peer"]
        wait_until(lambda: js.seen(event="connect"), timeout=30, what="js peer connected (Noise, yamux)")
        wait_until(lambda: js.seen(event="message", topic="block"), timeout=60, what="a block gossiped to js")
        # a transfer published by the js peer (StrictSign) is confirmed
        key = dev_account_key(0)
        nonce = node.getaccount(_address(node, key))["next_nonce"]
        tx = make_tx(
            key, ChainId(chain_id), nonce, 1_000, Transfer(account_id(dev_account_key(5).pubkey), Amount(7))
        )
        js.publish("tx", encode(tx))
        txid = tx.id.hex()
        wait_until(
            lambda: node.gettransaction(txid).get("block_hash"), timeout=90, what="js transfer confirmed"
        )
        # garbage costs the js peer its connection, and the node does not dial it back
        for n in range(8):
            js.publish("tx", b"\xc1garbage" + bytes([n]))
        wait_until(
            lambda: js_id not in {p["peer_id"] for p in node.getpeerinfo()}, timeout=60, what="js banned"
        )
        wait_until(lambda: js.seen(event="disconnect"), timeout=30, what="js peer disconnected")
        connects = len(js.seen(event="connect"))
        later = node.getblockchaininfo()["height"] + 3
        wait_until(lambda: node.getblockchaininfo()["height"] >= later, timeout=60, what="the chain goes on")
        assert len(js.seen(event="connect")) == connects, "the node dialled the banned peer again"


def _address(node: Any, key: Any) -> str:
    from chain.address import address_of

    return address_of(key.pubkey, node.getnodeinfo()["hrp"])


def test_js_libp2p_peer_joins_a_devnet(tmp_path: Path) -> None:
    JsInteropTest().main(tmp_path)
