"""vdf.core: discriminant, in-process prove, cached verify (PROTOCOL §4.2)."""

from __future__ import annotations

import random

import chiavdf
import pytest

import vdf
from chain.hashing import H
from vdf.core import FORM_SIZE, VdfError, cache_info, clear_caches

BITS = 128
ITERS = 2_000
CHALLENGE = H(b"test challenge")


@pytest.fixture(scope="module")
def proof() -> tuple[bytes, bytes]:
    return vdf.prove(CHALLENGE, BITS, ITERS)


def test_prove_returns_forms_of_fixed_size(proof: tuple[bytes, bytes]) -> None:
    y, pi = proof
    assert len(y) == FORM_SIZE
    assert len(pi) == FORM_SIZE


def test_prove_is_deterministic(proof: tuple[bytes, bytes]) -> None:
    assert vdf.prove(CHALLENGE, BITS, ITERS) == proof


def test_verify_good(proof: tuple[bytes, bytes]) -> None:
    assert vdf.verify(CHALLENGE, BITS, ITERS, *proof)


@pytest.mark.parametrize("bits", [256, 1024])
def test_verify_good_at_larger_sizes(bits: int) -> None:
    y, pi = vdf.prove(CHALLENGE, bits, 500)
    assert vdf.verify(CHALLENGE, bits, 500, y, pi)
    assert not vdf.verify(CHALLENGE, BITS, 500, y, pi)  # same challenge, other discriminant size


@pytest.mark.parametrize("iterations", [ITERS - 1, ITERS + 1, 2 * ITERS, 1])
def test_verify_wrong_iterations(proof: tuple[bytes, bytes], iterations: int) -> None:
    assert not vdf.verify(CHALLENGE, BITS, iterations, *proof)


def test_verify_wrong_challenge(proof: tuple[bytes, bytes]) -> None:
    for other in (
        H(b"another challenge"),
        bytes([CHALLENGE[0] ^ 1]) + CHALLENGE[1:],
        CHALLENGE + b"\x00",
        b"",
    ):
        assert not vdf.verify(other, BITS, ITERS, *proof)


def test_challenges_close_as_integers_can_share_a_discriminant() -> None:
    """chiavdf searches primes from the seed read as an integer, so a seed and seed+small often give
    the same discriminant (and the same y). Harmless for us because challenges are hashes (§4.2):
    nobody can aim a hash within a few hundred of another. Pinned so a chiavdf change is noticed."""
    near = [CHALLENGE[:-1] + bytes([CHALLENGE[-1] ^ (1 << b)]) for b in range(8)]
    assert any(vdf.discriminant(c, BITS) == vdf.discriminant(CHALLENGE, BITS) for c in near)


def test_verify_swapped_output_and_proof(proof: tuple[bytes, bytes]) -> None:
    y, pi = proof
    assert not vdf.verify(CHALLENGE, BITS, ITERS, pi, y)


@pytest.mark.parametrize(
    "bad",
    [b"", b"\x00", b"\x00" * FORM_SIZE, b"\xff" * FORM_SIZE, b"\x01" * (FORM_SIZE + 1), b"\x08" * 2048],
)
def test_verify_garbage_bytes_is_false_not_an_exception(proof: tuple[bytes, bytes], bad: bytes) -> None:
    y, pi = proof
    assert not vdf.verify(CHALLENGE, BITS, ITERS, bad, pi)
    assert not vdf.verify(CHALLENGE, BITS, ITERS, y, bad)
    assert not vdf.verify(CHALLENGE, BITS, ITERS, bad, bad)


def test_verify_random_and_bit_flipped_forms_never_raise(
    proof: tuple[bytes, bytes], rng: random.Random
) -> None:
    """chiavdf raises RuntimeError on most of these; verify must turn every one into False."""
    y, pi = proof
    for i in range(300):
        yy, pp = bytearray(y), bytearray(pi)
        target = yy if i % 2 else pp
        target[i % FORM_SIZE] ^= 1 << (i % 8)
        assert not vdf.verify(CHALLENGE, BITS, ITERS, bytes(yy), bytes(pp))
        assert not vdf.verify(CHALLENGE, BITS, ITERS, rng.randbytes(FORM_SIZE), pi)


@pytest.mark.parametrize(
    ("bits", "iterations"),
    [(0, ITERS), (127, ITERS), (2048, ITERS), (BITS, 0), (BITS, -1), (BITS, 2**64), (True, ITERS)],
)
def test_verify_bad_parameters_is_false(proof: tuple[bytes, bytes], bits: int, iterations: int) -> None:
    assert not vdf.verify(CHALLENGE, bits, iterations, *proof)


def test_verify_wrong_types_is_false(proof: tuple[bytes, bytes]) -> None:
    y, pi = proof
    assert not vdf.verify("not bytes", BITS, ITERS, y, pi)  # type: ignore[arg-type]
    assert not vdf.verify(CHALLENGE, BITS, ITERS, y.hex(), pi)  # type: ignore[arg-type]
    assert not vdf.verify(CHALLENGE, BITS, "2000", y, pi)  # type: ignore[arg-type]
    assert not vdf.verify(CHALLENGE, BITS, ITERS, None, pi)  # type: ignore[arg-type]


def test_verify_accepts_bytes_like(proof: tuple[bytes, bytes]) -> None:
    y, pi = proof
    assert vdf.verify(bytearray(CHALLENGE), BITS, ITERS, memoryview(y), bytearray(pi))  # type: ignore[arg-type]


def test_verify_rejects_non_canonical_output() -> None:
    """chiavdf issue #334: verify_wesolowski accepts other encodings of y (last byte of a form with
    g > 1); leader ranks hash y, so only the canonical encoding may pass (see vdf.core)."""
    bits, iters = 1024, 200
    for n in range(64):
        challenge = H(b"malleable" + bytes([n]))
        y, pi = vdf.prove(challenge, bits, iters)
        disc = vdf.discriminant(challenge, bits)
        for v in range(256):
            if v == y[-1]:
                continue
            alt = y[:-1] + bytes([v])
            try:
                accepted_by_chiavdf = chiavdf.verify_wesolowski(disc, vdf.GENERATOR, alt, pi, iters)
            except RuntimeError:
                accepted_by_chiavdf = False
            if accepted_by_chiavdf:
                assert not vdf.verify(challenge, bits, iters, alt, pi)
                assert vdf.verify(challenge, bits, iters, y, pi)
                return
    pytest.fail("found no malleable output in 64 challenges (expected about 1 in 2)")


def test_verify_is_cached(proof: tuple[bytes, bytes]) -> None:
    clear_caches()
    assert vdf.verify(CHALLENGE, BITS, ITERS, *proof)
    hits, misses = cache_info()
    assert vdf.verify(CHALLENGE, BITS, ITERS, *proof)
    assert cache_info() == (hits + 1, misses)


def test_discriminant_matches_chiavdf_and_depends_on_challenge() -> None:
    d = vdf.discriminant(CHALLENGE, BITS)
    assert d == chiavdf.create_discriminant(CHALLENGE, BITS)
    assert int(d, 16) < 0
    assert d != vdf.discriminant(H(b"other"), BITS)


@pytest.mark.parametrize(("bits", "iterations"), [(100, 10), (2048, 10), (BITS, 0), (BITS, 2**64)])
def test_prove_refuses_bad_parameters(bits: int, iterations: int) -> None:
    with pytest.raises(VdfError):
        vdf.prove(CHALLENGE, bits, iterations)


@pytest.mark.parametrize("bits", [0, 100, 2048])
def test_discriminant_refuses_bad_sizes(bits: int) -> None:
    with pytest.raises(VdfError):
        vdf.discriminant(CHALLENGE, bits)
