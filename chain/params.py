"""Chain parameters: every consensus constant in one frozen value, with network presets (PROTOCOL §2).

Owns: `ChainParams`, the `devnet`/`testnet`/`mainnet` presets, and `with_overrides` used by genesis
files. Must not: read files or the environment (genesis.py and the daemon's config do).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, Final

from chain.codec import U8, U16, U32, U64, MaxItems, TextLen, field_error
from chain.errors import ConfigError
from chain.types import COIN, Amount, ChainId, Height

Name = Annotated[str, TextLen(64, r"[A-Za-z0-9_.\-]+")]


class AggregationRule(IntEnum):
    """Deterministic integer aggregation of learning units (PROTOCOL §6.5)."""

    FEDAVG = 1
    TRIMMED_MEAN = 2
    MEDIAN = 3
    NORM_FILTERED_FEDAVG = 4


class AggregationScheme(IntEnum):
    """Which LoRA matrices are trained and exchanged (PROTOCOL §6.2)."""

    FFA_LORA = 1  # A frozen from the genesis hash, only B exchanged
    LORA_AB = 2  # A and B averaged separately (biased, for comparison)


@dataclass(frozen=True, slots=True)
class ChainParams:
    """All consensus constants. Amounts in base units, times in ms, fractions in permille."""

    network: Name
    chain_id: ChainId
    # time and blocks (§1.3, §4)
    slot_ms: U32  # nominal parent-to-block time for rank 0 (VDF included)
    rank_delay_ms: U32  # extra wait per rank (§4.3)
    max_future_drift_ms: U32
    max_block_bytes: U32
    max_txs_per_block: U32
    max_tx_bytes: U32
    max_attestations: U16
    # VDF (§4.2)
    vdf_discriminant_bits: U16
    vdf_iterations: U64
    # stake (§4.3)
    min_stake: Amount
    stake_maturity_blocks: Height  # 0 on devnet: instant maturity
    unbonding_blocks: Height
    max_validators: U16
    # justification and finality need weight / total >= num / den, compared exactly in integers
    # (`weight * den >= total * num`): 2/3 on every network (PROTOCOL §4.4)
    finality_threshold_num: U16
    finality_threshold_den: U16
    epoch_blocks: Height  # vote and leader weights are fixed per epoch of this many heights (§4.4)
    # churn limit: from one final checkpoint's set to the next, stake may enter (and, separately,
    # leave) by at most this permille of the previous set's stake, at least min_stake; the rest waits
    churn_limit_permille: U16
    # fees and rewards (§5.1)
    min_fee: Amount
    reward_tx: Amount
    reward_data_proposer: Amount
    reward_data_pool: Amount
    reward_version_proposer: Amount
    reward_learning_pool: Amount
    # reputation (§5.2), permille
    reputation_start: U16
    reputation_min: U16
    reputation_max: U16
    reputation_propose_bonus: U16
    reputation_miss_penalty: U16
    reputation_unit_bonus: U16
    reputation_unit_penalty: U16
    max_reputation_gain_per_block: U16  # cap on one validator's gain from one block (§5.2)
    # slashing (§5.3), permille of stake
    slash_double_proposal_permille: U16
    slash_double_attest_permille: U16
    slash_invalid_block_permille: U16
    slash_false_score_permille: U16
    slash_reporter_share_permille: U16
    jail_blocks: Height
    # proof of work (§4.6), leading zero bits
    pow_bits_header: U8
    pow_bits_unit_base: U8
    pow_bits_unit_per_mib: U8
    # data and learning (§3.3, §3.4, §6)
    max_data_unit_bytes: U32
    max_learning_unit_bytes: U32
    max_test_examples: U32
    fp_shift: U8
    lora_rank: U16
    lora_alpha: U16
    lora_targets: Annotated[tuple[Name, ...], MaxItems(16)]
    aggregation_scheme: AggregationScheme
    aggregation_rule: AggregationRule
    trim_fraction_permille: U16
    clip_norm_micro: U64
    max_staleness: U16
    min_units_per_version: U16
    n_score_batches: U16
    score_tolerance_micro: U64
    score_slash_tolerance_micro: U64
    # learning rules of PROTOCOL §6.4-§6.5 as implemented in chain.consensus (docs/learning.md)
    version_lag_rounds: U16  # a version's inputs (units, test set) are fixed this many rounds earlier
    norm_filter_factor_permille: U32  # norm-filtered fedavg drops norms above factor x median norm
    near_duplicate_permille: U16  # MinHash Jaccard at or above which two examples are near duplicates
    min_example_bytes: U32  # shorter examples (UTF-8 bytes of prompt + completion) are outliers
    max_example_bytes: U32  # longer examples are outliers
    length_outlier_factor: U16  # longer than factor x median or shorter than median / factor: outlier

    def slash_permille(self, kind: int) -> int:
        """Slash fraction for an `EvidenceKind` value (1..5, see chain.evidence)."""
        return {
            1: self.slash_double_proposal_permille,
            2: self.slash_double_attest_permille,
            3: self.slash_invalid_block_permille,
            4: self.slash_false_score_permille,
            5: self.slash_double_attest_permille,  # SURROUND_VOTE: a vote fault like a double vote
        }[kind]

    def validate(self) -> None:
        """Raise `ConfigError` naming the first inconsistent parameter."""
        checks: list[tuple[bool, str]] = [
            (self.slot_ms > 0, "slot_ms must be positive"),
            (self.max_block_bytes >= 1024, "max_block_bytes must be at least 1024"),
            (self.max_txs_per_block >= 1, "max_txs_per_block must be at least 1"),
            (0 < self.max_tx_bytes <= self.max_block_bytes, "max_tx_bytes must be in (0, max_block_bytes]"),
            (
                self.vdf_discriminant_bits in (128, 256, 512, 1024),
                "vdf_discriminant_bits must be 128, 256, 512 or 1024 (chiavdf refuses 2048)",
            ),
            (self.vdf_iterations >= 1, "vdf_iterations must be at least 1"),
            (self.min_stake > 0, "min_stake must be positive"),
            (
                self.finality_threshold_den > 0
                and self.finality_threshold_den < 2 * self.finality_threshold_num
                and self.finality_threshold_num <= self.finality_threshold_den,
                "finality_threshold_num / finality_threshold_den must be in (1/2, 1]",
            ),
            (self.epoch_blocks >= 3, "epoch_blocks must be at least 3"),
            (0 < self.churn_limit_permille <= 1000, "churn_limit_permille must be in (0, 1000]"),
            (self.max_validators <= 4096, "max_validators must be at most 4096"),
            (
                self.reputation_min <= self.reputation_start <= self.reputation_max,
                "reputation_start must lie in [reputation_min, reputation_max]",
            ),
            (
                self.slash_reporter_share_permille <= 500,
                "slash_reporter_share_permille must be <= 500 (self-reporting must never pay)",
            ),
            (self.max_learning_unit_bytes > 0, "max_learning_unit_bytes must be positive"),
            (self.fp_shift <= 30, "fp_shift must be at most 30"),
            (self.lora_rank >= 1, "lora_rank must be at least 1"),
            (self.trim_fraction_permille < 500, "trim_fraction_permille must be below 500"),
            (self.n_score_batches >= 1, "n_score_batches must be at least 1"),
            (self.version_lag_rounds >= 1, "version_lag_rounds must be at least 1"),
            (self.norm_filter_factor_permille >= 1000, "norm_filter_factor_permille must be >= 1000"),
            (0 < self.near_duplicate_permille <= 1000, "near_duplicate_permille must be in (0, 1000]"),
            (
                1 <= self.min_example_bytes <= self.max_example_bytes,
                "min_example_bytes must be in [1, max_example_bytes]",
            ),
            (self.length_outlier_factor >= 2, "length_outlier_factor must be at least 2"),
        ]
        for name in ("double_proposal", "double_attest", "invalid_block", "false_score"):
            v = getattr(self, f"slash_{name}_permille")
            checks.append((v <= 1000, f"slash_{name}_permille must be <= 1000"))
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"chain parameters ({self.network}): {message}")

    def with_overrides(self, overrides: dict[str, Any]) -> ChainParams:
        """A copy with `overrides` applied; unknown names and wrong types raise `ConfigError`."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        clean: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in fields:
                raise ConfigError(f"unknown chain parameter {key!r}")
            current = getattr(self, key)
            if isinstance(current, IntEnum):
                if type(value) is bool:
                    raise ConfigError(f"chain parameter {key} must be a name or a number, got bool")
                try:
                    value = (
                        type(current)[value.upper().replace("-", "_")]
                        if isinstance(value, str)
                        else type(current)(value)
                    )
                except (KeyError, ValueError):
                    names = ", ".join(m.name.lower() for m in type(current))
                    raise ConfigError(f"chain parameter {key}: {value!r} is not one of {names}") from None
            elif isinstance(current, tuple):
                if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                    raise ConfigError(f"chain parameter {key} must be a list of strings")
                value = tuple(value)
            elif type(value) is not type(current):
                raise ConfigError(
                    f"chain parameter {key} must be {type(current).__name__}, got {type(value).__name__}"
                )
            problem = field_error(ChainParams, key, value)  # wire range of the field (PROTOCOL §1.1)
            if problem is not None:
                raise ConfigError(f"chain parameter {key}: {problem}")
            clean[key] = value
        out = dataclasses.replace(self, **clean)
        out.validate()
        return out


_BASE: Final = ChainParams(
    network="mainnet",
    chain_id=ChainId("lc-mainnet"),
    slot_ms=12_000,
    rank_delay_ms=4_000,
    max_future_drift_ms=2_000,
    max_block_bytes=2 * 1024 * 1024,
    max_txs_per_block=5_000,
    max_tx_bytes=64 * 1024,
    max_attestations=1_024,
    vdf_discriminant_bits=1024,
    vdf_iterations=500_000,
    min_stake=Amount(1_000 * COIN),
    stake_maturity_blocks=Height(300),
    unbonding_blocks=Height(100_800),  # 14 days of 12 s slots: the evidence window (§5.3)
    max_validators=1_000,
    finality_threshold_num=2,
    finality_threshold_den=3,
    epoch_blocks=Height(30),
    churn_limit_permille=64,  # about 1/16 of the stake per epoch each way
    min_fee=Amount(1_000),
    reward_tx=Amount(2 * COIN),
    reward_data_proposer=Amount(1 * COIN),
    reward_data_pool=Amount(3 * COIN),
    reward_version_proposer=Amount(2 * COIN),
    reward_learning_pool=Amount(10 * COIN),
    reputation_start=1000,
    reputation_min=500,
    reputation_max=1500,
    reputation_propose_bonus=5,
    reputation_miss_penalty=20,
    reputation_unit_bonus=5,
    reputation_unit_penalty=20,
    max_reputation_gain_per_block=10,
    slash_double_proposal_permille=100,
    slash_double_attest_permille=50,
    slash_invalid_block_permille=100,
    slash_false_score_permille=50,
    slash_reporter_share_permille=100,
    jail_blocks=Height(1_000),
    pow_bits_header=8,
    pow_bits_unit_base=12,
    pow_bits_unit_per_mib=2,
    max_data_unit_bytes=4 * 1024 * 1024,
    max_learning_unit_bytes=16 * 1024 * 1024,
    max_test_examples=512,
    fp_shift=24,
    lora_rank=4,
    lora_alpha=8,
    lora_targets=("q_proj", "v_proj"),
    aggregation_scheme=AggregationScheme.FFA_LORA,
    aggregation_rule=AggregationRule.FEDAVG,
    trim_fraction_permille=100,
    clip_norm_micro=1_000_000,
    max_staleness=2,
    min_units_per_version=1,
    n_score_batches=8,
    score_tolerance_micro=20_000,
    score_slash_tolerance_micro=200_000,
    version_lag_rounds=2,
    norm_filter_factor_permille=3_000,
    near_duplicate_permille=800,
    min_example_bytes=8,
    max_example_bytes=4_096,
    length_outlier_factor=8,
)

MAINNET: Final = _BASE
TESTNET: Final = dataclasses.replace(
    _BASE,
    network="testnet",
    chain_id=ChainId("lc-testnet-1"),
    slot_ms=6_000,
    rank_delay_ms=3_000,
    vdf_iterations=100_000,
    min_stake=Amount(100 * COIN),
    stake_maturity_blocks=Height(30),
    unbonding_blocks=Height(14_400),  # 24 hours of 6 s slots: the evidence window (§5.3)
    jail_blocks=Height(100),
    pow_bits_header=6,
    version_lag_rounds=3,  # 54 s of 6 s slots for aggregation and scoring
)
DEVNET: Final = dataclasses.replace(
    _BASE,
    network="devnet",
    chain_id=ChainId("lc-devnet"),
    slot_ms=1_000,
    rank_delay_ms=1_000,
    max_future_drift_ms=2_000,
    vdf_discriminant_bits=128,
    vdf_iterations=2_000,
    min_stake=Amount(10 * COIN),
    stake_maturity_blocks=Height(0),
    unbonding_blocks=Height(6),
    epoch_blocks=Height(6),
    churn_limit_permille=250,  # a staked newcomer leads within seconds (functional tests)
    jail_blocks=Height(30),
    pow_bits_header=4,
    pow_bits_unit_base=4,
    pow_bits_unit_per_mib=1,
    # scoring two adapters on the active test set must fit in the lag: lc-tiny on one CPU thread
    # scores ~2,900 tokens/s (docs/learning.md), so 128 examples of ~150 tokens take ~13 s
    max_test_examples=128,
    version_lag_rounds=10,  # 30 s of 1 s slots
)

PRESETS: Final[dict[str, ChainParams]] = {"mainnet": MAINNET, "testnet": TESTNET, "devnet": DEVNET}


def preset(network: str) -> ChainParams:
    try:
        return PRESETS[network]
    except KeyError:
        raise ConfigError(f"unknown network {network!r} (expected devnet, testnet or mainnet)") from None
