"""The Mempool (ARCHITECTURE.md §1): pending txs, data units and learning units until blocks include them.

Owns: admission policy (`mempool.policy`, pure), the three pools (`mempool.pool`), their LevelDB
persistence (`mempool.store`) and the `Mempool` facade. Must not: import anything but `chain`
(import-linter contract) or change chain state.
"""

from mempool.config import (
    DEFAULT_CONFIG,
    MempoolConfig,
    MempoolStats,
    PoolKind,
    PoolLimits,
    PoolStats,
    fee_rate,
)
from mempool.mempool import Mempool

__all__ = [
    "DEFAULT_CONFIG",
    "Mempool",
    "MempoolConfig",
    "MempoolStats",
    "PoolKind",
    "PoolLimits",
    "PoolStats",
    "fee_rate",
]
