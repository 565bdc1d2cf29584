"""Signing and proof-of-work helpers shared by every signed or mined object (PROTOCOL §1.2, §4.6).

Owns: the unsigned encoding (all fields but the last, `signature`), the PoW preimage and nonce
search. Must not: know concrete object types beyond "signature is the last field" and "pow_nonce is
the field at a given index".
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from chain.codec import encode_fields
from chain.crypto import SecretKey, verify
from chain.hashing import H_many, leading_zero_bits
from chain.types import ChainId, PubKey, Signature

T = TypeVar("T")


def unsigned_bytes(obj: Any) -> bytes:
    """Encoding of every field but the final `signature`: what a signature covers."""
    n = len(dataclasses.fields(obj))
    return encode_fields(obj, n - 1)


def sign_object(obj: T, key: SecretKey, domain: bytes) -> T:
    chain_id: ChainId = getattr(obj, "chain_id")  # noqa: B009 - every signed object has one
    sig = key.sign(domain, chain_id, unsigned_bytes(obj))
    return dataclasses.replace(obj, signature=sig)  # type: ignore[type-var]


def verify_object(obj: Any, pubkey: PubKey, domain: bytes) -> bool:
    signature: Signature = obj.signature
    return verify(pubkey, signature, domain, obj.chain_id, unsigned_bytes(obj))


def pow_digest(preimage: bytes, nonce: int) -> bytes:
    return H_many(b"LC/pow/1", preimage, nonce.to_bytes(8, "big"))


def pow_ok(preimage: bytes, nonce: int, bits: int) -> bool:
    """True if H(preimage || nonce) has at least `bits` leading zero bits (PROTOCOL §4.6)."""
    return bits <= 0 or leading_zero_bits(pow_digest(preimage, nonce)) >= bits


def solve_pow(preimage: bytes, bits: int, start: int = 0) -> int:
    """The first nonce >= start that satisfies `bits` (expected 2**bits hashes)."""
    nonce = start
    while not pow_ok(preimage, nonce, bits):
        nonce += 1
    return nonce
