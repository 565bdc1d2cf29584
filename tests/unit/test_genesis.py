"""Genesis files: parsing, one clear `ConfigError` per bad field, JSON round trip (PROTOCOL §2).

Owns: tests of `chain.genesis` (parse_genesis, load_genesis, genesis_to_json, genesis_header).
Must not: compute the genesis state (chain.state does; its root is pinned by test_vectors.py).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.address import address_of
from chain.codec import decode, encode
from chain.crypto import SecretKey
from chain.errors import ConfigError
from chain.genesis import Genesis, genesis_header, genesis_to_json, load_genesis, parse_genesis
from chain.header import BlockKind
from chain.params import DEVNET, preset
from chain.types import StateRoot

ALICE, BOB, VAL0, VAL1 = (SecretKey.from_label(x) for x in ("alice", "bob", "val0", "val1"))


def make_doc(network: str = "devnet") -> dict[str, Any]:
    hrp = {"devnet": "rlc", "testnet": "tlc", "mainnet": "lc"}[network]
    stake = preset(network).min_stake
    return {
        "network": network,
        "timestamp_ms": 1_700_000_000_000,
        "params": {},
        "allocations": [
            {"address": address_of(ALICE.pubkey, hrp), "amount": 1_000_000 * 10**8},
            {"address": address_of(BOB.pubkey, hrp), "amount": 5 * 10**8},
        ],
        "validators": [
            {"staker": address_of(ALICE.pubkey, hrp), "validator_pubkey": VAL0.pubkey.hex(), "stake": stake},
            {"staker": address_of(BOB.pubkey, hrp), "validator_pubkey": VAL1.pubkey.hex(), "stake": stake},
        ],
        "base_model": {"name": "lc-tiny", "weights_hash": "ab" * 32},
        "extra_data": "LinguaChain test genesis",
    }


@pytest.mark.parametrize("network", ["devnet", "testnet", "mainnet"])
def test_valid_genesis_parses_and_round_trips(network: str) -> None:
    g = parse_genesis(make_doc(network))
    assert g.params == preset(network)
    assert len(g.allocations) == 2
    assert len(g.validators) == 2
    assert parse_genesis(genesis_to_json(g)) == g
    assert parse_genesis(json.loads(json.dumps(genesis_to_json(g)))) == g
    assert decode(Genesis, encode(g)) == g


def test_genesis_id_ignores_list_order_but_not_content() -> None:
    doc = make_doc()
    reordered = copy.deepcopy(doc)
    reordered["allocations"].reverse()
    reordered["validators"].reverse()
    assert parse_genesis(reordered).id == parse_genesis(doc).id
    changed = copy.deepcopy(doc)
    changed["timestamp_ms"] += 1
    assert parse_genesis(changed).id != parse_genesis(doc).id


def test_overrides_round_trip_through_json() -> None:
    doc = make_doc()
    doc["params"] = {"slot_ms": 2_000, "aggregation_rule": "median", "lora_targets": ["q_proj", "k_proj"]}
    g = parse_genesis(doc)
    assert g.params.slot_ms == 2_000
    out = genesis_to_json(g)
    assert out["params"] == {
        "slot_ms": 2_000,
        "aggregation_rule": "median",
        "lora_targets": ["q_proj", "k_proj"],
    }
    assert parse_genesis(out) == g


def test_genesis_header_commits_to_the_genesis_and_state_root() -> None:
    g = parse_genesis(make_doc())
    root = StateRoot(b"\x42" * 32)
    h = genesis_header(g, root)
    assert h.height == 0
    assert h.kind is BlockKind.GENESIS
    assert bytes(h.prev_hash) == g.id
    assert h.state_root == root
    assert h.chain_id == DEVNET.chain_id
    assert h.timestamp_ms == g.timestamp_ms
    assert genesis_header(g, StateRoot(b"\x43" * 32)).hash != h.hash


Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def apply(doc: dict[str, Any]) -> None:
        target: Any = doc
        *parents, last = path.split(".")
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        target[int(last) if last.isdigit() else last] = value

    return apply


def _dup_alloc(doc: dict[str, Any]) -> None:
    doc["allocations"].append(dict(doc["allocations"][0], amount=1))


def _dup_validator(doc: dict[str, Any]) -> None:
    doc["validators"].append(dict(doc["validators"][0]))


BAD_FIELDS: list[tuple[str, Mutation, str]] = [
    ("bad network", _set("network", "moonnet"), "network: unknown network 'moonnet'"),
    ("network type", _set("network", 1), "network: missing or not a string"),
    ("missing network", lambda d: d.pop("network"), "network: missing"),
    ("unknown top-level field", _set("validatorz", []), "validatorz: unknown field"),
    ("timestamp type", _set("timestamp_ms", "2024-01-01"), "timestamp_ms: must be an integer, got str"),
    ("timestamp float", _set("timestamp_ms", 1.7e12), "timestamp_ms: must be an integer, got float"),
    ("timestamp zero", _set("timestamp_ms", 0), r"timestamp_ms: must be in \[1,"),
    ("allocations type", _set("allocations", {}), "allocations: must be a list"),
    ("allocation shape", _set("allocations.0", {"address": "x"}), r"allocations\[0\]: must be"),
    (
        "bad address",
        _set("allocations.0.address", "rlc1notanaddress"),
        r"allocations\[0\]\.address: .*not a valid",
    ),
    (
        "mistyped address",
        lambda d: d["allocations"][0].update(
            address=d["allocations"][0]["address"][:-1]
            + ("q" if d["allocations"][0]["address"][-1] != "q" else "p")
        ),
        r"allocations\[0\]\.address: .*typo",
    ),
    (
        "address of another network",
        _set("allocations.0.address", address_of(ALICE.pubkey, "lc")),
        r"allocations\[0\]\.address: .*prefix 'lc', this network uses 'rlc'",
    ),
    ("address type", _set("allocations.0.address", 12), r"allocations\[0\]\.address: must be an address"),
    ("duplicate address", _dup_alloc, r"allocations\[2\]: duplicate address"),
    ("zero amount", _set("allocations.1.amount", 0), r"allocations\[1\]\.amount: must be in \[1,"),
    ("negative amount", _set("allocations.1.amount", -5), r"allocations\[1\]\.amount"),
    ("amount type", _set("allocations.1.amount", "5"), r"allocations\[1\]\.amount: must be an integer"),
    (
        "amount bool",
        _set("allocations.1.amount", True),
        r"allocations\[1\]\.amount: must be an integer, got bool",
    ),
    ("amount overflow", _set("allocations.1.amount", 2**63), r"allocations\[1\]\.amount: must be in"),
    ("total overflow", _set("allocations.1.amount", 2**63 - 1), r"allocations\[1\]: allocations overflow"),
    (
        "stake overflow",
        _set("validators.1.stake", 2**63 - 10**14),
        r"validators\[1\]: stakes and allocations overflow",
    ),
    ("validators type", _set("validators", "val0"), "validators: must be a list"),
    ("no validators", _set("validators", []), "validators: at least one initial validator"),
    ("validator shape", _set("validators.0", {"staker": "x"}), r"validators\[0\]: must be"),
    ("validator staker", _set("validators.0.staker", "nope"), r"validators\[0\]\.staker"),
    (
        "validator pubkey hex",
        _set("validators.0.validator_pubkey", "zz" * 32),
        r"validators\[0\]\.validator_pubkey: .*not hex",
    ),
    (
        "validator pubkey len",
        _set("validators.0.validator_pubkey", "ab" * 31),
        r"validators\[0\]\.validator_pubkey: must be 32 bytes",
    ),
    (
        "validator pubkey not a point",
        _set("validators.0.validator_pubkey", "00" * 32),
        r"validators\[0\]\.validator_pubkey: is not a valid Ed25519 public key",
    ),
    ("duplicate validator", _dup_validator, r"validators\[2\]: duplicate validator_pubkey"),
    (
        "stake below min_stake",
        _set("validators.0.stake", 10**8),
        r"validators\[0\]\.stake: must be in \[1000000000,",
    ),
    (
        "stake type",
        _set("validators.0.stake", 1e10),
        r"validators\[0\]\.stake: must be an integer, got float",
    ),
    ("params type", _set("params", [1]), "params: must be an object"),
    (
        "unknown param override",
        _set("params", {"block_time": 5}),
        "params: unknown chain parameter 'block_time'",
    ),
    (
        "param wrong type",
        _set("params", {"slot_ms": "1s"}),
        "params: chain parameter slot_ms must be int, got str",
    ),
    ("param inconsistent", _set("params", {"slot_ms": 0}), "params: .*slot_ms must be positive"),
    (
        "param out of range",
        _set("params", {"max_validators": 65_536}),
        "params: chain parameter max_validators",
    ),
    ("param network", _set("params", {"network": "mainnet"}), "params.network: set the top-level network"),
    ("param chain id", _set("params", {"chain_id": "LC DEV"}), "params: chain parameter chain_id"),
    ("min_stake override", _set("params", {"min_stake": 10**12}), r"validators\[0\]\.stake: must be in"),
    ("base_model missing", lambda d: d.pop("base_model"), "base_model: must be"),
    ("base_model shape", _set("base_model", {"name": "lc-tiny"}), "base_model: must be"),
    ("base_model name empty", _set("base_model.name", ""), "base_model.name: must be a non-empty string"),
    ("base_model name chars", _set("base_model.name", "my model"), "base_model.name"),
    (
        "bad weights_hash hex",
        _set("base_model.weights_hash", "xyz"),
        "base_model.weights_hash: 'xyz' is not hex",
    ),
    (
        "bad weights_hash length",
        _set("base_model.weights_hash", "ab" * 16),
        "base_model.weights_hash: must be 32 bytes, got 16",
    ),
    (
        "weights_hash type",
        _set("base_model.weights_hash", 5),
        "base_model.weights_hash: must be a hex string",
    ),
    ("extra_data type", _set("extra_data", 5), "extra_data: must be a string"),
    ("extra_data size", _set("extra_data", "x" * 257), "extra_data: must be a string of at most 256 bytes"),
]


@pytest.mark.parametrize(
    ("mutate", "message"), [(m, msg) for _, m, msg in BAD_FIELDS], ids=[name for name, _, _ in BAD_FIELDS]
)
def test_each_bad_field_gives_a_config_error_naming_it(mutate: Mutation, message: str) -> None:
    doc = make_doc()
    mutate(doc)
    with pytest.raises(ConfigError, match=f"^genesis: {message}"):
        parse_genesis(doc)


def test_top_level_must_be_an_object() -> None:
    docs: list[object] = [[], "genesis", 5, None]
    for doc in docs:
        with pytest.raises(ConfigError, match="genesis: top level: must be a JSON object"):
            parse_genesis(doc)


def test_load_genesis_reads_files_and_reports_bad_ones(tmp_path: Path) -> None:
    good = tmp_path / "genesis.json"
    good.write_text(json.dumps(make_doc()))
    assert load_genesis(good) == parse_genesis(make_doc())
    bad = tmp_path / "bad.json"
    bad.write_text('{"network": "devnet",')
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_genesis(bad)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_genesis(binary)
    with pytest.raises(ConfigError, match="cannot read"):
        load_genesis(tmp_path / "missing.json")


@given(st.data())
def test_json_round_trip_of_generated_genesis(data: st.DataObject) -> None:
    """parse(to_json(g)) == g for any genesis a valid file can describe."""
    params = data.draw(st.sampled_from(["devnet", "testnet", "mainnet"]))
    doc = make_doc(params)
    doc["timestamp_ms"] = data.draw(st.integers(1, 2**63 - 1))
    doc["extra_data"] = data.draw(st.text(max_size=60).filter(lambda s: len(s.encode()) <= 256))
    doc["base_model"]["weights_hash"] = data.draw(st.binary(min_size=32, max_size=32)).hex()
    doc["params"] = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "slot_ms": st.integers(1, 2**32 - 1),
                "lora_rank": st.integers(1, 64),
                "aggregation_rule": st.sampled_from(["fedavg", "trimmed_mean", "median"]),
                "lora_targets": st.lists(
                    st.sampled_from(["q_proj", "k_proj", "v_proj", "o_proj"]), max_size=4
                ),
            },
        )
    )
    g = parse_genesis(doc)
    assert parse_genesis(genesis_to_json(g)) == g
    assert parse_genesis(json.loads(json.dumps(genesis_to_json(g)))) == g


def test_too_many_validators_is_a_config_error() -> None:
    doc = make_doc()
    template = doc["validators"][0]
    doc["validators"] = [
        dict(template, validator_pubkey=SecretKey.from_label(f"v{i}").pubkey.hex()) for i in range(1_001)
    ]
    with pytest.raises(ConfigError, match="genesis: validators: 1001 items, at most 1000 allowed"):
        parse_genesis(doc)
