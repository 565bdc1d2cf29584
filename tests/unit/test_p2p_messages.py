"""Wire messages of p2p (PROTOCOL §7, STYLE §4): stable ids, round trips, size limits, hostile input."""

from __future__ import annotations

import pytest

from chain.errors import ErrorCode
from chain.params import DEVNET
from chain.types import BlobHash, BlockHash, ChainId, Hash32, Height
from p2p.messages import REGISTRY, decode_message, encode_message, max_frame
from p2p.messages import blob as blobmsg
from p2p.messages import sync as syncmsg
from p2p.messages.gossip import GossipKind, all_specs, topic_for
from p2p.messages.status import ErrorReply, Status
from p2p.messages.vdf import VdfProof
from p2p.protocols import blob_protocol, status_protocol, sync_protocol

H32 = b"\x11" * 32


def status() -> Status:
    return Status(
        1,
        ChainId("lc-devnet"),
        BlockHash(H32),
        Height(5),
        BlockHash(H32),
        Height(3),
        BlockHash(H32),
        3,
        ("/ip4/127.0.0.1/tcp/1/p2p/12D3KooW",),
        (),
    )


def test_ids_are_stable() -> None:
    # Changing any of these breaks the wire: ids are never reused (STYLE §4).
    assert {i: s.cls.__name__ for i, s in REGISTRY.items()} == {
        1: "Status",
        2: "ErrorReply",
        20: "GetHeaders",
        21: "Headers",
        22: "GetBlocks",
        23: "Blocks",
        40: "GetBlobManifest",
        41: "BlobManifest",
        42: "GetBlobChunk",
        43: "BlobChunk",
    }
    assert {k: s.type_id for k, s in all_specs().items()} == {
        GossipKind.TX: 60,
        GossipKind.BLOCK: 61,
        GossipKind.ATTESTATION: 62,
        GossipKind.VDF: 63,
    }


def test_topic_and_protocol_names_follow_protocol_7() -> None:
    assert topic_for(GossipKind.TX, "lc-devnet") == "/lc/lc-devnet/tx/1"
    assert topic_for(GossipKind.BLOCK, "lc-devnet") == "/lc/lc-devnet/block/1"
    assert topic_for(GossipKind.ATTESTATION, "lc-devnet") == "/lc/lc-devnet/attest/1"
    assert topic_for(GossipKind.VDF, "lc-devnet") == "/lc/lc-devnet/vdf/1"
    assert status_protocol("x") == "/lc/x/status/1"
    assert sync_protocol("x") == "/lc/x/sync/1"
    assert blob_protocol("x") == "/lc/x/blob/1"


@pytest.mark.parametrize(
    "msg",
    [
        status(),
        ErrorReply(int(ErrorCode.GENESIS_MISMATCH)),
        syncmsg.GetBlocks(Height(1), 64),
        syncmsg.Blocks(Height(1), (b"a", b"bc")),
        syncmsg.Headers(Height(0), (b"h",)),
        blobmsg.GetBlobChunk(BlobHash(H32), 3),
        blobmsg.BlobChunk(BlobHash(H32), 3, b"\x00" * blobmsg.CHUNK_SIZE),
        blobmsg.BlobManifest(BlobHash(H32), 10, (Hash32(H32),)),
    ],
)
def test_round_trip(msg: object) -> None:
    data = encode_message(msg)
    assert decode_message(data, type(msg)) == msg
    assert len(data) <= max_frame(type(msg))


def test_unexpected_or_unknown_ids_are_rejected() -> None:
    data = encode_message(syncmsg.GetBlocks(Height(1), 2))
    assert decode_message(data, syncmsg.GetHeaders) is ErrorCode.BAD_MESSAGE
    assert decode_message(b"\xff\xff" + data[2:], syncmsg.GetBlocks) is ErrorCode.BAD_MESSAGE
    assert decode_message(b"\x00", syncmsg.GetBlocks) is ErrorCode.MALFORMED


@pytest.mark.parametrize(
    "garbage", [b"", b"\x00\x16", b"\x00\x16\xc1", b"\x00\x16\x92\x05", b"\x00\x16\x93\x01\x02\x03"]
)
def test_garbage_never_raises(garbage: bytes) -> None:
    assert isinstance(decode_message(garbage, syncmsg.GetBlocks), ErrorCode)


def test_size_limits() -> None:
    with pytest.raises(ValueError, match="over its limit"):
        encode_message(syncmsg.Blocks(Height(0), tuple(b"x" * (1024 * 1024) for _ in range(4))))
    big = (43).to_bytes(2, "big") + b"\x00" * (blobmsg.CHUNK_SIZE + 100)
    assert decode_message(big, blobmsg.BlobChunk) is ErrorCode.TOO_LARGE
    for spec in all_specs().values():
        assert spec.max_bytes(DEVNET) <= DEVNET.max_block_bytes


def test_vdf_proof_encodes() -> None:
    from chain.codec import decode, encode

    proof = VdfProof(ChainId("lc-devnet"), Hash32(H32), 2_000, b"\x01" * 100, b"\x02" * 100)
    assert decode(VdfProof, encode(proof)) == proof
