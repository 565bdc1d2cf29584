"""Transactions (PROTOCOL §3.1): every kind as a frozen type, one `Tx` envelope.

Owns: `TxKind`, the payload types, `Tx` with its id, signing and a builder. Must not: check state
(chain.state.transition does) or policy (mempool does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Annotated, Any, Final

from chain.codec import U8, ByteLen, encode, variant
from chain.crypto import DOMAIN_TX, SecretKey, account_id
from chain.evidence import Evidence
from chain.hashing import H
from chain.signed import sign_object, verify_object
from chain.types import (
    ZERO_SIGNATURE,
    AccountId,
    Amount,
    ChainId,
    Nonce,
    PubKey,
    Signature,
    TxId,
)
from chain.units import DataUnit, LearningUnit

TX_VERSION: Final = 1
MAX_MEMO: Final = 256


class TxKind(IntEnum):
    TRANSFER = 1
    STAKE = 2
    UNSTAKE = 3
    SLASH_EVIDENCE = 4
    DATA_UNIT = 5
    LEARNING_UNIT = 6


@dataclass(frozen=True, slots=True)
class Transfer:
    to: AccountId  # the 20-byte account behind a bech32m address
    amount: Amount
    memo: Annotated[bytes, ByteLen(0, MAX_MEMO)] = b""


@dataclass(frozen=True, slots=True)
class Stake:
    """Lock `amount` of the sender's coins as stake bound to a (hot) validator key."""

    validator: PubKey
    amount: Amount


@dataclass(frozen=True, slots=True)
class Unstake:
    """Start unbonding `amount` of the sender's stake on `validator`."""

    validator: PubKey
    amount: Amount


@dataclass(frozen=True, slots=True)
class SlashEvidence:
    evidence: Evidence


Payload = Transfer | Stake | Unstake | SlashEvidence | DataUnit | LearningUnit

PAYLOAD_TYPES: Final[dict[TxKind, type[Any]]] = {
    TxKind.TRANSFER: Transfer,
    TxKind.STAKE: Stake,
    TxKind.UNSTAKE: Unstake,
    TxKind.SLASH_EVIDENCE: SlashEvidence,
    TxKind.DATA_UNIT: DataUnit,
    TxKind.LEARNING_UNIT: LearningUnit,
}
KIND_OF_PAYLOAD: Final[dict[type[Any], TxKind]] = {v: k for k, v in PAYLOAD_TYPES.items()}


def _payload_type(values: Any) -> type[Any] | None:
    return PAYLOAD_TYPES.get(values["kind"])


@dataclass(frozen=True, slots=True)
class Tx:
    version: U8
    chain_id: ChainId
    kind: TxKind
    sender: PubKey
    nonce: Nonce
    fee: Amount
    payload: Payload = field(metadata=variant(_payload_type))
    signature: Signature = ZERO_SIGNATURE

    def __post_init__(self) -> None:
        if type(self.payload) is not PAYLOAD_TYPES[self.kind]:
            raise TypeError(f"a {self.kind.name} tx needs a {PAYLOAD_TYPES[self.kind].__name__} payload")

    @property
    def id(self) -> TxId:
        return TxId(H(encode(self)))

    @property
    def sender_account(self) -> AccountId:
        return account_id(self.sender)

    def signed(self, key: SecretKey) -> Tx:
        if key.pubkey != self.sender:
            raise ValueError("tx signed with a key that is not its sender's")
        return sign_object(self, key, DOMAIN_TX)

    def signature_valid(self) -> bool:
        return verify_object(self, self.sender, DOMAIN_TX)


def make_tx(key: SecretKey, chain_id: ChainId, nonce: int, fee: int, payload: Payload) -> Tx:
    """Build and sign a tx whose kind follows from its payload."""
    tx = Tx(
        version=TX_VERSION,
        chain_id=chain_id,
        kind=KIND_OF_PAYLOAD[type(payload)],
        sender=key.pubkey,
        nonce=Nonce(nonce),
        fee=Amount(fee),
        payload=payload,
    )
    return tx.signed(key)
