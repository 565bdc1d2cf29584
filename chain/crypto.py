"""Ed25519 keys and domain-separated signatures (PROTOCOL §1.2), on PyNaCl.

Owns: `SecretKey`, `verify`, domain tags, the signing preimage. Must not: store keys on disk (the
daemon's key files and the CLI keystore do that).

A signature covers H(domain_tag || len(chain_id) || chain_id || encoding_without_signature). The
one-byte length prefix keeps the chain id from running into the encoding.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

import nacl.bindings
import nacl.exceptions
import nacl.signing

from chain.hashing import H, H_many
from chain.types import AccountId, ChainId, PubKey, Signature

DOMAIN_TX: Final = b"LC/tx/1"
DOMAIN_HEADER: Final = b"LC/header/1"
DOMAIN_ATTEST: Final = b"LC/attest/1"
DOMAIN_UNIT: Final = b"LC/unit/1"
DOMAIN_VDF: Final = b"LC/vdf/1"


def signing_digest(domain: bytes, chain_id: ChainId, unsigned_encoding: bytes) -> bytes:
    cid = chain_id.encode()
    return H_many(domain, len(cid).to_bytes(1, "big"), cid, unsigned_encoding)


class SecretKey:
    """An Ed25519 signing key. `repr` never shows the secret."""

    __slots__ = ("_key", "pubkey")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._key = nacl.signing.SigningKey(seed)
        self.pubkey = PubKey(bytes(self._key.verify_key))

    @classmethod
    def generate(cls) -> SecretKey:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @classmethod
    def from_label(cls, label: str) -> SecretKey:
        """A deterministic key for tests, vectors and devnet dev accounts. Never for real funds."""
        return cls(H(b"LC/dev-key/1" + label.encode()))

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    def sign(self, domain: bytes, chain_id: ChainId, unsigned_encoding: bytes) -> Signature:
        digest = signing_digest(domain, chain_id, unsigned_encoding)
        return Signature(self._key.sign(digest).signature)

    def __repr__(self) -> str:
        return f"SecretKey(pubkey={self.pubkey.hex()[:16]}...)"


@lru_cache(maxsize=65536)
def _verify_key(pubkey: bytes) -> nacl.signing.VerifyKey | None:
    try:
        return nacl.signing.VerifyKey(pubkey)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return None


def verify(
    pubkey: PubKey, signature: Signature, domain: bytes, chain_id: ChainId, unsigned_encoding: bytes
) -> bool:
    """True if `signature` by `pubkey` covers this domain, chain and encoding. Never raises."""
    if not isinstance(pubkey, bytes) or len(pubkey) != 32 or len(signature) != 64:
        return False
    key = _verify_key(bytes(pubkey))
    if key is None:
        return False
    try:
        key.verify(signing_digest(domain, chain_id, unsigned_encoding), bytes(signature))
    # OverflowError: a chain id over 255 bytes has no length byte, so nothing can have signed it
    except (nacl.exceptions.CryptoError, ValueError, TypeError, OverflowError):
        return False
    return True


def is_valid_pubkey(pubkey: bytes) -> bool:
    """True if `pubkey` is a canonical Ed25519 point outside the small-order subgroup: a key that
    can produce valid signatures (config loaders reject the others up front). Never raises."""
    if not isinstance(pubkey, bytes) or len(pubkey) != 32:
        return False
    return bool(nacl.bindings.crypto_core_ed25519_is_valid_point(pubkey))


def account_id(pubkey: PubKey) -> AccountId:
    """The account of a public key: H(pubkey)[:20] (PROTOCOL §1.2)."""
    return AccountId(H(pubkey)[:20])
