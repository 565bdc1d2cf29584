"""Golden vectors: the stored bytes and ids of every wire object still match the code (STYLE.md §3).

Owns: comparing tests/vectors/*.json with what scripts/gen_vectors.py builds now, and checking each
stored vector on its own (decodes, re-encodes to the same bytes, id = H(bytes), signature and PoW
valid, address decodes). A failure here means a wire format changed: if that was intended,
regenerate with `scripts/gen_vectors.py` and say so in the commit. Must not: build objects itself
(the generator is the single source of the examples).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from chain.address import decode_address
from chain.block import Block
from chain.codec import decode, encode
from chain.crypto import DOMAIN_ATTEST, DOMAIN_HEADER, DOMAIN_TX, SecretKey, account_id, signing_digest
from chain.errors import ErrorCode
from chain.evidence import EvidenceKind
from chain.genesis import Genesis, genesis_to_json, parse_genesis
from chain.hashing import H, leading_zero_bits
from chain.header import Attestation, BlockKind, Header
from chain.params import PRESETS, ChainParams
from chain.signed import unsigned_bytes
from chain.tx import Tx, TxKind
from chain.units import DataUnit, LearningUnit, unit_pow_bits
from scripts import gen_vectors as G

VECTOR_FILES = sorted(G.build_all())
BUILT = G.build_all()


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((G.VECTOR_DIR / name).read_text())
    return doc


def _entries() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{name}:{v['name']}", v) for name in VECTOR_FILES for v in _load(name)["vectors"] if "hex" in v]


@pytest.mark.parametrize("name", VECTOR_FILES)
def test_vector_file_matches_what_the_code_builds(name: str) -> None:
    path: Path = G.VECTOR_DIR / name
    assert path.exists(), f"{path} is missing: run scripts/gen_vectors.py"
    stored = json.loads(path.read_text())
    built = json.loads(G.render(BUILT[name]))
    for want, have in zip(built["vectors"], stored["vectors"], strict=False):
        assert have == want, (
            f"{name}: vector {want['name']!r} changed. The wire encoding moved: if intended, run "
            "scripts/gen_vectors.py and say so in the commit; otherwise fix the code."
        )
    assert stored == built, f"{name} differs from what the code builds (run scripts/gen_vectors.py --check)"


def test_every_kind_is_pinned() -> None:
    tx_kinds = {decode(Tx, bytes.fromhex(v["hex"])).kind for v in _load("txs.json")["vectors"]}  # type: ignore[union-attr]
    assert tx_kinds == set(TxKind)
    evidence = [v["name"] for v in _load("txs.json")["vectors"] if v["name"].startswith("SLASH_EVIDENCE/")]
    assert len(evidence) == len(EvidenceKind)
    for file in ("headers.json", "blocks.json"):
        assert [v["name"] for v in _load(file)["vectors"]] == [k.name for k in BlockKind]
    assert {v["name"] for v in _load("params.json")["vectors"]} == set(PRESETS)
    assert {v["hrp"] for v in _load("addresses.json")["vectors"]} == {"lc", "tlc", "rlc"}


@pytest.mark.parametrize(("name", "vector"), _entries(), ids=[n for n, _ in _entries()])
def test_stored_vector_decodes_and_re_encodes(name: str, vector: dict[str, Any]) -> None:
    cls = G.TYPES[vector["type"]]
    data = bytes.fromhex(vector["hex"])
    obj = decode(cls, data)
    assert not isinstance(obj, ErrorCode), f"{name}: {obj!r}"
    assert encode(obj) == data
    assert H(data).hex() == vector["id"]
    if isinstance(obj, Block):
        assert obj.hash.hex() == vector["hash"] == H(encode(obj.header)).hex()


@pytest.mark.parametrize(("name", "vector"), _entries(), ids=[n for n, _ in _entries()])
def test_stored_signatures_and_pow_are_valid(name: str, vector: dict[str, Any]) -> None:
    obj: Any = decode(G.TYPES[vector["type"]], bytes.fromhex(vector["hex"]))
    domain = {Tx: DOMAIN_TX, Header: DOMAIN_HEADER, Attestation: DOMAIN_ATTEST}.get(type(obj))
    if "signing_digest" in vector:
        assert domain is not None
        assert signing_digest(domain, obj.chain_id, unsigned_bytes(obj)).hex() == vector["signing_digest"]
        assert obj.signature_valid(), name
    if "pow_digest" in vector:
        bits = leading_zero_bits(bytes.fromhex(vector["pow_digest"]))
        if isinstance(obj, Header):
            assert obj.pow_valid(G.PARAMS.pow_bits_header)
        else:
            assert isinstance(obj, DataUnit | LearningUnit)
            assert obj.pow_valid(G.PARAMS)
            assert bits >= unit_pow_bits(G.PARAMS, obj.byte_size)


def test_vector_chain_links() -> None:
    blocks = [decode(Block, bytes.fromhex(v["hex"])) for v in _load("blocks.json")["vectors"]]
    assert all(isinstance(b, Block) for b in blocks)
    for parent, child in itertools.pairwise(blocks):
        assert isinstance(parent, Block)
        assert isinstance(child, Block)
        assert child.header.prev_hash == parent.hash
        assert child.header.height == parent.header.height + 1


@pytest.mark.parametrize("vector", _load("addresses.json")["vectors"], ids=lambda v: v["name"])
def test_stored_addresses(vector: dict[str, Any]) -> None:
    pubkey = SecretKey.from_label(vector["label"]).pubkey
    assert pubkey.hex() == vector["pubkey"]
    assert account_id(pubkey).hex() == vector["account_id"] == H(pubkey)[:20].hex()
    assert decode_address(vector["address"], vector["hrp"]).hex() == vector["account_id"]


def test_stored_params_are_the_presets() -> None:
    for vector in _load("params.json")["vectors"]:
        assert decode(ChainParams, bytes.fromhex(vector["hex"])) == PRESETS[vector["name"]]


def test_stored_genesis_file() -> None:
    doc = _load("genesis.json")
    g = parse_genesis(doc["genesis_json"])
    (vector,) = doc["vectors"]
    assert encode(g).hex() == vector["hex"]
    assert g.id.hex() == vector["id"]
    assert genesis_to_json(g) == doc["genesis_json_normalised"]
    assert decode(Genesis, bytes.fromhex(vector["hex"])) == g
    block = decode(Block, bytes.fromhex(doc["genesis_block"]["hex"]))
    assert isinstance(block, Block)
    assert block.header.kind is BlockKind.GENESIS
    assert block.header.height == 0
    assert bytes(block.header.prev_hash) == g.id
    assert block.header.state_root.hex() == doc["genesis_block"]["state_root"]
    assert block.hash.hex() == doc["genesis_block"]["hash"]


def test_check_mode_reports_a_changed_vector(tmp_path: Path) -> None:
    for name, doc in BUILT.items():
        (tmp_path / name).write_text(G.render(doc))
    lines: list[str] = []
    assert G.check(tmp_path, BUILT, lines.append)
    tampered = json.loads((tmp_path / "txs.json").read_text())
    tampered["vectors"][0]["hex"] = "00"
    (tmp_path / "txs.json").write_text(json.dumps(tampered))
    assert not G.check(tmp_path, BUILT, lines.append)
    assert any("txs.json" in line for line in lines)
    md = tmp_path / "encoding.md"
    md.write_text(f"# title\n{G.BEGIN}\nold table\n{G.END}\ntail\n")
    args = ["--dir", str(tmp_path), "--doc", str(md)]
    assert G.main(["--check", *args]) == 1
    assert G.main(args) == 0
    assert G.main(["--check", *args]) == 0
    assert md.read_text().startswith("# title\n")
    assert md.read_text().endswith("tail\n")
    assert "| 0 | `version` | uint8 |" in md.read_text()


def test_field_tables_in_docs_are_current() -> None:
    text = G.DOC_PATH.read_text()
    assert G.doc_with_tables(text) == text, (
        "docs/encoding.md field tables are stale: run scripts/gen_vectors.py"
    )
    for cls in G.TABLE_TYPES:
        assert f"#### {cls.__name__} (" in text
