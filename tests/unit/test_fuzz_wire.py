"""Fuzz targets for every wire decoder (issue 12 acceptance): nothing a peer sends makes one raise.

Owns: one hypothesis target per decoder a remote peer reaches, fed random bytes and one to three
random edits of valid encodings: `decode_message` for each request/response id (1, 2, 20-23, 40-43),
the gossip payload decoders (ids 60-63: `Tx`, `Block`, `Attestation`, `VdfProof` without a prefix),
`framing.read_frame` (u32-prefixed frames) and the gossip read guard under libp2p's varint reader.
The property: a value or an `ErrorCode` (frames: the library's own read errors), never another
exception, in bounded time. Budget: 100 examples per target in the default suite, 5,000 with
`LC_SLOW=1` (about 8 minutes for the block payload alone on a busy 2-core box).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from libp2p.exceptions import ParseError
from libp2p.io.exceptions import IncompleteReadError, MessageTooLarge

from chain.codec import decode, encode
from chain.errors import ErrorCode
from p2p import framing
from p2p.messages import REGISTRY, decode_message, encode_message
from p2p.messages import blob as _blob  # noqa: F401 - registers ids 40-43
from p2p.messages import status as _status  # noqa: F401 - registers ids 1-2
from p2p.messages import sync as _sync  # noqa: F401 - registers ids 20-23
from p2p.messages.gossip import GossipKind
from tests.support import strategies as S

SLOW = os.environ.get("LC_SLOW") == "1"
pytestmark = pytest.mark.timeout(3600 if SLOW else 600)
BUDGET = settings(
    max_examples=5_000 if SLOW else 100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@st.composite
def _edited(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding with one to three random edits (`strategies.edits`), or random bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=4096))
    return draw(S.edits(draw(valid)))


def _valid_message(cls: type[Any]) -> st.SearchStrategy[bytes]:
    def enc(msg: Any) -> bytes:
        try:
            return encode_message(msg)
        except ValueError:  # generated over the message's limit
            return b""

    return S.for_type(cls).map(enc)


@pytest.mark.parametrize("msg_id", sorted(REGISTRY), ids=lambda i: f"{i}-{REGISTRY[i].cls.__name__}")
def test_request_response_decoder_never_raises(msg_id: int) -> None:
    cls = REGISTRY[msg_id].cls

    @BUDGET
    @given(_edited(_valid_message(cls)))
    def check(data: bytes) -> None:
        result = decode_message(data, cls)
        assert isinstance(result, ErrorCode | cls)

    check()


def _gossip_types() -> dict[GossipKind, tuple[type[Any], st.SearchStrategy[Any]]]:
    from chain.block import Block
    from chain.header import Attestation
    from chain.tx import Tx
    from p2p.messages.vdf import VdfProof

    return {
        GossipKind.TX: (Tx, S.signed_txs()),
        GossipKind.BLOCK: (Block, S.blocks()),
        GossipKind.ATTESTATION: (Attestation, S.signed_attestations()),
        GossipKind.VDF: (VdfProof, S.for_type(VdfProof)),
    }


@pytest.mark.parametrize("kind", list(GossipKind), ids=lambda k: k.value)
def test_gossip_payload_decoder_never_raises(kind: GossipKind) -> None:
    cls, valid = _gossip_types()[kind]

    @BUDGET
    @given(_edited(valid.map(encode)))
    def check(data: bytes) -> None:
        result = decode(cls, data)
        assert isinstance(result, ErrorCode | cls)

    check()


class _BytesStream:
    """A stream that yields `data` in chunks, then EOF (b"")."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data, self.chunk = data, chunk

    async def read(self, n: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        size = min(self.chunk, n if n is not None else self.chunk)
        out, self.data = self.data[:size], self.data[size:]
        return out


@BUDGET
@given(st.binary(max_size=4096), st.integers(1, 64))
def test_read_frame_never_raises(data: bytes, chunk: int) -> None:
    async def run() -> None:
        with trio.fail_after(5):
            result = await framing.read_frame(_BytesStream(data, chunk), 1024, timeout_s=2)
        assert isinstance(result, bytes | ErrorCode)

    trio.run(run)


@BUDGET
@given(st.binary(max_size=512), st.integers(1, 64), st.integers(1, 300))
def test_gossip_read_guard_never_raises_other_errors(data: bytes, chunk: int, limit: int) -> None:
    from libp2p.utils.varint import read_varint_prefixed_bytes_limited

    oversized: list[object] = []

    async def run() -> None:
        stream = framing._GuardedGossipStream(
            _BytesStream(data, chunk), limit, 2.0, lambda: oversized.append(1)
        )
        with trio.fail_after(5):
            while True:
                try:
                    frame = await read_varint_prefixed_bytes_limited(stream, limit)  # type: ignore[arg-type]
                except (IncompleteReadError, MessageTooLarge, ParseError):
                    return
                assert len(frame) <= limit

    trio.run(run)
    assert len(oversized) <= 1
