"""Fault test: a lying peer against real daemons (PROTOCOL §7.4 scoring, p2p/testing.py's FakePeer).

Owns: one adversary connected to node0 of a 2-node devnet that sends, in turn, a block with a bad
signature, a block with a bad VDF proof, a malformed gossip frame, an oversized frame and a flood of
transactions with bad signatures. Then: the adversary is scored down and banned, honest traffic keeps
flowing (a transfer sent to node1 is confirmed on node0, finality goes on), and nothing invalid reached
either chain or mempool. A second adversary gossips correctly signed, mined LEARNING_UNIT txs and
serves their blobs over `/blob/1` with bad content (a length that is not `byte_size`, bytes that do
not hash to the blob's name, a wrong tensor name): none may reach a mempool or a chain, the server
is banned, honest traffic keeps flowing. Must not: sleep to wait (every wait is a predicate with a
deadline).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

from chain import vrf
from chain.block import Block
from chain.codec import encode
from chain.consensus.election import next_seed, vrf_alpha
from chain.crypto import SecretKey, account_id
from chain.errors import ErrorCode
from chain.hashing import H
from chain.header import BlockKind, kind_for_height
from chain.lora import update_blob
from chain.params import DEVNET
from chain.tx import Transfer, Tx, make_tx
from chain.types import ZERO_HASH, Amount, BlobHash, BlockHash, ChainId, Micro, Signature, TimestampMs
from chain.units import Encryption, LearningUnit
from linguachain_cli.rpc import RpcCallError
from linguachaind.devgenesis import dev_account_key, dev_validator_key
from p2p import framing
from p2p.messages import blob as blobmsg
from p2p.messages.gossip import GossipKind, topic_for
from p2p.messages.status import ErrorReply
from p2p.protocols import blob_protocol, sync_protocol
from p2p.testing import FakePeer, make_block
from tests.functional.framework import LinguaChainTestFramework, TestNode, wait_until

pytestmark = pytest.mark.functional  # the default suite runs the first two; the slow mark is per test

MESHSUB = "/meshsub/1.1.0"
POW_BITS = 4  # devnet pow_bits_header
MAX_TX_BYTES = 64 * 1024  # devnet max_tx_bytes
N_FLOOD = 300


def next_block(chain_id: str, tip: dict[str, Any], salt: bytes) -> Block:
    """A TX block on top of `tip` that passes the checks before the one under test (PoW, timestamp)."""
    block = make_block(chain_id, tip["height"] + 1, BlockHash(bytes.fromhex(tip["hash"])), salt=salt)
    ts = max(tip["timestamp_ms"] + 1, int(time.time() * 1000))
    return dataclasses.replace(block, header=dataclasses.replace(block.header, timestamp_ms=TimestampMs(ts)))


def bad_signature_block(chain_id: str, tip: dict[str, Any]) -> Block:
    """Claims validator 0 as proposer, mined, but the signature is garbage (BAD_SIGNATURE)."""
    block = next_block(chain_id, tip, b"bad-signature")
    header = dataclasses.replace(block.header, proposer=dev_validator_key(0).pubkey).mined(POW_BITS)
    return dataclasses.replace(block, header=dataclasses.replace(header, signature=Signature(b"\x07" * 64)))


def bad_vdf_block(chain_id: str, tip: dict[str, Any]) -> Block:
    """Well signed, with a valid VRF proof and seed (by a key that is no validator: the VRF and
    the VDF are checked before eligibility), but a garbage VDF."""
    block = next_block(chain_id, tip, b"")
    key = SecretKey.from_label("lying-peer-proposer")
    parent_seed = bytes.fromhex(tip["seed"])  # the tip is above the genesis: it carries its seed
    vrf_proof = vrf.prove(key.seed, vrf_alpha(ChainId(chain_id), parent_seed, tip["height"] + 1))
    beta = vrf.proof_to_hash(vrf_proof)
    assert beta is not None
    header = dataclasses.replace(
        block.header,
        proposer=key.pubkey,
        vrf_proof=vrf_proof,
        seed=next_seed(parent_seed, beta),
        vdf_output=b"\x01" * 100,
        vdf_proof=b"\x02" * 100,
    )
    return dataclasses.replace(block, header=header.mined(POW_BITS).signed(key))


def bad_signature_txs(chain_id: str, n: int) -> list[Tx]:
    """Distinct txs of a funded sender at its next nonce (0), so that each one reaches the signature
    check (a later nonce would be rejected first as transient NONCE_TOO_HIGH, never penalised)."""
    key = dev_account_key(3)
    to = account_id(dev_account_key(4).pubkey)
    return [
        dataclasses.replace(
            make_tx(key, ChainId(chain_id), 0, 1_000, Transfer(to, Amount(1 + i))),
            signature=Signature(i.to_bytes(4, "big") * 16),
        )
        for i in range(n)
    ]


class LyingPeerTest(LinguaChainTestFramework):
    def set_test_params(self) -> None:
        self.num_nodes = 2

    def run_test(self) -> None:
        victim, honest = self.nodes
        wait_until(lambda: victim.getblockchaininfo()["final_height"] >= 2, timeout=90, what="finality")
        chain_id = victim.getblockchaininfo()["chain_id"]
        # a tip whose next block is a TX block (the blocks below carry a TX body)
        tip = wait_until(lambda: tip_before_tx_block(victim), timeout=30, what="a tip before a TX height")
        blocks = [bad_signature_block(chain_id, tip), bad_vdf_block(chain_id, tip)]
        txs = bad_signature_txs(chain_id, N_FLOOD)
        raw_txs = [encode(tx) for tx in txs]
        fake_id = trio.run(self.attack, victim.p2p_addr(), chain_id, [encode(b) for b in blocks], raw_txs)
        try:
            wait_until(lambda: banned_in_log(victim, fake_id), timeout=60, what="the lying peer banned")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; node0 gossip counters: {victim.getnodeinfo()['gossip']}") from None
        log = (victim.datadir / "debug.log").read_text(errors="replace")
        for block, code in zip(blocks, ("BAD_SIGNATURE", "BAD_VDF"), strict=True):
            assert f"hash={block.header.hash.hex()[:16]} code={code}" in log, f"no {code} rejection"
        gossip = victim.getnodeinfo()["gossip"]
        assert gossip["rejected"] >= 5, gossip  # 2 blocks, the oversized payload, bad txs: each penalised
        wait_disconnected(victim, fake_id)
        # honest traffic still flows: a transfer through node1 is confirmed on node0
        honest_traffic_flows(victim, honest, chain_id)
        # nothing invalid reached a chain or a mempool
        for node in self.nodes:
            for block in blocks:
                assert_unknown(node, "getblock", block.header.hash.hex())
            pool = set(node.getrawmempool())
            for tx in txs[:20]:
                txid_bad = tx.id.hex()
                assert txid_bad not in pool
                assert_unknown(node, "gettransaction", txid_bad)
            assert node.running

    async def attack(self, addr: str, chain_id: str, blocks: list[bytes], txs: list[bytes]) -> str:
        fake = FakePeer(self.tmpdir / "fake")
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.run)
            peer = await fake.connect(addr)
            block_topic, tx_topic = topic_for(GossipKind.BLOCK, chain_id), topic_for(GossipKind.TX, chain_id)
            # one gossip stream: the bad blocks, an oversized tx payload, then the flood of bad txs
            payloads = [
                FakePeer.subscribe_rpc([block_topic, tx_topic]),
                *(fake.publish_rpc(block_topic, raw, seqno=i) for i, raw in enumerate(blocks)),
                fake.publish_rpc(tx_topic, bytes(MAX_TX_BYTES + 1), seqno=50),
                *(fake.publish_rpc(tx_topic, raw, seqno=100 + i) for i, raw in enumerate(txs)),
            ]
            await _send(fake, peer, MESHSUB, b"".join(FakePeer.frame(p) for p in payloads))
            # a malformed protobuf, and a 100 MB length prefix on the sync protocol (refused unread);
            # by now the peer is usually banned and these are refused at the door
            await _send(fake, peer, MESHSUB, FakePeer.frame(b"\x0a\xff\xff\xff\xff\x0f"))
            await _send(fake, peer, sync_protocol(chain_id), (100 << 20).to_bytes(4, "big") + bytes(1024))
            await fake.stop()
            nursery.cancel_scope.cancel()
        return str(fake.peer_id)


async def _send(fake: FakePeer, peer: Any, protocol: str, data: bytes) -> None:
    """Write on a new stream; once banned the victim refuses, which is the point."""
    try:
        with trio.fail_after(10):
            stream = await fake.open_stream(peer, protocol)
            await stream.write(data)
    except Exception:
        pass


def tip_before_tx_block(node: TestNode) -> dict[str, Any] | None:
    info = node.getblockchaininfo()
    if kind_for_height(info["height"] + 1) != BlockKind.TX:
        return None
    header: dict[str, Any] = node.getblockheader(info["best_hash"])
    return header


def honest_transfer(chain_id: str) -> bytes:
    key: SecretKey = dev_account_key(0)
    tx = make_tx(key, ChainId(chain_id), 0, 1_000, Transfer(account_id(dev_account_key(5).pubkey), Amount(7)))
    return encode(tx)


def wait_disconnected(victim: TestNode, peer_id: str) -> None:
    def gone() -> bool:
        return all(p["peer_id"] != peer_id for p in victim.getpeerinfo())

    wait_until(gone, timeout=30, what="disconnected")


def honest_traffic_flows(victim: TestNode, honest: TestNode, chain_id: str) -> None:
    """A transfer sent through `honest` is mined on `victim`, and `victim`'s finality moves on."""
    txid = honest.sendrawtransaction(honest_transfer(chain_id).hex())
    wait_until(lambda: victim.gettransaction(txid).get("block_hash"), timeout=60, what="honest tx mined")
    final = victim.getblockchaininfo()["final_height"]
    wait_until(lambda: victim.getblockchaininfo()["final_height"] > final, timeout=60, what="finality")


def banned_in_log(node: TestNode, peer_id: str) -> bool:
    try:
        text = (node.datadir / "debug.log").read_text(errors="replace")
    except FileNotFoundError:
        return False
    return f"peer {peer_id} banned after" in text


def assert_unknown(node: TestNode, method: str, ident: str) -> None:
    with pytest.raises(RpcCallError):
        node.rpc.call(method, ident)


@pytest.fixture
def generous_gossip_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemons' gossip validation deadline and, inside it, the fetch of a gossiped unit's blob
    from its sender (config `gossip_validation_timeout_s`, `unit_blob_fetch_s`; 2 s and 1.5 s by
    default): generous, so that on a loaded CI box every unit is judged on its blob, not dropped as
    a timeout (which is never the peer's fault, so it was never banned: the flake of issue 15)."""
    monkeypatch.setenv("LINGUACHAIN_GOSSIP_VALIDATION_TIMEOUT_S", "60")
    monkeypatch.setenv("LINGUACHAIN_UNIT_BLOB_FETCH_S", "45")


@pytest.mark.usefixtures("generous_gossip_deadlines")
def test_lying_peer_is_banned_and_nothing_invalid_gets_in(tmp_path: Path) -> None:
    LyingPeerTest().main(tmp_path)


# -- learning units whose blobs the lying peer serves malformed (issue 15 item 4) -------------------


@dataclasses.dataclass(frozen=True, slots=True)
class BadUnit:
    """A LEARNING_UNIT tx that passes the cheap checks (signed, fee, PoW) and the blob the lying
    peer serves for it under its `adapter_blob_hash`."""

    case: str
    tx: Tx
    served: bytes


def bad_learning_unit(chain_id: str, sender: int, case: str, salt: int) -> BadUnit:
    """`size`: bytes whose length differs from `byte_size`; `hash`: bytes that do not hash to the
    unit's blob hash; `tensors`: a well-sized, well-hashed safetensors blob with a wrong tensor name
    (fails `check_update_blob` against any layout)."""
    key = dev_account_key(sender)
    tensors = update_blob({f"lying.peer.{salt}.lora_B.weight": np.full((4, 2), salt, dtype=np.int32)})
    noise = salt.to_bytes(4, "big") * 64
    served, claimed, byte_size = {
        "size": (noise, H(noise), len(noise) - 1),
        "hash": (noise, H(b"not these bytes" + noise), len(noise)),
        "tensors": (tensors, H(tensors), len(tensors)),
    }[case]
    unit = LearningUnit(
        chain_id=ChainId(chain_id),
        author=key.pubkey,
        base_version_id=ZERO_HASH,
        adapter_blob_hash=BlobHash(claimed),
        n_examples=8,
        train_loss_micro=Micro(1_000_000),
        dp_epsilon_micro=0,
        encryption=Encryption.PLAINTEXT,
        byte_size=byte_size,
        created_ms=TimestampMs(int(time.time() * 1000)),
        pow_nonce=0,
    ).mined(DEVNET)
    return BadUnit(case, make_tx(key, ChainId(chain_id), 0, 1_000, unit), served)


class LyingBlobPeerTest(LinguaChainTestFramework):
    """The adversary gossips learning units of `cases` and serves their blobs over `/blob/1` with
    bad content, until the victim bans it (`until_banned`) or holds the last unit's blob."""

    def __init__(self, cases: list[str], *, until_banned: bool) -> None:
        super().__init__()
        self.cases, self.until_banned = cases, until_banned

    def set_test_params(self) -> None:
        self.num_nodes = 2

    def run_test(self) -> None:
        victim, honest = self.nodes
        wait_until(lambda: victim.getblockchaininfo()["final_height"] >= 1, timeout=90, what="finality")
        chain_id = victim.getblockchaininfo()["chain_id"]
        # distinct funded senders at nonce 0: each unit reaches the blob check on its own
        units = [bad_learning_unit(chain_id, 2 + i, case, i) for i, case in enumerate(self.cases)]
        fake_id = trio.run(self.attack, victim, chain_id, units)
        if self.until_banned:
            log = (victim.datadir / "debug.log").read_text(errors="replace")
            assert "assembled file does not match its hash" in log, "the hash mismatch was not caught"
            gossip = victim.getnodeinfo()["gossip"]
            assert gossip["rejected"] >= self.cases.count("size"), gossip  # BLOB_SIZE_MISMATCH: penalised
            # refused blobs are not kept: neither under their name nor as a partial download
            for unit in units:
                blob = blob_hash_of(unit.tx).hex()
                assert not (victim.datadir / "blobs" / blob).exists(), f"{unit.case} blob kept"
                assert not (victim.datadir / "blobs" / "partial" / f"{blob}.part").exists(), unit.case
            wait_disconnected(victim, fake_id)
        # honest traffic still flows: a transfer through node1 is confirmed on node0, finality goes on
        honest_traffic_flows(victim, honest, chain_id)
        got_in = [where for node in self.nodes for where in admitted(node, units)]
        assert not got_in, f"bad learning units got in: {got_in}"
        assert all(node.running for node in self.nodes)

    def attack_done(self, victim: TestNode, fake_id: str, last: BlobHash) -> bool:
        if self.until_banned:
            return banned_in_log(victim, fake_id)
        return (victim.datadir / "blobs" / last.hex()).is_file()

    async def attack(self, victim: TestNode, chain_id: str, units: list[BadUnit]) -> str:
        """Gossip the units and serve their blobs until `attack_done`."""
        fake = FakePeer(self.tmpdir / "fake-blobs")
        served = {bytes(blob_hash_of(u.tx)): u.served for u in units}
        fake.host.set_stream_handler(blob_protocol(chain_id), functools.partial(serve_blob, served))
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.run)
            peer = await fake.connect(victim.p2p_addr())
            topic = topic_for(GossipKind.TX, chain_id)
            payloads = [
                FakePeer.subscribe_rpc([topic]),
                *(fake.publish_rpc(topic, encode(u.tx), seqno=i) for i, u in enumerate(units)),
            ]
            await _send(fake, peer, MESHSUB, b"".join(FakePeer.frame(p) for p in payloads))
            # the victim fetches each blob from us while it validates the unit
            done = functools.partial(self.attack_done, victim, str(fake.peer_id), blob_hash_of(units[-1].tx))
            what = "the lying peer banned" if self.until_banned else "the last blob fetched"
            await trio.to_thread.run_sync(functools.partial(wait_until, done, timeout=90, what=what))
            await fake.stop()
            nursery.cancel_scope.cancel()
        return str(fake.peer_id)


def admitted(node: TestNode, units: list[BadUnit]) -> list[str]:
    """Where on `node` any of `units` is: its mempool, or a block of its chain."""
    pool = set(node.getrawmempool())
    out = []
    for i, unit in enumerate(units):
        txid = unit.tx.id.hex()
        if txid in pool:
            out.append(f"node{node.index} mempool: unit {i} ({unit.case})")
        try:
            found = node.gettransaction(txid)
        except RpcCallError:
            continue
        out.append(f"node{node.index}: unit {i} ({unit.case}) {found}")
    return out


def blob_hash_of(tx: Tx) -> BlobHash:
    assert isinstance(tx.payload, LearningUnit)
    return tx.payload.adapter_blob_hash


async def serve_blob(served: dict[bytes, bytes], stream: Any) -> None:
    """`/blob/1` as an honest peer serves it, over the lying peer's bytes: the manifest lists the
    size and chunk hashes of what is served, whatever the unit claims."""
    try:
        req = await framing.read_message(stream, blobmsg.GetBlobManifest, blobmsg.GetBlobChunk)
        if isinstance(req, ErrorCode):
            return
        data = served.get(bytes(req.blob_hash))
        if data is None:
            await framing.write_message(stream, ErrorReply(ErrorCode.BLOB_MISSING))
        elif isinstance(req, blobmsg.GetBlobManifest):
            chunks = [data[i : i + blobmsg.CHUNK_SIZE] for i in range(0, len(data), blobmsg.CHUNK_SIZE)]
            manifest = blobmsg.BlobManifest(req.blob_hash, len(data), tuple(H(c) for c in chunks))
            await framing.write_message(stream, manifest)
        else:
            piece = data[req.index * blobmsg.CHUNK_SIZE : (req.index + 1) * blobmsg.CHUNK_SIZE]
            await framing.write_message(stream, blobmsg.BlobChunk(req.blob_hash, req.index, piece))
    finally:
        await framing.close_quietly(stream)


@pytest.mark.usefixtures("generous_gossip_deadlines")
def test_lying_peer_learning_units_with_malformed_blobs_never_get_in(tmp_path: Path) -> None:
    """Blobs whose length is not `byte_size` (BLOB_SIZE_MISMATCH on the sender's manifest, nothing
    downloaded: INVALID, 20) or that do not hash to their name (BAD_BLOB, 25, from the fetcher):
    refused, not kept in the blob store, and three of each get the server banned."""
    LyingBlobPeerTest(["size", "hash"] * 3, until_banned=True).main(tmp_path)


@pytest.mark.slow
@pytest.mark.usefixtures("generous_gossip_deadlines")
def test_lying_peer_learning_unit_with_wrong_tensors_never_gets_in(tmp_path: Path) -> None:
    """A well-sized, well-hashed blob with a wrong tensor name (PROTOCOL §3.4: invalid) is refused
    at admission (BAD_UNIT) by a node whose worker never started: the daemon reads the LoRA layout
    from the base model's safetensors header at start (training.base_model.lora_layout_of)."""
    LyingBlobPeerTest(["tensors"], until_banned=False).main(tmp_path)
