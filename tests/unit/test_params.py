"""Chain parameters: presets, validation, overrides and their encoding (PROTOCOL §2).

Owns: tests of `chain.params`. Must not: pin preset bytes (tests/vectors/params.json does, through
test_vectors.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from chain.codec import decode, encode
from chain.errors import ConfigError
from chain.params import DEVNET, MAINNET, PRESETS, TESTNET, AggregationRule, ChainParams, preset


@pytest.mark.parametrize("network", ["devnet", "testnet", "mainnet"])
def test_presets_are_valid_and_round_trip(network: str) -> None:
    params = preset(network)
    params.validate()
    assert params.network == network
    assert decode(ChainParams, encode(params)) == params


def test_presets_differ_in_identity_and_speed() -> None:
    assert len({p.chain_id for p in PRESETS.values()}) == 3
    assert DEVNET.stake_maturity_blocks == 0  # instant maturity on devnet (PROTOCOL §2)
    assert DEVNET.vdf_iterations < TESTNET.vdf_iterations < MAINNET.vdf_iterations
    assert (DEVNET.finality_threshold_num, DEVNET.finality_threshold_den) == (2, 3)  # §4.4, exact


def test_unknown_network_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown network 'regtest'"):
        preset("regtest")


def test_overrides_apply_and_convert_enums() -> None:
    p = DEVNET.with_overrides(
        {"slot_ms": 500, "aggregation_rule": "trimmed-mean", "lora_targets": ["q_proj"]}
    )
    assert p.slot_ms == 500
    assert p.aggregation_rule is AggregationRule.TRIMMED_MEAN
    assert p.lora_targets == ("q_proj",)
    assert DEVNET.with_overrides({"aggregation_rule": 3}).aggregation_rule is AggregationRule.MEDIAN
    assert DEVNET.slot_ms == 1_000  # presets are never mutated


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"no_such_param": 1}, "unknown chain parameter 'no_such_param'"),
        ({"slot_ms": "fast"}, "slot_ms must be int, got str"),
        ({"slot_ms": 1.5}, "slot_ms must be int, got float"),
        ({"slot_ms": True}, "slot_ms must be int, got bool"),
        ({"slot_ms": 0}, "slot_ms must be positive"),
        ({"aggregation_rule": "best"}, "aggregation_rule: 'best' is not one of"),
        ({"aggregation_rule": True}, "aggregation_rule"),
        ({"lora_targets": "q_proj"}, "lora_targets must be a list of strings"),
        ({"vdf_discriminant_bits": 2048}, "vdf_discriminant_bits"),
        ({"finality_threshold_num": 1, "finality_threshold_den": 2}, "finality_threshold_num"),
        ({"finality_threshold_num": 4, "finality_threshold_den": 3}, "finality_threshold_num"),
        ({"finality_threshold_den": 0}, "finality_threshold_num"),
        ({"reputation_start": 2000}, "reputation_start"),
        ({"slash_double_attest_permille": 1001}, "slash_double_attest_permille"),
        ({"max_tx_bytes": 10**9}, "max_tx_bytes"),
        # out of the wire range of the field (PROTOCOL §1.1): named, never a bare codec error
        ({"max_attestations": 70_000}, "max_attestations"),
        ({"vdf_iterations": 2**64}, "vdf_iterations"),
        ({"min_stake": 2**63}, "min_stake"),
        ({"rank_delay_ms": -1}, "rank_delay_ms"),
        ({"chain_id": "Not A Chain Id"}, "chain_id"),
        ({"lora_targets": ["q proj"]}, "lora_targets"),
        ({"lora_targets": ["t"] * 17}, "lora_targets"),
    ],
)
def test_bad_overrides_raise_config_error_naming_the_parameter(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        DEVNET.with_overrides(overrides)


def test_params_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEVNET.slot_ms = 5  # type: ignore[misc]


def test_slash_permille_per_evidence_kind() -> None:
    assert [MAINNET.slash_permille(k) for k in (1, 2, 3, 4)] == [100, 50, 100, 50]
