"""RFC 9381 ECVRF-EDWARDS25519-SHA512-TAI (suite 0x03) over the validators' ed25519 keys.

Owns: `prove`, `verify`, `proof_to_hash`, `PROOF_BYTES`, `BETA_BYTES`. Must not: know headers,
seeds or chain rules (chain.consensus.election uses it), read keys from disk, or raise on bad input
in `verify` / `proof_to_hash` (they answer None).

A VRF output `beta` is a hash that only the holder of the secret key can compute and anyone can
check: `verify(pk, alpha, pi)` returns the same `beta` for every valid proof `pi`, because `beta`
depends only on Gamma = x * H(pk, alpha) (times the cofactor), so the key holder cannot choose among
outputs (uniqueness). Point arithmetic runs in libsodium (PyNaCl's `crypto_scalarmult_ed25519_*`,
`crypto_core_ed25519_add/sub`), which only takes points of the prime-order subgroup; decoding an
arbitrary 32-byte string as an RFC 8032 point and multiplying it by the cofactor (try-and-increment
hashing to the curve) is done here with a few lines of field arithmetic.

Stricter than RFC 9381 verify, on purpose (consensus wants exactly one accepted form): the public
key and Gamma must be canonical encodings of points of the prime-order subgroup that are not the
identity (an honest prover's always are: Y = x*B and Gamma = x*H with H cofactor-cleared). The RFC
would also accept a Gamma with a small-order component when the challenge happens to absorb it;
refusing it makes Gamma, not only beta, unique for (pk, alpha). Pinned by the RFC 9381 Appendix B.3
vectors in tests/unit/test_vrf.py.
"""

from __future__ import annotations

import hashlib
from typing import Final

import nacl.bindings as sodium
import nacl.exceptions

PROOF_BYTES: Final = 80  # Gamma (32) || c (16) || s (32)
BETA_BYTES: Final = 64

SUITE: Final = b"\x03"
_P: Final = 2**255 - 19
_Q: Final = 2**252 + 27742317777372353535851937790883648493  # order of the prime subgroup
_D: Final = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1: Final = pow(2, (_P - 1) // 4, _P)
_C_LEN: Final = 16
_IDENTITY: Final = b"\x01" + b"\x00" * 31

_Affine = tuple[int, int]


def _decode_point(data: bytes) -> _Affine | None:
    """RFC 8032 §5.1.3 decoding: any curve point (small-order components allowed), or None.

    Fails for y >= p (non-canonical), for x = 0 with the sign bit set, and for y with no x."""
    if len(data) != 32:
        return None
    n = int.from_bytes(data, "little")
    sign, y = n >> 255, n & ((1 << 255) - 1)
    if y >= _P:
        return None
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if (v * x * x - u) % _P != 0:
        if (v * x * x + u) % _P != 0:
            return None
        x = x * _SQRT_M1 % _P
    if x == 0 and sign == 1:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


def _encode_point(pt: _Affine) -> bytes:
    x, y = pt
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _times_cofactor(pt: _Affine) -> bytes:
    """8 * pt, encoded: three projective doublings (a = -1, dbl-2008-bbjlp; complete on ed25519)
    and one inversion. The result lies in the prime-order subgroup (or is the identity)."""
    x, y, z = pt[0], pt[1], 1
    for _ in range(3):
        b, c, d = (x + y) ** 2 % _P, x * x % _P, y * y % _P
        f = (d - c) % _P
        j = (f - 2 * z * z) % _P
        x, y, z = (b - c - d) * j % _P, f * (-c - d) % _P, f * j % _P
    inv = pow(z, _P - 2, _P)
    return _encode_point((x * inv % _P, y * inv % _P))


def _scalar(n: int) -> bytes:
    return (n % _Q).to_bytes(32, "little")


def _mul(n: int, point: bytes) -> bytes:
    """n * point for a prime-order-subgroup point; the identity's encoding for n = 0 mod q."""
    if n % _Q == 0:
        return _IDENTITY
    return sodium.crypto_scalarmult_ed25519_noclamp(_scalar(n), point)


def _mul_base(n: int) -> bytes:
    if n % _Q == 0:
        return _IDENTITY
    return sodium.crypto_scalarmult_ed25519_base_noclamp(_scalar(n))


def _sha512(*parts: bytes) -> bytes:
    h = hashlib.sha512()
    for part in parts:
        h.update(part)
    return h.digest()


def _encode_to_curve(pk: bytes, alpha: bytes) -> bytes | None:
    """RFC 9381 §5.4.1.1 try-and-increment: the first ctr whose hash decodes to a point whose
    cofactor multiple is not the identity (about two tries on average); None after 256 tries."""
    for ctr in range(256):
        candidate = _decode_point(_sha512(SUITE, b"\x01", pk, alpha, bytes([ctr]), b"\x00")[:32])
        if candidate is None:
            continue
        h = _times_cofactor(candidate)
        if h != _IDENTITY:
            return h
    return None  # pragma: no cover - probability 2^-256


def _challenge(*points: bytes) -> int:
    """RFC 9381 §5.4.3 with the five points (Y, H, Gamma, U, V): the first 16 bytes, little-endian."""
    return int.from_bytes(_sha512(SUITE, b"\x02", *points, b"\x00")[:_C_LEN], "little")


def _secret_scalar(seed: bytes) -> tuple[int, bytes]:
    """RFC 8032 §5.1.5: the clamped scalar x and the nonce prefix, from the 32-byte ed25519 seed."""
    digest = _sha512(seed)
    x = int.from_bytes(digest[:32], "little")
    x &= (1 << 254) - 8
    x |= 1 << 254
    return x, digest[32:]


def prove(seed: bytes, alpha: bytes) -> bytes:
    """The 80-byte proof of `alpha` under the ed25519 key with this 32-byte seed (RFC 9381 §5.1).

    Deterministic (the nonce is RFC 8032-style, §5.4.2.2). Raises ValueError for a bad seed length."""
    if len(seed) != 32:
        raise ValueError("an ed25519 seed is 32 bytes")
    x, prefix = _secret_scalar(seed)
    h = _hash_point(_mul_base(x), alpha)
    nonce = int.from_bytes(_sha512(prefix, h), "little") % _Q
    return _prove_with_nonce(x, h, alpha, nonce)


def _hash_point(pk: bytes, alpha: bytes) -> bytes:
    h = _encode_to_curve(pk, alpha)
    if h is None:  # pragma: no cover - probability 2^-256
        raise ValueError("alpha does not hash to the curve")
    return h


def _prove_with_nonce(x: int, h: bytes, alpha: bytes, nonce: int) -> bytes:
    """A valid proof with an arbitrary nonce: what a prover may vary. Only (c, s) change; Gamma,
    and therefore beta, stay the same (the uniqueness tests use this)."""
    pk = _mul_base(x)
    gamma = _mul(x, h)
    c = _challenge(pk, h, gamma, _mul_base(nonce), _mul(nonce, h))
    s = (nonce + c * x) % _Q
    return gamma + c.to_bytes(_C_LEN, "little") + s.to_bytes(32, "little")


def _subgroup_point(data: bytes) -> bool:
    """Canonical, on the curve, in the prime-order subgroup, not of small order (libsodium's check)."""
    return len(data) == 32 and bool(sodium.crypto_core_ed25519_is_valid_point(data))


def proof_to_hash(proof: bytes) -> bytes | None:
    """beta = SHA-512(suite || 0x03 || 8 * Gamma || 0x00) (RFC 9381 §5.2), or None for a proof that
    does not decode (wrong length, Gamma not a point, s >= q). Does not verify the proof."""
    if not isinstance(proof, bytes) or len(proof) != PROOF_BYTES:
        return None
    gamma = _decode_point(proof[:32])
    if gamma is None or int.from_bytes(proof[48:], "little") >= _Q:
        return None
    return _sha512(SUITE, b"\x03", _times_cofactor(gamma), b"\x00")


def verify(pk: bytes, alpha: bytes, proof: bytes) -> bytes | None:
    """beta if `proof` is valid for `alpha` under the ed25519 public key `pk`, else None (§5.3).

    Never raises on malformed input."""
    if not all(isinstance(part, bytes) for part in (pk, alpha, proof)):
        return None  # untyped callers (decoded garbage) get an answer, not an exception
    if len(proof) != PROOF_BYTES or not _subgroup_point(pk) or not _subgroup_point(proof[:32]):
        return None
    gamma = proof[:32]
    c = int.from_bytes(proof[32:48], "little")
    s = int.from_bytes(proof[48:], "little")
    if s >= _Q:
        return None
    h = _encode_to_curve(pk, alpha)
    if h is None:  # pragma: no cover - probability 2^-256
        return None
    try:
        u = sodium.crypto_core_ed25519_sub(_mul_base(s), _mul(c, pk))
        v = sodium.crypto_core_ed25519_sub(_mul(s, h), _mul(c, gamma))
    except nacl.exceptions.CryptoError:  # pragma: no cover - inputs are checked subgroup points
        return None
    if _challenge(pk, h, gamma, u, v) != c:
        return None
    return proof_to_hash(proof)
