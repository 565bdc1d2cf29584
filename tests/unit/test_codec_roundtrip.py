"""Property tests: every codec type round-trips through `encode`/`decode` (PROTOCOL §1.1).

Owns: round-trip and id-stability properties over objects built by `tests.support.strategies`. Must not:
pin bytes (tests/unit/test_vectors.py does) or test rejection codes (test_codec_reject.py does).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.block import Block
from chain.codec import decode, encode, from_plain, to_plain
from chain.evidence import Evidence, EvidenceKind
from chain.header import Attestation, BlockKind, Header
from chain.tx import Tx, TxKind
from tests.support import strategies as S

ALL_TYPES = S.CODEC_TYPES


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_every_type_round_trips(cls: type[Any], data: st.DataObject) -> None:
    obj = data.draw(S.for_type(cls))
    encoded = encode(obj)
    assert decode(cls, encoded) == obj
    assert from_plain(cls, to_plain(obj)) == obj
    assert encode(decode(cls, encoded)) == encoded


@pytest.mark.parametrize("kind", list(TxKind), ids=lambda k: k.name)
@given(data=st.data())
def test_tx_of_each_kind_round_trips_with_a_valid_signature(kind: TxKind, data: st.DataObject) -> None:
    tx = data.draw(S.signed_txs(kind))
    back = decode(Tx, encode(tx))
    assert back == tx
    assert isinstance(back, Tx)
    assert back.kind is kind
    assert back.signature_valid()
    assert back.id == tx.id


@pytest.mark.parametrize("kind", list(EvidenceKind), ids=lambda k: k.name)
@given(data=st.data())
def test_evidence_of_each_kind_round_trips(kind: EvidenceKind, data: st.DataObject) -> None:
    ev = data.draw(S.evidences(kind))
    assert decode(Evidence, encode(ev)) == ev


@pytest.mark.parametrize("kind", list(BlockKind), ids=lambda k: k.name)
@given(data=st.data())
def test_block_of_each_kind_round_trips(kind: BlockKind, data: st.DataObject) -> None:
    block = data.draw(S.blocks(kind))
    back = decode(Block, encode(block))
    assert back == block
    assert isinstance(back, Block)
    assert back.hash == block.header.hash


@given(S.signed_attestations())
def test_signed_attestation_round_trips_and_verifies(att: Attestation) -> None:
    back = decode(Attestation, encode(att))
    assert back == att
    assert isinstance(back, Attestation)
    assert back.signature_valid()


@given(S.for_type(Header), st.data())
def test_distinct_objects_have_distinct_encodings(header: Header, data: st.DataObject) -> None:
    other = data.draw(S.for_type(Header))
    assert (encode(header) == encode(other)) == (header == other)
