"""The key layout of the state key/value space (PROTOCOL §3.5).

Owns: one-byte prefixes and key builders for every state record, and the value codecs for them.
Must not: read or write storage (views and the store do) or hold rules (the transition does).

Every key below is part of `state_root`. Values are the canonical codec encodings of the frozen
records of `chain.state.model`.

    b"a" + account(20)                      -> Account
    b"s" + validator(32) + owner(20)        -> StakeRecord   (validator first: pro-rata payouts
                                                               and slashing scan one prefix)
    b"v" + validator(32)                    -> ValidatorRecord
    b"m"                                    -> ModelVersion
    b"e" + evidence key(32)                 -> b"\\x01" (evidence accepted once, §5.3)
    b"u" + unit id(32)                      -> UnitRecord
    b"r" + release height(8, BE) + validator(32) + owner(20) -> b"\\x01"
                                               (unbonding release index, scanned in key order)
    b"xa" / b"xf" / b"xp"                   -> ValidatorSet: active, final, pending (§4.4,
                                               chain.state.epochs)
    b"xj"                                   -> Checkpoint: the highest block the chain proves
                                               justified (absent: the genesis)
    b"lh" / b"lv" / b"ld"                   -> version history, version index, DATA test sets
                                               (chain.state.learning)
"""

from __future__ import annotations

from typing import Final

from chain.types import AccountId, Hash32, Height, PubKey, UnitId

ACCOUNT: Final = b"a"
STAKE: Final = b"s"
VALIDATOR: Final = b"v"
MODEL: Final = b"m"
EVIDENCE: Final = b"e"
UNIT: Final = b"u"
RELEASE: Final = b"r"
MARKER: Final = b"\x01"
ACTIVE_SET: Final = b"xa"
FINAL_SET: Final = b"xf"
PENDING_SET: Final = b"xp"
JUSTIFIED: Final = b"xj"


def account_key(account: AccountId) -> bytes:
    return ACCOUNT + account


def stake_key(owner: AccountId, validator: PubKey) -> bytes:
    return STAKE + validator + owner


def stakes_of(validator: PubKey) -> bytes:
    """Prefix of every stake record bound to `validator`."""
    return STAKE + validator


def validator_key(pubkey: PubKey) -> bytes:
    return VALIDATOR + pubkey


def evidence_key(key: Hash32) -> bytes:
    return EVIDENCE + key


def unit_key(unit_id: UnitId) -> bytes:
    return UNIT + unit_id


def release_key(height: Height, validator: PubKey, owner: AccountId) -> bytes:
    return RELEASE + height.to_bytes(8, "big") + validator + owner


def parse_release_key(key: bytes) -> tuple[Height, PubKey, AccountId]:
    return Height(int.from_bytes(key[1:9], "big")), PubKey(key[9:41]), AccountId(key[41:61])
