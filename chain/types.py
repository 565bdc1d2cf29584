"""NewTypes shared by every package: hashes, keys, heights, amounts (STYLE.md §3).

Owns: names and their wire constraints (see `chain.codec.NEWTYPE_CONSTRAINTS`). Must not: hold logic.
"""

from __future__ import annotations

from typing import Final, NewType

Hash32 = NewType("Hash32", bytes)  # BLAKE2b-256 output
BlockHash = NewType("BlockHash", bytes)
TxId = NewType("TxId", bytes)
UnitId = NewType("UnitId", bytes)  # id of a data or learning unit (H of its encoding)
BlobHash = NewType("BlobHash", bytes)
StateRoot = NewType("StateRoot", bytes)
PubKey = NewType("PubKey", bytes)  # Ed25519 public key, 32 bytes
Signature = NewType("Signature", bytes)  # Ed25519 signature, 64 bytes
AccountId = NewType("AccountId", bytes)  # H(pubkey)[:20]; shown to humans as a bech32m address
Height = NewType("Height", int)
Round = NewType("Round", int)
Amount = NewType("Amount", int)  # base units, 1 LC = 10**8
Nonce = NewType("Nonce", int)
TimestampMs = NewType("TimestampMs", int)
ChainId = NewType("ChainId", str)
Micro = NewType("Micro", int)  # signed fixed point, value * 10**6 (PROTOCOL §1.4)

HASH_LEN: Final = 32
PUBKEY_LEN: Final = 32
SIGNATURE_LEN: Final = 64
ACCOUNT_ID_LEN: Final = 20
COIN: Final = 10**8
MAX_AMOUNT: Final = 2**63 - 1  # PROTOCOL §1.3: anything above is overflow
U64_MAX: Final = 2**64 - 1
I64_MIN: Final = -(2**63)
I64_MAX: Final = 2**63 - 1

ZERO_HASH: Final = Hash32(b"\x00" * HASH_LEN)
ZERO_PUBKEY: Final = PubKey(b"\x00" * PUBKEY_LEN)
ZERO_SIGNATURE: Final = Signature(b"\x00" * SIGNATURE_LEN)
