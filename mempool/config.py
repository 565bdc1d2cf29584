"""Mempool policy knobs and the frozen statistics value (node policy, not consensus: PROTOCOL "SHOULD").

Owns: `PoolKind` (which of the three pools a tx kind lives in), `PoolLimits`, `MempoolConfig` with
sane defaults, `MempoolStats`/`PoolStats` returned by `Mempool.statistics()`, and the fee-rate unit.
Must not: read files or the environment (the daemon maps its `NodeConfig` into `MempoolConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from chain.errors import ConfigError
from chain.tx import TxKind

# Fee rates are integers: base units of fee per 1000 encoded bytes, rounded down (`fee_rate`).
FEE_RATE_BYTES: Final = 1000


def fee_rate(fee: int, size: int) -> int:
    """Fee rate of a tx: base units per 1000 encoded bytes, rounded down (fee rate = fee / size)."""
    return fee * FEE_RATE_BYTES // max(size, 1)


class PoolKind(IntEnum):
    """The three pools of the paper's Mempool: plain txs, data units, learning units."""

    TX = 0
    DATA = 1
    LEARNING = 2


def pool_of(kind: TxKind) -> PoolKind:
    if kind is TxKind.DATA_UNIT:
        return PoolKind.DATA
    if kind is TxKind.LEARNING_UNIT:
        return PoolKind.LEARNING
    return PoolKind.TX


@dataclass(frozen=True, slots=True)
class PoolLimits:
    max_count: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class MempoolConfig:
    """Policy of one node's mempool. Every limit is enforced on every change (see docs/mempool.md)."""

    tx: PoolLimits = field(default_factory=lambda: PoolLimits(50_000, 64 * 1024 * 1024))
    data: PoolLimits = field(default_factory=lambda: PoolLimits(5_000, 8 * 1024 * 1024))
    learning: PoolLimits = field(default_factory=lambda: PoolLimits(5_000, 8 * 1024 * 1024))
    max_per_sender: int = 64  # pending items of one sender across the three pools
    replace_fee_bump_permille: int = 100  # a replacement pays at least 10 % more fee
    expiry_ms: int = 3 * 3600 * 1000  # mempool_expiry: items older than this are dropped
    recent_rejects: int = 50_000  # ids of permanently invalid items remembered (LRU)
    checked_cache: int = 4_096  # signature-checked txs refused against state, kept for resends (LRU)
    max_nonce_gap: int = 16  # future nonces held in memory (not accepted) while the gap fills
    max_future: int = 2_000  # total of such held items
    sync_writes: bool = True  # fsync every accepted item (survives power loss, not only SIGKILL)

    def limits(self, pool: PoolKind) -> PoolLimits:
        return (self.tx, self.data, self.learning)[pool]

    def validate(self) -> None:
        """Raise `ConfigError` naming the first unusable knob."""
        for kind in PoolKind:
            lim = self.limits(kind)
            if lim.max_count < 1 or lim.max_bytes < 1:
                raise ConfigError(f"mempool: the {kind.name.lower()} pool limits must be positive")
        if self.max_per_sender < 1:
            raise ConfigError("mempool: max_per_sender must be at least 1")
        if not 0 <= self.replace_fee_bump_permille <= 100_000:
            raise ConfigError("mempool: replace_fee_bump_permille must be in [0, 100000]")
        if self.expiry_ms < 1:
            raise ConfigError("mempool: expiry_ms must be positive")
        if min(self.recent_rejects, self.checked_cache, self.max_nonce_gap, self.max_future) < 0:
            raise ConfigError("mempool: cache sizes, max_nonce_gap and max_future must be >= 0")


DEFAULT_CONFIG: Final = MempoolConfig()


@dataclass(frozen=True, slots=True)
class PoolStats:
    kind: PoolKind
    count: int
    bytes: int
    max_count: int
    max_bytes: int
    min_fee_rate: int  # lowest fee rate held (0 when empty)
    min_fee_rate_to_enter: int  # what a new item must beat while the pool is full (0 when not full)


@dataclass(frozen=True, slots=True)
class MempoolStats:
    pools: tuple[PoolStats, PoolStats, PoolStats]  # indexed by PoolKind
    senders: int
    oldest_age_ms: int  # 0 when empty
    future_held: int  # items waiting for a nonce gap to fill (not accepted yet)
    recent_rejects: int
    accepted_total: int
    rejected_total: int
    evicted_total: int
    expired_total: int

    @property
    def count(self) -> int:
        return sum(p.count for p in self.pools)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.pools)
