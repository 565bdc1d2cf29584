"""Devnet genesis and dev keys: the embedded default network a new user runs first (ARCHITECTURE.md §7).

Owns: the deterministic dev validator keys (`devnet-validator-{i}`) and funded dev accounts
(`devnet-account-{i}`), the devnet genesis document built from them, and the `accounts.json` list
(`[{"name", "address", "secret_key_hex"}]`, like Anvil and Hardhat print theirs). Must not: be used
for testnet or mainnet (dev keys are public knowledge).
"""

from __future__ import annotations

import time
from typing import Any, Final

from chain.address import HRP_BY_NETWORK, address_of
from chain.crypto import SecretKey
from chain.genesis import LC_TINY
from chain.types import COIN
from training.base_model import LC_TINY_WEIGHTS_HASH

DEV_ACCOUNT_BALANCE: Final = 1_000_000 * COIN
DEV_VALIDATOR_STAKE: Final = 1_000 * COIN
DEV_VALIDATOR_BALANCE: Final = 1_000 * COIN


def dev_validator_key(index: int, network: str = "devnet") -> SecretKey:
    """Deterministic validator key `index` of a dev/test network (public knowledge: never for value)."""
    return SecretKey.from_label(f"{network}-validator-{index}")


def dev_account_key(index: int, network: str = "devnet") -> SecretKey:
    return SecretKey.from_label(f"{network}-account-{index}")


def lc_tiny_weights_hash() -> str:
    """The pinned hash of the shipped `lc-tiny` weights (hex; `training.base_model.weights_hash`)."""
    return LC_TINY_WEIGHTS_HASH


def devnet_genesis_doc(
    n_validators: int = 1,
    n_accounts: int = 10,
    *,
    timestamp_ms: int | None = None,
    network: str = "devnet",
) -> dict[str, Any]:
    """The JSON document of a genesis with `n_validators` dev validators and funded dev accounts.

    `network="testnet"` builds the docker testnet's genesis the same way (labelled, public keys)."""
    if not 1 <= n_validators <= 64:
        raise ValueError("a dev genesis has 1 to 64 validators")
    hrp = HRP_BY_NETWORK[network]
    ts = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    allocations = [
        {"address": address_of(dev_account_key(i, network).pubkey, hrp), "amount": DEV_ACCOUNT_BALANCE}
        for i in range(n_accounts)
    ]
    validators = []
    for i in range(n_validators):
        key = dev_validator_key(i, network)
        addr = address_of(key.pubkey, hrp)
        # The validator key's own address owns its genesis stake and receives its rewards.
        allocations.append({"address": addr, "amount": DEV_VALIDATOR_BALANCE})
        validators.append(
            {"staker": addr, "validator_pubkey": key.pubkey.hex(), "stake": DEV_VALIDATOR_STAKE}
        )
    return {
        "network": network,
        "timestamp_ms": ts,
        "params": {},
        "allocations": allocations,
        "validators": validators,
        "base_model": {"name": LC_TINY, "weights_hash": lc_tiny_weights_hash()},
        "extra_data": f"linguachain {network}",
    }


def dev_accounts(
    n_accounts: int = 10, n_validators: int = 0, network: str = "devnet"
) -> list[dict[str, str]]:
    """`accounts.json` entries: funded dev accounts first, then the validators' own addresses."""
    hrp = HRP_BY_NETWORK[network]
    out = []
    for i in range(n_accounts):
        key = dev_account_key(i, network)
        out.append(
            {"name": f"dev{i}", "address": address_of(key.pubkey, hrp), "secret_key_hex": key.seed.hex()}
        )
    for i in range(n_validators):
        key = dev_validator_key(i, network)
        out.append(
            {
                "name": f"validator{i}",
                "address": address_of(key.pubkey, hrp),
                "secret_key_hex": key.seed.hex(),
            }
        )
    return out
