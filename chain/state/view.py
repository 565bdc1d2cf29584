"""State views over a key/value space: the `StateReader` implementation, an in-memory state, and the
write-recording `StateOverlay` the transition runs on (PROTOCOL §3.5).

Owns: decoding records from the key layout of `chain.state.keys`, `eligible_stake`, merged prefix
iteration, and collecting writes, rewards and fees. Must not: decide validity (the transition does) or
touch LevelDB (the store subclasses `StateView` for that).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from chain.codec import encode, from_plain, unpack
from chain.errors import ErrorCode, LinguaChainError
from chain.params import ChainParams
from chain.state import keys
from chain.state.model import (
    EMPTY_ACCOUNT,
    GENESIS_CHECKPOINT,
    GENESIS_MODEL,
    Account,
    Checkpoint,
    ModelVersion,
    RewardRecord,
    StakeRecord,
    UnitRecord,
    ValidatorRecord,
    ValidatorSet,
)
from chain.state.root import StateHasher
from chain.types import AccountId, Amount, Hash32, Height, PubKey, StateRoot, UnitId

T = TypeVar("T")


class CorruptStateError(LinguaChainError):
    """Raised when a stored state value does not decode as its record type (a bug or disk damage)."""


def load(cls: type[T], raw: bytes) -> T:
    """Decode a trusted state value (written by us, so no canonical re-encode check)."""
    plain = unpack(raw, max_bytes=len(raw))
    obj = plain if isinstance(plain, ErrorCode) else from_plain(cls, plain)
    if isinstance(obj, ErrorCode):
        raise CorruptStateError(f"state value is not a valid {cls.__name__}: {obj.name}")
    return obj


class StateView(abc.ABC):
    """`StateReader` on top of `get`/`items`; subclasses provide storage and the root."""

    def __init__(self, params: ChainParams, height: Height) -> None:
        self._params = params
        self._height = height

    # -- storage (subclasses) -------------------------------------------------------------------
    @abc.abstractmethod
    def get(self, key: bytes) -> bytes | None: ...

    @abc.abstractmethod
    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs whose key starts with `prefix`, in key order."""

    @abc.abstractmethod
    def root_after(self, writes: Mapping[bytes, bytes | None]) -> StateRoot:
        """`state_root` of this state with `writes` applied."""

    @property
    def state_root(self) -> StateRoot:
        return self.root_after({})

    # -- StateReader ----------------------------------------------------------------------------
    @property
    def params(self) -> ChainParams:
        return self._params

    @property
    def height(self) -> Height:
        """Height of the last block applied to this state."""
        return self._height

    def _record(self, cls: type[T], key: bytes) -> T | None:
        raw = self.get(key)
        return None if raw is None else load(cls, raw)

    def account(self, account: AccountId) -> Account:
        return self._record(Account, keys.account_key(account)) or EMPTY_ACCOUNT

    def stake(self, owner: AccountId, validator: PubKey) -> StakeRecord | None:
        return self._record(StakeRecord, keys.stake_key(owner, validator))

    def stakes_of(self, validator: PubKey) -> list[StakeRecord]:
        """Every stake record bound to `validator`, ordered by owner."""
        return [load(StakeRecord, v) for _, v in self.items(keys.stakes_of(validator))]

    def validator(self, pubkey: PubKey) -> ValidatorRecord | None:
        return self._record(ValidatorRecord, keys.validator_key(pubkey))

    def validators(self) -> list[ValidatorRecord]:
        """Every validator record, ordered by public key."""
        return [load(ValidatorRecord, v) for _, v in self.items(keys.VALIDATOR)]

    def eligible_stake(self, pubkey: PubKey, at_height: Height) -> Amount:
        """Mature bonded stake of `pubkey` for electing the block at `at_height` (PROTOCOL §4.3).

        0 if the validator is unknown, jailed at `at_height`, or its mature stake is below
        `min_stake`. A stake record counts once `at_height >= mature_height`.
        """
        record = self.validator(pubkey)
        if record is None or at_height < record.jailed_until:
            return Amount(0)
        total = sum(s.amount for s in self.stakes_of(pubkey) if s.mature_height <= at_height)
        return Amount(total) if total >= self._params.min_stake else Amount(0)

    def slashable_stake(self, pubkey: PubKey) -> Amount:
        """Bonded plus unbonding (not yet released) stake bound to `pubkey`, mature or not."""
        return Amount(sum(s.amount + sum(e.amount for e in s.unbonding) for s in self.stakes_of(pubkey)))

    def model_version(self) -> ModelVersion:
        return self._record(ModelVersion, keys.MODEL) or GENESIS_MODEL

    def evidence_seen(self, key: Hash32) -> bool:
        return self.get(keys.evidence_key(key)) is not None

    def justified(self) -> Checkpoint:
        return self._record(Checkpoint, keys.JUSTIFIED) or GENESIS_CHECKPOINT

    def validator_set(self, which: bytes) -> ValidatorSet | None:
        """The active, final or pending validator set (keys.ACTIVE_SET, FINAL_SET, PENDING_SET)."""
        return self._record(ValidatorSet, which)

    def unit(self, unit_id: UnitId) -> UnitRecord | None:
        """The registered data or learning unit `unit_id`, if its tx is in the chain."""
        return self._record(UnitRecord, keys.unit_key(unit_id))


class MemoryState(StateView):
    """A whole state in a dict (genesis building and tests)."""

    def __init__(
        self, params: ChainParams, height: Height, data: Mapping[bytes, bytes] | None = None
    ) -> None:
        super().__init__(params, height)
        self.data: dict[bytes, bytes] = dict(data or {})
        self._hasher = StateHasher(self.data.items())

    def copy(self) -> MemoryState:
        """An independent copy (the cached hashes are shared copy-on-write, not recomputed)."""
        out = MemoryState.__new__(MemoryState)
        StateView.__init__(out, self._params, self._height)
        out.data = dict(self.data)
        out._hasher = self._hasher.copy()
        return out

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(k for k in self.data if k.startswith(prefix)):
            yield key, self.data[key]

    def root_after(self, writes: Mapping[bytes, bytes | None]) -> StateRoot:
        return self._hasher.root_after(writes)

    def apply(self, writes: Mapping[bytes, bytes | None], height: Height) -> StateRoot:
        """Apply writes (or an undo record) in place and move to `height`."""
        for key, value in writes.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value
        self._height = height
        return self._hasher.apply(writes)


class StateOverlay(StateView):
    """Records writes, reward records and fees over a base view, which it never modifies."""

    def __init__(self, base: StateView) -> None:
        super().__init__(base.params, base.height)
        self.base = base
        self.writes: dict[bytes, bytes | None] = {}
        self.rewards: list[RewardRecord] = []
        self.fees = 0  # fees collected in this overlay, paid to the proposer at the end of a TX block

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self.base.get(key)

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        mine = sorted(k for k in self.writes if k.startswith(prefix))
        i = 0
        for key, value in self.base.items(prefix):
            while i < len(mine) and mine[i] < key:
                new = self.writes[mine[i]]
                if new is not None:
                    yield mine[i], new
                i += 1
            if i < len(mine) and mine[i] == key:
                new = self.writes[key]
                if new is not None:
                    yield key, new
                i += 1
            else:
                yield key, value
        for k in mine[i:]:
            new = self.writes[k]
            if new is not None:
                yield k, new

    def root_after(self, writes: Mapping[bytes, bytes | None]) -> StateRoot:
        return self.base.root_after({**self.writes, **writes})

    def undo(self) -> dict[bytes, bytes | None]:
        """The base's values of every written key (None: absent), i.e. what rolls the writes back."""
        return {key: self.base.get(key) for key in self.writes}

    def child(self) -> StateOverlay:
        """An overlay on this one; `merge` it on success or drop it to discard (atomic tx)."""
        return StateOverlay(self)

    def merge(self, child: StateOverlay) -> None:
        assert child.base is self
        self.writes.update(child.writes)
        self.rewards.extend(child.rewards)
        self.fees += child.fees

    # -- typed writes ---------------------------------------------------------------------------
    def put(self, key: bytes, value: Any | None) -> None:
        """Write a record (encoded with the codec), raw bytes, or None to delete."""
        if value is None or isinstance(value, bytes):
            self.writes[key] = value
        else:
            self.writes[key] = encode(value)

    def set_account(self, account: AccountId, value: Account) -> None:
        self.put(keys.account_key(account), None if value == EMPTY_ACCOUNT else value)

    def set_stake(self, owner: AccountId, validator: PubKey, value: StakeRecord | None) -> None:
        if value is not None and value.amount == 0 and not value.unbonding:
            value = None
        self.put(keys.stake_key(owner, validator), value)

    def set_validator(self, value: ValidatorRecord) -> None:
        self.put(keys.validator_key(value.pubkey), value)

    def set_model(self, value: ModelVersion) -> None:
        self.put(keys.MODEL, value)

    def set_unit(self, unit_id: UnitId, value: UnitRecord) -> None:
        self.put(keys.unit_key(unit_id), value)

    def set_validator_set(self, which: bytes, value: ValidatorSet | None) -> None:
        self.put(which, value)

    def mark_evidence(self, key: Hash32) -> None:
        self.put(keys.evidence_key(key), keys.MARKER)
