"""Test helpers: simple real implementations of the p2p interfaces and `TestNetwork` (ARCHITECTURE §6).

Owns: `MemoryChain` (a `ChainSource` and `BlockSink` over a list of real encoded `Block`s whose import
checks decoding, height and parent linkage only; the node plugs full consensus validation in through
the same interface), `make_chain` (a synthetic chain of valid-encoding blocks), `CheckingValidator`
(decodes and checks signatures of txs and attestations, decodes blocks and VDF proofs), and
`TestNetwork`: several `P2PService`s on 127.0.0.1 in one trio run, started, stopped and restarted
with their datadirs; its nodes keep every validated message in `inbound` (`TEST_INBOUND_QUEUE`).
Must not: be imported by production code.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from chain.block import Block, TxBody, body_root
from chain.codec import decode, encode
from chain.errors import ErrorCode
from chain.hashing import H
from chain.header import Attestation, BlockKind, Header
from chain.params import DEVNET, ChainParams
from chain.tx import Tx
from chain.types import ZERO_HASH, ZERO_PUBKEY, BlockHash, ChainId, Height, StateRoot, TimestampMs
from p2p.blobstore import FileBlobStore
from p2p.gossip import GossipConfig
from p2p.host import HostConfig
from p2p.messages.vdf import VdfProof
from p2p.service import P2PConfig, P2PService

if TYPE_CHECKING:  # trio-stubs in this venv hide trio.TaskStatus from mypy
    from trio_typing import TaskStatus

TEST_INBOUND_QUEUE = 8192  # validated messages each test node keeps for the test to read (GossipConfig)


def make_block(chain_id: str, height: int, prev: BlockHash, salt: bytes = b"") -> Block:
    kind = BlockKind.GENESIS if height == 0 else BlockKind.TX
    body = TxBody()
    header = Header(
        version=1,
        chain_id=ChainId(chain_id),
        height=Height(height),
        kind=kind,
        prev_hash=prev,
        timestamp_ms=TimestampMs(1_700_000_000_000 + height * 1000),
        proposer=ZERO_PUBKEY,
        rank=0,
        vdf_output=salt,
        vdf_proof=b"",
        body_root=body_root(body),
        state_root=StateRoot(ZERO_HASH),
        parent_certificate=(),
    )
    return Block(header, body)


def make_chain(n: int, chain_id: str = DEVNET.chain_id, salt: bytes = b"") -> list[bytes]:
    """Encoded blocks 0..n-1 (`salt` makes a different genesis)."""
    out: list[bytes] = []
    prev = BlockHash(ZERO_HASH)
    for h in range(n):
        block = make_block(chain_id, h, prev, salt)
        out.append(encode(block))
        prev = block.hash
    return out


class MemoryChain:
    """ChainSource + BlockSink over encoded blocks; import checks decoding and parent linkage only."""

    def __init__(self, blocks: Sequence[bytes], chain_id: str = DEVNET.chain_id) -> None:
        self.chain_id = chain_id
        self.blocks: list[bytes] = list(blocks)
        self.hashes: list[BlockHash] = [BlockHash(H(encode(self._decode(b).header))) for b in self.blocks]
        self.import_delay_s = 0.0

    @staticmethod
    def _decode(raw: bytes) -> Block:
        block = decode(Block, raw)
        assert not isinstance(block, ErrorCode)
        return block

    @property
    def genesis_hash(self) -> BlockHash:
        return self.hashes[0]

    def tip(self) -> tuple[int, BlockHash]:
        return len(self.blocks) - 1, self.hashes[-1]

    def final(self) -> tuple[int, BlockHash]:
        return self.tip()

    def header_at(self, height: int) -> bytes | None:
        if 0 <= height < len(self.blocks):
            return encode(self._decode(self.blocks[height]).header)
        return None

    def block_at(self, height: int) -> bytes | None:
        return self.blocks[height] if 0 <= height < len(self.blocks) else None

    async def import_block(self, raw: bytes) -> ErrorCode | None:
        if self.import_delay_s:
            await trio.sleep(self.import_delay_s)
        else:
            await trio.lowlevel.checkpoint()
        block = decode(Block, raw)
        if isinstance(block, ErrorCode):
            return block
        if block.header.chain_id != self.chain_id:
            return ErrorCode.WRONG_CHAIN
        height = block.header.height
        if height < len(self.blocks):
            return ErrorCode.ALREADY_KNOWN if block.hash == self.hashes[height] else ErrorCode.BAD_PARENT
        if height > len(self.blocks):
            return ErrorCode.ORPHAN
        if block.header.prev_hash != self.hashes[-1]:
            return ErrorCode.BAD_PARENT
        self.blocks.append(raw)
        self.hashes.append(block.hash)
        return None


class CheckingValidator:
    """A GossipValidator with real decoding and signature checks, recording what it accepted."""

    def __init__(self, chain_id: str = DEVNET.chain_id) -> None:
        self.chain_id = chain_id
        self.accepted: dict[str, list[bytes]] = {"tx": [], "block": [], "attest": [], "vdf": []}
        self.rejected = 0
        self.n_accepted = 0
        self.keep_accepted = True  # False in long runs: count only
        self.block_check: Callable[[bytes], ErrorCode | None] | None = None

    def _done(self, kind: str, raw: bytes, code: ErrorCode | None) -> ErrorCode | None:
        if code is None:
            self.n_accepted += 1
            if self.keep_accepted:
                self.accepted[kind].append(raw)
        else:
            self.rejected += 1
        return code

    async def validate_tx(self, raw: bytes, peer: str) -> ErrorCode | None:
        await trio.lowlevel.checkpoint()
        tx = decode(Tx, raw)
        if isinstance(tx, ErrorCode):
            return self._done("tx", raw, tx)
        if tx.chain_id != self.chain_id:
            return self._done("tx", raw, ErrorCode.WRONG_CHAIN)
        if not tx.signature_valid():
            return self._done("tx", raw, ErrorCode.BAD_SIGNATURE)
        return self._done("tx", raw, None)

    async def validate_block(self, raw: bytes, peer: str) -> ErrorCode | None:
        await trio.lowlevel.checkpoint()
        if self.block_check is not None:
            return self._done("block", raw, self.block_check(raw))
        block = decode(Block, raw)
        if isinstance(block, ErrorCode):
            return self._done("block", raw, block)
        return self._done(
            "block", raw, None if block.header.chain_id == self.chain_id else ErrorCode.WRONG_CHAIN
        )

    async def validate_attestation(self, raw: bytes, peer: str) -> ErrorCode | None:
        await trio.lowlevel.checkpoint()
        att = decode(Attestation, raw)
        if isinstance(att, ErrorCode):
            return self._done("attest", raw, att)
        return self._done("attest", raw, None if att.signature_valid() else ErrorCode.BAD_SIGNATURE)

    async def validate_vdf(self, raw: bytes, peer: str) -> ErrorCode | None:
        await trio.lowlevel.checkpoint()
        proof = decode(VdfProof, raw)
        return self._done("vdf", raw, proof if isinstance(proof, ErrorCode) else None)


@dataclasses.dataclass
class NetNode:
    index: int
    datadir: Path
    chain: MemoryChain
    validator: CheckingValidator
    blobs: FileBlobStore
    config: P2PConfig
    params: ChainParams
    service: P2PService | None = None
    cancel: trio.CancelScope | None = None
    stopped: trio.Event = dataclasses.field(default_factory=trio.Event)

    @property
    def svc(self) -> P2PService:
        assert self.service is not None, f"node {self.index} is not running"
        return self.service

    @property
    def addr(self) -> str:
        return self.svc.listen_addrs()[0]


class TestNetwork:
    """Several `P2PService`s on loopback in one trio run (PROTOCOL §7 integration tests)."""

    __test__ = False  # not a pytest class

    def __init__(self, nursery: trio.Nursery, root: Path, params: ChainParams = DEVNET) -> None:
        self.nursery, self.root, self.params = nursery, root, params
        self.nodes: list[NetNode] = []

    def add_node(
        self,
        blocks: Sequence[bytes] | None = None,
        *,
        port: int = 0,
        bootstrap: Sequence[str] = (),
        **config: Any,
    ) -> NetNode:
        index = len(self.nodes)
        datadir = self.root / f"node{index}"
        datadir.mkdir(parents=True, exist_ok=True)
        host = HostConfig(listen_addrs=(f"/ip4/127.0.0.1/tcp/{port}",))
        gossip = config.pop("gossip", GossipConfig())
        if not gossip.inbound_queue:  # tests read what each node validated
            gossip = dataclasses.replace(gossip, inbound_queue=TEST_INBOUND_QUEUE)
        cfg = P2PConfig(
            keys_dir=datadir / "keys", host=host, bootstrap=tuple(bootstrap), gossip=gossip, **config
        )
        node = NetNode(
            index,
            datadir,
            MemoryChain(
                blocks if blocks is not None else make_chain(1, self.params.chain_id), self.params.chain_id
            ),
            CheckingValidator(self.params.chain_id),
            FileBlobStore(datadir / "blobs"),
            cfg,
            self.params,
        )
        self.nodes.append(node)
        return node

    async def start(self, node: NetNode, *, sync_gate: trio.Event | None = None) -> P2PService:
        node.service = P2PService(
            node.config, node.params, node.validator, node.chain, node.chain, node.blobs, sync_gate=sync_gate
        )
        node.stopped = trio.Event()
        await self.nursery.start(self._run, node)
        return node.svc

    async def _run(self, node: NetNode, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            node.cancel = scope
            try:
                await node.svc.run(task_status=task_status)
            finally:
                node.stopped.set()

    async def stop(self, node: NetNode) -> None:
        if node.cancel is not None:
            node.cancel.cancel()
            await node.stopped.wait()
        node.cancel = None

    async def connect(self, a: NetNode, b: NetNode) -> None:
        err = await a.svc.add_peer(b.addr)
        assert err is None, err
        await wait_for(lambda: any(p.peer_id == b.svc.peer_id for p in a.svc.peers()), 10)

    async def start_all(self, n: int, *, topology: str = "line", **kw: Any) -> list[NetNode]:
        nodes = [self.add_node(**kw) for _ in range(n)]
        for node in nodes:
            await self.start(node)
        if topology == "line":
            for a, b in itertools.pairwise(nodes):
                await self.connect(a, b)
        elif topology == "full":
            for i, a in enumerate(nodes):
                for b in nodes[i + 1 :]:
                    await self.connect(a, b)
        return nodes


async def wait_for(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.02) -> None:
    """Poll `predicate` until it holds; `trio.TooSlowError` after `timeout_s` (STYLE §12)."""
    with trio.fail_after(timeout_s):
        while not predicate():  # noqa: ASYNC110 - the predicates span libp2p internals with no event
            await trio.sleep(poll_s)


@asynccontextmanager
async def open_test_network(params: ChainParams = DEVNET) -> AsyncIterator[TestNetwork]:
    # libp2p 0.8.1 logs expected failures (a fake peer's missing protocols, dials to stopped
    # nodes) at ERROR with its own stderr handler; keep test output readable.
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="lc-p2p-") as tmp:
        async with trio.open_nursery() as nursery:
            net = TestNetwork(nursery, Path(tmp), params)
            try:
                yield net
            finally:
                for node in net.nodes:
                    await net.stop(node)
                nursery.cancel_scope.cancel()


class FakePeer:
    """A bare libp2p host (Noise + yamux, no pubsub) that writes hand-made frames at a node: the
    adversary of the robustness tests."""

    def __init__(self, keys_dir: Path) -> None:
        from p2p.host import build_host, load_or_create_key

        self.key_pair = load_or_create_key(keys_dir)
        self.host = build_host(HostConfig(health_monitoring=False), self.key_pair)
        self.peer_id = self.host.get_id()
        self._cancel: trio.CancelScope | None = None
        self._stopped = trio.Event()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from p2p.host import close_host, listen_multiaddrs

        with trio.CancelScope() as scope:
            self._cancel = scope
            try:
                async with self.host.run(listen_multiaddrs(HostConfig())):
                    try:
                        task_status.started()
                        await trio.sleep_forever()
                    finally:
                        await close_host(self.host)
            finally:
                self._stopped.set()

    async def stop(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()
            await self._stopped.wait()

    async def connect(self, addr: str) -> Any:
        from p2p.host import parse_peer_addr

        info = parse_peer_addr(addr)
        await self.host.connect(info)
        return info.peer_id

    async def open_stream(self, peer_id: Any, protocol: str) -> Any:
        return await self.host.new_stream(peer_id, [protocol])

    @staticmethod
    def frame(payload: bytes) -> bytes:
        """A varint-prefixed frame, as gossipsub expects."""
        from libp2p.utils.varint import encode_uvarint

        return bytes(encode_uvarint(len(payload))) + payload

    def publish_rpc(self, topic: str, data: bytes, *, seqno: int = 0) -> bytes:
        """A correctly signed gossip RPC carrying `data` on `topic` (so it reaches the validators)."""
        from libp2p.pubsub.pb import rpc_pb2
        from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX

        msg = rpc_pb2.Message(
            data=data, topicIDs=[topic], from_id=self.peer_id.to_bytes(), seqno=seqno.to_bytes(8, "big")
        )
        msg.signature = self.key_pair.private_key.sign(
            PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString()
        )
        msg.key = self.key_pair.public_key.serialize()
        return bytes(rpc_pb2.RPC(publish=[msg]).SerializeToString())

    @staticmethod
    def garbage_key_rpc(topic: str, data: bytes) -> bytes:
        """A well-formed RPC whose message `key` is garbage (it crashed libp2p 0.8.1's push_msg)."""
        from libp2p.pubsub.pb import rpc_pb2

        msg = rpc_pb2.Message(
            data=data, topicIDs=[topic], from_id=b"\x12\x20" + b"\x07" * 32, seqno=b"\x00" * 8
        )
        msg.key = b"\xde\xad\xbe\xef garbage key"
        msg.signature = b"\x01" * 64
        return bytes(rpc_pb2.RPC(publish=[msg]).SerializeToString())

    @staticmethod
    def subscribe_rpc(topics: Sequence[str]) -> bytes:
        from libp2p.pubsub.pb import rpc_pb2

        subs = [rpc_pb2.RPC.SubOpts(subscribe=True, topicid=t) for t in topics]
        return bytes(rpc_pb2.RPC(subscriptions=subs).SerializeToString())
