#!/usr/bin/env python3
"""Golden vectors: the exact bytes and ids of every wire object (STYLE.md §3, PROTOCOL §1.1).

Owns: building one deterministic example of every transaction kind (SLASH_EVIDENCE once per
evidence kind), a header and a full block of each block kind, a genesis file, an attestation,
addresses per network and the encoded parameter presets, and writing them as JSON (hex strings)
under tests/vectors/. Keys come from `SecretKey.from_label`, times are fixed and Ed25519 is
deterministic, so every byte (signatures included) is reproducible. Must not: read the clock or
randomness, or depend on anything outside `chain`.

    scripts/gen_vectors.py            rewrite tests/vectors/*.json and the field tables of docs/encoding.md
    scripts/gen_vectors.py --check    exit 1 (and say which vector) if a file would change
    scripts/gen_vectors.py --tables   print the field tables (markdown)

tests/unit/test_vectors.py runs the same builders and compares: changing a wire type breaks that
test on purpose. Regenerate only for an intended wire change, and say so in the commit.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import sys
from collections.abc import Callable
from enum import IntEnum
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Final, Union, get_args, get_origin, get_type_hints

from chain import vrf
from chain.address import HRP_BY_NETWORK, address_of
from chain.block import (
    Block,
    DataBody,
    Excluded,
    Exclusion,
    QualityReport,
    TxBody,
    UnitWeight,
    VersionBody,
    VersionScores,
    body_leaves,
    body_root,
)
from chain.codec import MAX_ARRAY_LEN, NEWTYPE_CONSTRAINTS, ByteLen, IntRange, MaxItems, TextLen, encode
from chain.crypto import DOMAIN_ATTEST, DOMAIN_HEADER, DOMAIN_TX, SecretKey, account_id, signing_digest
from chain.evidence import (
    DoubleAttest,
    DoubleProposal,
    Evidence,
    EvidenceKind,
    FalseScore,
    InvalidBlock,
    SurroundVote,
)
from chain.genesis import (
    Allocation,
    BaseModel,
    Genesis,
    GenesisValidator,
    genesis_header,
    genesis_to_json,
    parse_genesis,
)
from chain.hashing import H, merkle_branch
from chain.header import Attestation, BlockKind, Header
from chain.params import DEVNET, PRESETS, AggregationRule, AggregationScheme, ChainParams
from chain.signed import pow_digest, unsigned_bytes
from chain.tx import SlashEvidence, Stake, Transfer, Tx, TxKind, Unstake, make_tx
from chain.types import (
    COIN,
    AccountId,
    Amount,
    BlobHash,
    BlockHash,
    Hash32,
    Height,
    Micro,
    Round,
    StateRoot,
    TimestampMs,
    UnitId,
)
from chain.units import DataFormat, DataUnit, Encryption, LearningUnit
from chain.vdfmsg import VdfProof

VECTOR_DIR: Final = Path(__file__).resolve().parent.parent / "tests" / "vectors"
PARAMS: Final = DEVNET
CHAIN: Final = DEVNET.chain_id
T0: Final = 1_700_000_000_000  # 2023-11-14T22:13:20Z, the genesis time of every vector

# The Python type of each `type` name in the vector files (the test decodes with these).
TYPES: Final[dict[str, type[Any]]] = {
    cls.__name__: cls
    for cls in (
        Tx,
        Header,
        Block,
        Attestation,
        Evidence,
        DataUnit,
        LearningUnit,
        Genesis,
        ChainParams,
        VdfProof,
    )
}


@functools.cache
def key(label: str) -> SecretKey:
    return SecretKey.from_label(label)


def h(tag: str) -> Hash32:
    """A deterministic stand-in hash (blob hashes, state roots) named by `tag`."""
    return H(b"LC/vector/" + tag.encode())


# -- entries -----------------------------------------------------------------------------------


def entry(name: str, obj: Any, *, domain: bytes | None = None, mined: bool = False) -> dict[str, Any]:
    """One vector: the object's type, canonical bytes, id, and its signing / PoW digests."""
    data = encode(obj)
    out: dict[str, Any] = {"name": name, "type": type(obj).__name__, "hex": data.hex(), "id": H(data).hex()}
    if isinstance(obj, Block):
        out["hash"] = obj.hash.hex()
    if domain is not None:
        out["signing_digest"] = signing_digest(domain, obj.chain_id, unsigned_bytes(obj)).hex()
    if mined:
        out["pow_digest"] = pow_digest(obj.pow_preimage(), obj.pow_nonce).hex()
    return out


def document(description: str, vectors: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"description": description, "regenerate": "scripts/gen_vectors.py", "vectors": vectors, **extra}


# -- objects -----------------------------------------------------------------------------------


def data_unit() -> DataUnit:
    unit = DataUnit(
        chain_id=CHAIN,
        author=key("carol").pubkey,
        blob_hash=BlobHash(h("data-blob")),
        n_examples=128,
        byte_size=20_000,
        format=DataFormat.JSONL_PROMPT_COMPLETION,
        task=0,
        created_ms=TimestampMs(T0 + 5_000),
        pow_nonce=0,
    )
    return unit.mined(PARAMS)


def learning_unit() -> LearningUnit:
    unit = LearningUnit(
        chain_id=CHAIN,
        author=key("carol").pubkey,
        base_version_id=h("version-0"),
        adapter_blob_hash=BlobHash(h("adapter-update")),
        n_examples=256,
        train_loss_micro=Micro(2_345_678),
        dp_epsilon_micro=0,
        encryption=Encryption.PLAINTEXT,
        byte_size=65_536,
        created_ms=TimestampMs(T0 + 6_000),
        pow_nonce=0,
    )
    return unit.mined(PARAMS)


def attestation(height: int, block_hash: bytes, label: str, *, source_height: int = 0) -> Attestation:
    """A signed vote; its source is the genesis (height 0, zero hash) or a named block."""
    source = BlockHash(bytes(32)) if source_height == 0 else BlockHash(h(f"source-{source_height}"))
    return Attestation(
        CHAIN, Height(height), BlockHash(block_hash), Height(source_height), source, key(label).pubkey
    ).signed(key(label))


def header(
    height: int, prev: bytes, body: Any, *, proposer: str = "val0", rank: int = 0, dt: int = 0
) -> Header:
    unsigned = Header(
        version=1,
        chain_id=CHAIN,
        height=Height(height),
        kind=[BlockKind.GENESIS, BlockKind.TX, BlockKind.DATA, BlockKind.VERSION][height],
        prev_hash=BlockHash(prev),
        timestamp_ms=TimestampMs(T0 + 1_000 * height + dt),
        proposer=key(proposer).pubkey,
        rank=rank,
        vdf_output=h(f"vdf-output-{height}") * 3,
        vdf_proof=h(f"vdf-proof-{height}") * 4,
        body_root=body_root(body),
        state_root=StateRoot(h(f"state-{height}")),
        parent_certificate=(
            ()
            if height <= 1
            else (attestation(height - 1, prev, "val0"), attestation(height - 1, prev, "val1"))
        ),
        vrf_proof=vrf.prove(key(proposer).seed, h(f"vrf-alpha-{height}")),  # a real proof, stand-in alpha
        seed=h(f"seed-{height}"),
    )
    return unsigned.mined(PARAMS.pow_bits_header).signed(key(proposer))


def chain_blocks() -> list[Block]:
    """Genesis (with a stand-in state root), then one TX, one DATA and one VERSION block."""
    genesis = Block(genesis_header(genesis_value(), StateRoot(h("state-0"))), TxBody(()))
    alice, bob = key("alice"), key("bob")
    tx_body = TxBody(
        (
            make_tx(alice, CHAIN, 0, 1_000, Transfer(account_id(bob.pubkey), Amount(5 * COIN), b"hello")),
            make_tx(alice, CHAIN, 1, 1_000, Stake(key("val0").pubkey, Amount(10 * COIN))),
            make_tx(key("carol"), CHAIN, 0, 2_000, data_unit()),
        )
    )
    b1 = Block(header(1, genesis.hash, tx_body), tx_body)
    report = QualityReport(
        n_units=1,
        n_examples_in=128,
        n_exact_duplicates=3,
        n_near_duplicates=2,
        n_malformed=1,
        n_outliers=0,
        n_selected=122,
        test_set_hash=h("test-set-1"),
    )
    data_body = DataBody((data_unit().id,), report, (122,))
    b2 = Block(header(2, b1.hash, data_body, proposer="val1", rank=1, dt=400), data_body)
    version_body = VersionBody(
        round=Round(0),
        base_version_id=h("version-0"),
        units=(UnitWeight(learning_unit().id, 256), UnitWeight(UnitId(h("other-unit")), 128)),
        aggregation_rule=AggregationRule.FEDAVG,
        new_adapter_blob_hash=BlobHash(h("adapter-1")),
        per_batch_scores=(Micro(-2_100_000), Micro(-2_050_000), Micro(-1_990_000)),
        total_score=-6_140_000,
        previous_score=-6_400_000,
        excluded=(Excluded(UnitId(h("outlier-unit")), Exclusion.NORM_OUTLIER),),
        previous_batch_scores=(Micro(-2_000_000), Micro(-2_010_000), Micro(-1_980_000)),
    )
    b3 = Block(header(3, b2.hash, version_body), version_body)
    return [genesis, b1, b2, b3]


def evidence_of(kind: EvidenceKind) -> Evidence:
    blocks = chain_blocks()
    b1, b3 = blocks[1], blocks[3]
    if kind is EvidenceKind.DOUBLE_PROPOSAL:
        other = dataclasses.replace(b1.header, timestamp_ms=TimestampMs(b1.header.timestamp_ms + 1))
        twin = other.mined(PARAMS.pow_bits_header).signed(key("val0"))
        return Evidence(kind, DoubleProposal(b1.header, twin))
    if kind is EvidenceKind.DOUBLE_ATTEST:
        return Evidence(
            kind, DoubleAttest(attestation(1, b1.hash, "val1"), attestation(1, h("fork-1"), "val1"))
        )
    if kind is EvidenceKind.SURROUND_VOTE:  # span 1 -> 5 strictly contains 2 -> 4
        outer = attestation(5, h("outer"), "val1", source_height=1)
        return Evidence(kind, SurroundVote(outer, attestation(4, h("inner"), "val1", source_height=2)))
    if kind is EvidenceKind.INVALID_BLOCK:
        leaves = [b"leaf-0", b"leaf-1", b"leaf-2"]  # the shape only: this leaf is not b1's
        proof = InvalidBlock(b1.header, 2, 3, leaves[2], tuple(merkle_branch(leaves, 2)))
        return Evidence(kind, proof)
    leaves = body_leaves(b3.body)  # FALSE_SCORE: b3's score leaf and its branch
    return Evidence(kind, FalseScore(b3.header, 0, len(leaves), leaves[0], tuple(merkle_branch(leaves, 0))))


def txs() -> list[tuple[str, Tx]]:
    alice, bob = key("alice"), key("bob")
    out = [
        (
            "TRANSFER",
            make_tx(alice, CHAIN, 0, 1_000, Transfer(account_id(bob.pubkey), Amount(5 * COIN), b"hello")),
        ),
        ("TRANSFER_NO_MEMO", make_tx(alice, CHAIN, 7, 1_000, Transfer(AccountId(b"\x00" * 20), Amount(1)))),
        ("STAKE", make_tx(alice, CHAIN, 1, 1_000, Stake(key("val0").pubkey, Amount(10 * COIN)))),
        ("UNSTAKE", make_tx(alice, CHAIN, 2, 1_000, Unstake(key("val0").pubkey, Amount(3 * COIN)))),
    ]
    for kind in EvidenceKind:
        out.append(
            (f"SLASH_EVIDENCE/{kind.name}", make_tx(bob, CHAIN, 0, 5_000, SlashEvidence(evidence_of(kind))))
        )
    out.append(("DATA_UNIT", make_tx(key("carol"), CHAIN, 0, 2_000, data_unit())))
    out.append(("LEARNING_UNIT", make_tx(key("carol"), CHAIN, 1, 3_000, learning_unit())))
    return out


# -- genesis -----------------------------------------------------------------------------------


def genesis_doc() -> dict[str, Any]:
    hrp = HRP_BY_NETWORK["devnet"]
    return {
        "network": "devnet",
        "timestamp_ms": T0,
        "params": {"slot_ms": 2_000, "aggregation_rule": "trimmed_mean"},
        "allocations": [
            {"address": address_of(key("alice").pubkey, hrp), "amount": 1_000_000 * COIN},
            {"address": address_of(key("bob").pubkey, hrp), "amount": 250_000 * COIN},
            {"address": address_of(key("carol").pubkey, hrp), "amount": 1_000 * COIN},
        ],
        "validators": [
            {
                "staker": address_of(key(f"val{i}").pubkey, hrp),
                "validator_pubkey": key(f"val{i}").pubkey.hex(),
                "stake": (100 + 50 * i) * COIN,
            }
            for i in range(3)
        ],
        "base_model": {"name": "lc-tiny", "weights_hash": h("lc-tiny-weights").hex()},
        "extra_data": "LinguaChain golden vectors",
    }


@functools.cache
def genesis_value() -> Genesis:
    return parse_genesis(genesis_doc())


def genesis_block_entry(genesis: Genesis) -> dict[str, Any]:
    """The real genesis block: its header commits to `chain.state.genesis`'s state root."""
    from chain.state.genesis import genesis_block  # chain.state builds the state (PROTOCOL §3.5)

    block = genesis_block(genesis)
    return {"state_root": block.header.state_root.hex(), **entry("genesis-block", block)}


# -- field tables of docs/encoding.md ---------------------------------------------------------

DOC_PATH: Final = Path(__file__).resolve().parent.parent / "docs" / "encoding.md"
BEGIN: Final = "<!-- BEGIN GENERATED FIELD TABLES (scripts/gen_vectors.py) -->"
END: Final = "<!-- END GENERATED FIELD TABLES -->"
TABLE_TYPES: Final[list[type[Any]]] = [
    Tx, Transfer, Stake, Unstake, SlashEvidence, Evidence, DoubleProposal, DoubleAttest, InvalidBlock,
    FalseScore, SurroundVote, DataUnit, LearningUnit, Attestation, Header, Block, TxBody, DataBody,
    QualityReport, VersionBody, VersionScores, UnitWeight, Genesis, Allocation, GenesisValidator, BaseModel,
    ChainParams, VdfProof,
]  # fmt: skip
TABLE_ENUMS: Final[list[type[IntEnum]]] = [
    TxKind, EvidenceKind, BlockKind, DataFormat, Encryption, AggregationRule, AggregationScheme,
]  # fmt: skip


def _limit(n: int) -> str:
    for exp in (64, 63, 32, 16, 8):
        if n == 2**exp - 1:
            return f"2^{exp}-1"
        if n == -(2**exp):
            return f"-2^{exp}"
    return str(n)


def describe(tp: Any, constraint: object | None = None) -> str:
    """The wire form of a field type, for humans (`bin[32]`, `uint <= 2^64-1`, `array<=16 of str`)."""
    if get_origin(tp) is Annotated:
        base, *extras = get_args(tp)
        found = [e for e in extras if isinstance(e, IntRange | ByteLen | TextLen | MaxItems)]
        return describe(base, found[0])
    if hasattr(tp, "__supertype__"):
        own = NEWTYPE_CONSTRAINTS.get(tp) if constraint is None else constraint
        return f"{describe(tp.__supertype__, own)} ({tp.__name__})"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"array: {tp.__name__}"
    if get_origin(tp) is tuple:
        item, _ = get_args(tp)
        hi = constraint.hi if isinstance(constraint, MaxItems) else MAX_ARRAY_LEN
        return f"array (<= {hi} items) of {describe(item)}"
    if get_origin(tp) in (Union, UnionType):
        return "one of " + " / ".join(a.__name__ for a in get_args(tp)) + " (class chosen by the kind)"
    if isinstance(tp, type) and issubclass(tp, IntEnum):
        return f"uint enum {tp.__name__}"
    if tp is int and isinstance(constraint, IntRange):
        lo, hi = constraint.lo, constraint.hi
        if lo == 0 and hi in (2**8 - 1, 2**16 - 1, 2**32 - 1, 2**64 - 1):
            return f"uint{hi.bit_length()}"
        if (lo, hi) == (-(2**63), 2**63 - 1):
            return "int64"
        return f"uint <= {_limit(hi)}" if lo == 0 else f"int in [{_limit(lo)}, {_limit(hi)}]"
    if tp is bytes and isinstance(constraint, ByteLen):
        lo, hi = constraint.lo, constraint.hi
        return f"bin[{lo}]" if lo == hi else f"bin[{lo}..{hi}]"
    if tp is str and isinstance(constraint, TextLen):
        pattern = f" `{constraint.pattern}`" if constraint.pattern else ""
        return f"str (<= {constraint.hi} B){pattern}"
    return repr(tp)


def field_tables() -> str:
    lines: list[str] = []
    for cls in TABLE_TYPES:
        hints = get_type_hints(cls, include_extras=True)
        lines += [
            f"#### {cls.__name__} (`{cls.__module__}`)",
            "",
            "| # | field | wire type |",
            "|---|---|---|",
        ]
        for i, f in enumerate(dataclasses.fields(cls)):
            wire = describe(hints[f.name]).replace("|", "\\|")
            lines.append(f"| {i} | `{f.name}` | {wire} |")
        lines.append("")
    lines += ["#### Enums", "", "| enum | values |", "|---|---|"]
    for enum in TABLE_ENUMS:
        lines.append(f"| {enum.__name__} | " + ", ".join(f"{m.value} = {m.name}" for m in enum) + " |")
    return "\n".join(lines) + "\n"


def doc_with_tables(text: str) -> str:
    """`text` (docs/encoding.md) with the generated section replaced by the current tables."""
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC_PATH}: the markers {BEGIN!r} and {END!r} are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n\n{field_tables()}\n{END}{tail}"


# -- files -------------------------------------------------------------------------------------


def build_all() -> dict[str, dict[str, Any]]:
    """File name -> JSON document, for every vector file."""
    blocks = chain_blocks()
    kinds = ["GENESIS", "TX", "DATA", "VERSION"]
    g = genesis_value()
    labelled = [("alice", "lc"), ("alice", "tlc"), ("alice", "rlc"), ("bob", "rlc"), ("val0", "tlc")]
    return {
        "txs.json": document(
            "One tx of every kind (SLASH_EVIDENCE once per evidence kind), signed on lc-devnet",
            [entry(name, tx, domain=DOMAIN_TX) for name, tx in txs()],
        ),
        "units.json": document(
            "A data unit and a learning unit, mined at devnet difficulty",
            [
                entry("DATA_UNIT", data_unit(), mined=True),
                entry("LEARNING_UNIT", learning_unit(), mined=True),
            ],
        ),
        "evidence.json": document(
            "Slashing evidence of each kind",
            [entry(k.name, evidence_of(k)) for k in EvidenceKind],
        ),
        "headers.json": document(
            "A header of each block kind; non-genesis headers are mined at devnet difficulty and signed",
            [
                entry(
                    kind,
                    b.header,
                    domain=None if kind == "GENESIS" else DOMAIN_HEADER,
                    mined=kind != "GENESIS",
                )
                for kind, b in zip(kinds, blocks, strict=True)
            ],
        ),
        "blocks.json": document(
            "A full block of each kind, chained: genesis (stand-in state root) -> TX -> DATA -> VERSION",
            [entry(kind, b) for kind, b in zip(kinds, blocks, strict=True)],
        ),
        "vdf.json": document(
            "A VDF proof gossip message (stand-in output and proof bytes: the codec does not verify them)",
            [
                entry(
                    "VDF_PROOF",
                    VdfProof(CHAIN, h("vdf-challenge-1"), 2_000, h("vdf-output-1") * 3, h("vdf-proof-1") * 4),
                )
            ],
        ),
        "attestations.json": document(
            "An attestation by val0 for the TX block",
            [entry("ATTESTATION", attestation(1, blocks[1].hash, "val0"), domain=DOMAIN_ATTEST)],
        ),
        "addresses.json": document(
            "bech32m addresses of deterministic keys, per human-readable part",
            [
                {
                    "name": f"{label}/{hrp}",
                    "label": label,
                    "pubkey": key(label).pubkey.hex(),
                    "account_id": account_id(key(label).pubkey).hex(),
                    "hrp": hrp,
                    "address": address_of(key(label).pubkey, hrp),
                }
                for label, hrp in labelled
            ],
        ),
        "params.json": document(
            "The encoded ChainParams presets",
            [entry(name, p) for name, p in sorted(PRESETS.items())],
        ),
        "genesis.json": document(
            "A devnet genesis file, its canonical encoding and id, and the genesis block built on the "
            "genesis state root of chain.state.genesis (its hash is the chain's identity)",
            [entry("GENESIS", g)],
            genesis_json=genesis_doc(),
            genesis_json_normalised=genesis_to_json(g),
            genesis_block=genesis_block_entry(g),
        ),
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def check(directory: Path, built: dict[str, dict[str, Any]], say: Callable[[str], None]) -> bool:
    ok = True
    for name, doc in built.items():
        path = directory / name
        want = render(doc)
        have = path.read_text() if path.exists() else ""
        if have != want:
            ok = False
            say(f"{path}: differs from what the code builds")
            diff = difflib.unified_diff(
                have.splitlines(), want.splitlines(), "stored", "built", lineterm="", n=1
            )
            for line in list(diff)[:40]:
                say("  " + line)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="compare instead of writing; exit 1 on a difference"
    )
    parser.add_argument(
        "--dir", type=Path, default=VECTOR_DIR, help="vector directory (default tests/vectors)"
    )
    parser.add_argument(
        "--doc", type=Path, default=DOC_PATH, help="doc with the field tables (docs/encoding.md)"
    )
    parser.add_argument("--tables", action="store_true", help="print the field tables (markdown) and exit")
    args = parser.parse_args(argv)
    if args.tables:
        print(field_tables(), end="")
        return 0
    built = build_all()
    doc_text = args.doc.read_text() if args.doc.exists() else f"{BEGIN}\n{END}\n"
    if args.check:
        ok = check(args.dir, built, print)
        if doc_with_tables(doc_text) != doc_text:
            ok = False
            print(f"{args.doc}: the field tables are stale")
        print("vectors up to date" if ok else "vectors differ: regenerate only for an intended wire change")
        return 0 if ok else 1
    args.dir.mkdir(parents=True, exist_ok=True)
    for name, doc in built.items():
        (args.dir / name).write_text(render(doc))
    args.doc.write_text(doc_with_tables(doc_text))
    print(f"wrote {len(built)} vector files to {args.dir} and the field tables of {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
