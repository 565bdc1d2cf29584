"""chain.vrf: RFC 9381 ECVRF-EDWARDS25519-SHA512-TAI, pinned by the RFC's Appendix B.3 vectors.

The three vectors (RFC 9381 B.3, examples 16-18; SK/PK are RFC 8032 §7.1 tests 1-3) were
cross-checked in two independent public implementations' test suites before being copied here.
"""

from __future__ import annotations

import random

import nacl.bindings as sodium
import pytest

from chain import vrf
from chain.crypto import SecretKey

# (secret seed, public key, alpha, pi, beta), hex
RFC9381_B3 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "8657106690b5526245a92b003bb079ccd1a92130477671f6fc01ad16f26f723f"
        "26f8a57ccaed74ee1b190bed1f479d9727d2d0f9b005a6e456a35d4fb0daab12"
        "68a1b0db10836d9826a528ca76567805",
        "90cf1df3b703cce59e2a35b925d411164068269d7b2d29f3301c03dd757876ff"
        "66b71dda49d2de59d03450451af026798e8f81cd2e333de5cdf4f3e140fdd8ae",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "f3141cd382dc42909d19ec5110469e4feae18300e94f304590abdced48aed593"
        "3bf0864a62558b3ed7f2fea45c92a465301b3bbf5e3e54ddf2d935be3b67926d"
        "a3ef39226bbc355bdc9850112c8f4b02",
        "eb4440665d3891d668e7e0fcaf587f1b4bd7fbfe99d0eb2211ccec90496310eb"
        "5e33821bc613efb94db5e5b54c70a848a0bef4553a41befc57663b56373a5031",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "9bc0f79119cc5604bf02d23b4caede71393cedfbb191434dd016d30177ccbf80"
        "96bb474e53895c362d8628ee9f9ea3c0e52c7a5c691b6c18c9979866568add7a"
        "2d41b00b05081ed0f58ee5e31b3a970e",
        "645427e5d00c62a23fb703732fa5d892940935942101e456ecca7bb217c61c45"
        "2118fec1219202a0edcf038bb6373241578be7217ba85a2687f7a0310b2df19f",
    ),
]
VECTORS = [tuple(bytes.fromhex(f) for f in v) for v in RFC9381_B3]
SK0, PK0, ALPHA0, PI0, BETA0 = VECTORS[0]
Q = 2**252 + 27742317777372353535851937790883648493
P = 2**255 - 19


@pytest.mark.parametrize(("seed", "pk", "alpha", "pi", "beta"), VECTORS)
def test_rfc9381_b3_vectors(seed: bytes, pk: bytes, alpha: bytes, pi: bytes, beta: bytes) -> None:
    assert SecretKey(seed).pubkey == pk  # the VRF key is the validator's ed25519 key
    assert vrf.prove(seed, alpha) == pi
    assert vrf.verify(pk, alpha, pi) == beta
    assert vrf.proof_to_hash(pi) == beta


def test_every_single_bit_flip_of_a_proof_fails() -> None:
    for bit in range(vrf.PROOF_BYTES * 8):
        mutated = bytearray(PI0)
        mutated[bit // 8] ^= 1 << (bit % 8)
        assert vrf.verify(PK0, ALPHA0, bytes(mutated)) is None, bit


def test_wrong_key_and_wrong_alpha_fail() -> None:
    _, pk1, alpha1, pi1, _ = VECTORS[1]
    assert vrf.verify(pk1, ALPHA0, PI0) is None  # another valid key
    assert vrf.verify(PK0, alpha1, PI0) is None  # another alpha
    assert vrf.verify(PK0, b"\x00", PI0) is None
    assert vrf.verify(PK0, ALPHA0, pi1) is None  # another key's proof


def _with_s(pi: bytes, s: int) -> bytes:
    return pi[:48] + s.to_bytes(32, "little")


def test_non_canonical_scalars_and_points_fail() -> None:
    # s >= q: the same point as s - q, refused by decode_proof (RFC 9381 §5.4.4)
    s = int.from_bytes(PI0[48:], "little")
    assert s + Q < 2**256
    assert vrf.verify(PK0, ALPHA0, _with_s(PI0, s + Q)) is None
    assert vrf.proof_to_hash(_with_s(PI0, s + Q)) is None
    assert vrf.verify(PK0, ALPHA0, _with_s(PI0, Q)) is None
    # Gamma or the key encoded with y >= p (non-canonical) or x = 0 with the sign bit set
    non_canonical_identity = (1 + P).to_bytes(32, "little")
    signed_identity = (1 | (1 << 255)).to_bytes(32, "little")
    for bad in (non_canonical_identity, signed_identity, b"\xff" * 32, bytes(32)):
        assert vrf.verify(PK0, ALPHA0, bad + PI0[32:]) is None
        assert vrf.verify(bad, ALPHA0, PI0) is None
    # Gamma of small order (the identity, and the order-2 point (0, -1)) and the key 'identity'
    order_two = (P - 1).to_bytes(32, "little")
    for small in (b"\x01" + bytes(31), order_two):
        assert vrf.verify(PK0, ALPHA0, small + PI0[32:]) is None
        assert vrf.verify(small, ALPHA0, PI0) is None


def test_gamma_with_a_small_order_component_fails() -> None:
    """Gamma + T (T of order 2) is a curve point outside the prime-order subgroup: refused, so the
    accepted Gamma is unique (the RFC makes beta unique through the cofactor; we also pin Gamma)."""
    x, y = vrf._decode_point(PI0[:32]) or (0, 0)
    shifted = vrf._encode_point(((P - x) % P, (P - y) % P))  # (x, y) + (0, -1) = (-x, -y)
    assert vrf._decode_point(shifted) is not None
    assert vrf.verify(PK0, ALPHA0, shifted + PI0[32:]) is None
    assert vrf.proof_to_hash(shifted + PI0[32:]) == BETA0  # same cofactor multiple: same beta


def test_verify_never_raises_on_garbage() -> None:
    rng = random.Random(11)
    for n in range(600):
        pk = rng.randbytes(32) if n % 3 else PK0
        pi = rng.randbytes(rng.choice((0, 1, 79, 80, 80, 80, 81, 200)))
        if n % 5 == 0 and len(pi) == 80:
            pi = PI0[:32] + pi[32:]  # a valid Gamma with random (c, s)
        assert vrf.verify(pk, rng.randbytes(rng.randrange(40)), pi) is None
        vrf.proof_to_hash(pi)  # never raises either
    for s in (0, 1, Q - 1):
        assert vrf.verify(PK0, ALPHA0, PI0[:32] + bytes(16) + s.to_bytes(32, "little")) is None
    assert vrf.verify(PK0, ALPHA0, PI0[:32] + bytes(48)) is None  # c = 0 and s = 0
    assert vrf.verify(PK0[:31], ALPHA0, PI0) is None
    assert vrf.verify("nope", ALPHA0, PI0) is None  # type: ignore[arg-type]
    assert vrf.proof_to_hash(b"\x00" * 79) is None
    with pytest.raises(ValueError, match="32 bytes"):
        vrf.prove(b"short", b"")


def test_another_nonce_gives_another_valid_proof_with_the_same_beta() -> None:
    """The prover's only freedom in a proof is the nonce: (c, s) change, Gamma and beta do not."""
    x, _ = vrf._secret_scalar(SK0)
    h = vrf._encode_to_curve(PK0, ALPHA0)
    assert h is not None
    other = vrf._prove_with_nonce(x, h, ALPHA0, 123456789)
    assert other != PI0
    assert other[:32] == PI0[:32]
    assert vrf.verify(PK0, ALPHA0, other) == BETA0


def test_cofactor_multiplication_matches_libsodium() -> None:
    for label in range(8):
        point = SecretKey.from_label(f"vrf-cofactor-{label}").pubkey
        decoded = vrf._decode_point(point)
        assert decoded is not None
        assert vrf._times_cofactor(decoded) == sodium.crypto_scalarmult_ed25519_noclamp(
            (8).to_bytes(32, "little"), point
        )


def test_outputs_differ_per_key_and_alpha() -> None:
    keys = [SecretKey.from_label(f"vrf-{i}") for i in range(4)]
    betas = {vrf.verify(k.pubkey, a, vrf.prove(k.seed, a)) for k in keys for a in (b"a", b"b")}
    assert None not in betas
    assert len(betas) == 8
