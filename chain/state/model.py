"""State records (PROTOCOL §3.5) and the read-only `StateReader` protocol other packages use.

Owns: the frozen record types stored under the state keys, and `StateReader`. Must not: change
state (chain.state.transition does) or touch LevelDB (chain.store does).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Protocol

from chain.codec import I64, U16, U32, MaxItems
from chain.params import ChainParams
from chain.types import (
    ZERO_HASH,
    AccountId,
    Amount,
    BlobHash,
    BlockHash,
    Hash32,
    Height,
    Nonce,
    PubKey,
    Round,
)


@dataclass(frozen=True, slots=True)
class Account:
    balance: Amount = Amount(0)  # noqa: RUF009 - NewType call is free
    nonce: Nonce = Nonce(0)  # noqa: RUF009 - the next nonce this account must use


EMPTY_ACCOUNT = Account()


@dataclass(frozen=True, slots=True)
class Unbonding:
    amount: Amount
    release_height: Height  # coins return to the owner's balance when this height is applied


@dataclass(frozen=True, slots=True)
class StakeRecord:
    """Stake owned by `owner` (cold wallet) and bound to the hot key `validator`."""

    owner: AccountId
    validator: PubKey
    amount: Amount  # bonded (counts for election once mature)
    mature_height: Height  # height from which `amount` counts (last deposit + stake_maturity_blocks)
    unbonding: Annotated[tuple[Unbonding, ...], MaxItems(64)] = ()


@dataclass(frozen=True, slots=True)
class ValidatorRecord:
    pubkey: PubKey
    stake_total: Amount  # sum of bonded stake of every owner
    reputation: U16  # permille, [reputation_min, reputation_max] (PROTOCOL §5.2)
    jailed_until: Height  # not eligible while height < jailed_until
    last_proposed: Height


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """The current global model version (PROTOCOL §6.1): version 0 is the zero adapter."""

    version: I64
    version_id: Hash32
    adapter_blob_hash: BlobHash
    score: I64  # mean loss in micro-units on the last data block's test set (lower is better)
    round: Round
    height: Height


GENESIS_MODEL = ModelVersion(0, ZERO_HASH, BlobHash(ZERO_HASH), 0, Round(0), Height(0))


class RewardReason(IntEnum):
    """Why coins were minted, moved or burned by rule (PROTOCOL §5, `rewards explain`)."""

    TX_PROPOSER = 1
    TX_FEES = 2
    DATA_PROPOSER = 3
    DATA_CONTRIBUTOR = 4
    VERSION_PROPOSER = 5
    LEARNING_CONTRIBUTOR = 6
    SLASH_BURN = 7
    SLASH_REPORTER = 8
    UNBONDED = 9


@dataclass(frozen=True, slots=True)
class RewardRecord:
    height: Height
    account: AccountId
    amount: I64  # negative for burns
    reason: RewardReason
    ref: Hash32  # unit id, evidence id, tx id or block hash the reward is for


MAX_SET_MEMBERS = 4096  # ChainParams.validate caps max_validators at this


@dataclass(frozen=True, slots=True)
class SetMember:
    """One validator of a fixed validator set: bonded stake (vote weight) and reputation (leader
    order only), both as of the checkpoint the set was taken at."""

    pubkey: PubKey
    stake: Amount
    reputation: U16


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """A validator set fixed from one checkpoint block (PROTOCOL §4.4).

    Three are kept in state (chain.state.epochs): the *active* set (votes and leaders of `epoch`),
    the *final* set (taken at the last checkpoint this chain proves final; it becomes the active set
    at the next epoch) and the *pending* set (taken at the last justified checkpoint, promoted to
    final when the checkpoint's child is justified too). `epoch` is meaningful for the active set.
    """

    epoch: U32
    checkpoint_height: Height
    checkpoint_hash: Hash32
    members: Annotated[tuple[SetMember, ...], MaxItems(MAX_SET_MEMBERS)]  # sorted by pubkey

    def stakes(self) -> dict[PubKey, int]:
        return {m.pubkey: int(m.stake) for m in self.members}


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A block named by height and hash; height 0 with the zero hash names the genesis."""

    height: Height
    block_hash: BlockHash


GENESIS_CHECKPOINT = Checkpoint(Height(0), BlockHash(ZERO_HASH))


class StateReader(Protocol):
    """Read-only view of the state as of one block (the tip, or any parent during validation)."""

    @property
    def params(self) -> ChainParams: ...

    @property
    def height(self) -> Height: ...

    def account(self, account: AccountId) -> Account: ...

    def stake(self, owner: AccountId, validator: PubKey) -> StakeRecord | None: ...

    def validator(self, pubkey: PubKey) -> ValidatorRecord | None: ...

    def validators(self) -> list[ValidatorRecord]: ...

    def eligible_stake(self, pubkey: PubKey, at_height: Height) -> Amount:
        """Mature bonded stake of `pubkey` that counts for electing the block at `at_height`."""
        ...

    def slashable_stake(self, pubkey: PubKey) -> Amount:
        """Stake bound to `pubkey` that evidence can still burn: bonded plus not yet released."""
        ...

    def model_version(self) -> ModelVersion: ...

    def justified(self) -> Checkpoint:
        """The highest block this chain proves justified: its child carries a threshold certificate
        for it (the source every vote for the state's last block must sign, §4.4)."""
        ...

    def validator_set(self, which: bytes) -> ValidatorSet | None:
        """The active, final or pending validator set (`chain.state.keys.ACTIVE_SET`, ...)."""
        ...

    def evidence_seen(self, key: Hash32) -> bool: ...


class UnitKind(IntEnum):
    DATA = 1
    LEARNING = 2


@dataclass(frozen=True, slots=True)
class UnitRecord:
    """A data or learning unit registered by its DATA_UNIT / LEARNING_UNIT tx (PROTOCOL §3.3, §3.4).

    Kept in state so that DATA and VERSION blocks can be checked and their contributor rewards
    computed from state alone. `used_height` is 0 until a DATA block selects it or a VERSION block
    includes it; a unit is rewarded at most once.
    """

    kind: UnitKind
    author: PubKey
    n_examples: U32
    blob_hash: BlobHash
    base_version_id: Hash32  # ZERO_HASH for data units
    height: Height  # height of the block that registered it
    byte_size: U32  # the unit's declared blob length: a blob of another length is never used (§3.3, §3.4)
    used_height: Height = Height(0)  # noqa: RUF009 - NewType call is free
