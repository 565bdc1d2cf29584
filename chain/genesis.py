"""Genesis files: load, validate, hash (PROTOCOL §2).

Owns: the `Genesis` value (preset + overrides, allocations, initial validators, base model), its JSON
form, and the genesis block header. Must not: compute state (chain.state builds the genesis state and
passes its root to `genesis_header`).

The JSON file names a preset and overrides; the canonical identity of the chain is the hash of the
genesis *block*, whose `prev_hash` is H(canonical encoding of `Genesis`) and whose `state_root` is the
state after the allocations and stakes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

from chain.address import HRP_BY_NETWORK, AddressError, decode_address, encode_address
from chain.codec import ByteLen, MaxItems, SchemaError, TextLen, encode, field_error
from chain.crypto import is_valid_pubkey
from chain.errors import ConfigError
from chain.hashing import H, merkle_root
from chain.header import PROTOCOL_VERSION, BlockKind, Header
from chain.params import ChainParams, preset
from chain.types import (
    MAX_AMOUNT,
    ZERO_PUBKEY,
    AccountId,
    Amount,
    BlockHash,
    Hash32,
    Height,
    PubKey,
    StateRoot,
    TimestampMs,
)

MAX_GENESIS_BYTES: Final = 8 * 1024 * 1024
LC_TINY: Final = "lc-tiny"


@dataclass(frozen=True, slots=True)
class Allocation:
    account: AccountId
    amount: Amount


@dataclass(frozen=True, slots=True)
class GenesisValidator:
    staker: AccountId  # owner of the stake (cold wallet)
    validator: PubKey  # hot validator key
    stake: Amount


@dataclass(frozen=True, slots=True)
class BaseModel:
    """The pinned base model (PROTOCOL §6.1): `lc-tiny` or a HF directory, by its weights' hash."""

    name: Annotated[str, TextLen(128, r"[A-Za-z0-9_.\-/]+")]
    weights_hash: Hash32


@dataclass(frozen=True, slots=True)
class Genesis:
    params: ChainParams
    timestamp_ms: TimestampMs
    allocations: Annotated[tuple[Allocation, ...], MaxItems(100_000)]
    validators: Annotated[tuple[GenesisValidator, ...], MaxItems(1_000)]
    base_model: BaseModel
    extra_data: Annotated[bytes, ByteLen(0, 256)] = b""

    @property
    def id(self) -> Hash32:
        return H(encode(self))

    @property
    def hrp(self) -> str:
        return HRP_BY_NETWORK[self.params.network]


def genesis_header(genesis: Genesis, state_root: StateRoot) -> Header:
    """The height-0 header; its hash is the chain's identity (compared at every handshake)."""
    return Header(
        version=PROTOCOL_VERSION,
        chain_id=genesis.params.chain_id,
        height=Height(0),
        kind=BlockKind.GENESIS,
        prev_hash=BlockHash(genesis.id),
        timestamp_ms=genesis.timestamp_ms,
        proposer=ZERO_PUBKEY,
        rank=0,
        vdf_output=b"",
        vdf_proof=b"",
        body_root=merkle_root([]),
        state_root=state_root,
        parent_certificate=(),
    )


# -- JSON ---------------------------------------------------------------------------------------


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"genesis: {where}: {message}")


def _int(value: Any, where: str, lo: int = 0, hi: int = MAX_AMOUNT) -> int:
    if type(value) is not int:
        raise _fail(where, f"must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise _fail(where, f"must be in [{lo}, {hi}], got {value}")
    return value


def _hex(value: Any, where: str, length: int) -> bytes:
    if not isinstance(value, str):
        raise _fail(where, "must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise _fail(where, f"{value!r} is not hex") from None
    if len(raw) != length:
        raise _fail(where, f"must be {length} bytes, got {len(raw)}")
    return raw


def _address(value: Any, where: str, hrp: str) -> AccountId:
    if not isinstance(value, str):
        raise _fail(where, "must be an address string")
    try:
        return decode_address(value, hrp)
    except AddressError as exc:
        raise _fail(where, str(exc)) from None


def parse_genesis(doc: Any) -> Genesis:
    """Validate a decoded genesis JSON document; `ConfigError` names the first bad field."""
    if not isinstance(doc, dict):
        raise _fail("top level", "must be a JSON object")
    known = {"network", "timestamp_ms", "params", "allocations", "validators", "base_model", "extra_data"}
    for key in doc:
        if key not in known:
            raise _fail(key, "unknown field")
    network = doc.get("network")
    if not isinstance(network, str):
        raise _fail("network", "missing or not a string (devnet, testnet or mainnet)")
    try:
        base = preset(network)
    except ConfigError as exc:
        raise _fail("network", str(exc)) from None
    overrides = doc.get("params", {})
    if not isinstance(overrides, dict):
        raise _fail("params", "must be an object of parameter overrides")
    if "network" in overrides:
        raise _fail("params.network", "set the top-level network instead")
    try:
        params = base.with_overrides(overrides)
    except ConfigError as exc:
        raise _fail("params", str(exc)) from None
    hrp = HRP_BY_NETWORK[network]
    timestamp = _int(doc.get("timestamp_ms"), "timestamp_ms", 1, 2**63 - 1)

    raw_allocs = doc.get("allocations", [])
    if not isinstance(raw_allocs, list):
        raise _fail("allocations", "must be a list")
    allocations: list[Allocation] = []
    seen: set[bytes] = set()
    total = 0
    for i, entry in enumerate(raw_allocs):
        where = f"allocations[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"address", "amount"}:
            raise _fail(where, 'must be {"address": ..., "amount": ...}')
        account = _address(entry["address"], f"{where}.address", hrp)
        if account in seen:
            raise _fail(where, f"duplicate address {entry['address']}")
        seen.add(account)
        amount = _int(entry["amount"], f"{where}.amount", 1)
        total += amount
        if total > MAX_AMOUNT:
            raise _fail(where, "allocations overflow 2^63-1 base units in total")
        allocations.append(Allocation(account, Amount(amount)))

    raw_vals = doc.get("validators", [])
    if not isinstance(raw_vals, list):
        raise _fail("validators", "must be a list")
    validators: list[GenesisValidator] = []
    seen_keys: set[bytes] = set()
    for i, entry in enumerate(raw_vals):
        where = f"validators[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"staker", "validator_pubkey", "stake"}:
            raise _fail(where, 'must be {"staker": ..., "validator_pubkey": ..., "stake": ...}')
        staker = _address(entry["staker"], f"{where}.staker", hrp)
        key = PubKey(_hex(entry["validator_pubkey"], f"{where}.validator_pubkey", 32))
        if not is_valid_pubkey(key):
            raise _fail(f"{where}.validator_pubkey", "is not a valid Ed25519 public key")
        if key in seen_keys:
            raise _fail(where, "duplicate validator_pubkey")
        seen_keys.add(key)
        stake = _int(entry["stake"], f"{where}.stake", params.min_stake)
        total += stake
        if total > MAX_AMOUNT:
            raise _fail(where, "stakes and allocations overflow 2^63-1 base units in total")
        validators.append(GenesisValidator(staker, key, Amount(stake)))
    if not validators:
        raise _fail("validators", "at least one initial validator is needed to produce blocks")
    for name, items in (("allocations", allocations), ("validators", validators)):
        problem = field_error(Genesis, name, tuple(items))
        if problem is not None:
            raise _fail(name, problem)

    bm = doc.get("base_model")
    if not isinstance(bm, dict) or set(bm) != {"name", "weights_hash"}:
        raise _fail("base_model", 'must be {"name": ..., "weights_hash": <64 hex chars>}')
    if not isinstance(bm["name"], str) or not bm["name"]:
        raise _fail("base_model.name", "must be a non-empty string")
    problem = field_error(BaseModel, "name", bm["name"])
    if problem is not None:
        raise _fail("base_model.name", f"{problem} (letters, digits, '_', '.', '-', '/'; at most 128)")
    base_model = BaseModel(bm["name"], Hash32(_hex(bm["weights_hash"], "base_model.weights_hash", 32)))
    extra = doc.get("extra_data", "")
    if not isinstance(extra, str) or len(extra.encode()) > 256:
        raise _fail("extra_data", "must be a string of at most 256 bytes")
    genesis = Genesis(
        params=params,
        timestamp_ms=TimestampMs(timestamp),
        allocations=tuple(sorted(allocations, key=lambda a: a.account)),
        validators=tuple(sorted(validators, key=lambda v: v.validator)),
        base_model=base_model,
        extra_data=extra.encode(),
    )
    try:
        encode(genesis)  # the codec re-checks every bound (list lengths included)
    except SchemaError as exc:
        raise ConfigError(f"genesis: {exc}") from None
    return genesis


def load_genesis(path: str | Path) -> Genesis:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"genesis: cannot read {p}: {exc.strerror}") from None
    if len(raw) > MAX_GENESIS_BYTES:
        raise ConfigError(f"genesis: {p} is larger than {MAX_GENESIS_BYTES} bytes")
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"genesis: {p} is not valid JSON: {exc}") from None
    return parse_genesis(doc)


def genesis_to_json(genesis: Genesis) -> dict[str, Any]:
    """The JSON document of `genesis` (overrides relative to its preset only)."""
    base = preset(genesis.params.network)
    overrides: dict[str, Any] = {}
    for f in dataclasses.fields(genesis.params):
        mine, theirs = getattr(genesis.params, f.name), getattr(base, f.name)
        if mine != theirs:
            overrides[f.name] = (
                mine.name.lower()
                if hasattr(mine, "name")
                else (list(mine) if isinstance(mine, tuple) else mine)
            )
    hrp = genesis.hrp
    return {
        "network": genesis.params.network,
        "timestamp_ms": genesis.timestamp_ms,
        "params": overrides,
        "allocations": [
            {"address": encode_address(a.account, hrp), "amount": a.amount} for a in genesis.allocations
        ],
        "validators": [
            {"staker": encode_address(v.staker, hrp), "validator_pubkey": v.validator.hex(), "stake": v.stake}
            for v in genesis.validators
        ],
        "base_model": {
            "name": genesis.base_model.name,
            "weights_hash": genesis.base_model.weights_hash.hex(),
        },
        "extra_data": genesis.extra_data.decode(),
    }
