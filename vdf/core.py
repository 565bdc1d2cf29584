"""The typed wrapper around chiavdf: discriminant, in-process prove, cached verify (PROTOCOL §4.2).

Owns: the only `import chiavdf` of the project, the generator element, the form size, the rules that
make a VDF output canonical. Must not: know block or header types, read the clock, spawn processes
(vdf.prover does that).

Facts about chiavdf 1.2.0 that this module relies on (measured here, see docs/vdf.md):
- `create_discriminant(challenge, bits)` returns the discriminant as a hex string ("-0x..."); it
  raises `ValueError` for bits that are not a positive multiple of 8 or above 1024.
- `prove(challenge, x, bits, iterations, shutdown_file_path)` returns y || proof (100 bytes each at
  every size up to 1024 bits). An empty `shutdown_file_path` means "no shutdown file"; a path that
  does not exist, or that is deleted while proving, makes it return b"" at once.
- `verify_wesolowski` raises `RuntimeError` on undecodable forms, and it accepts *non-canonical*
  encodings of the right output (a 1024-bit output had up to 64 accepted byte strings, chiavdf issue
  #334). Since leader ranks hash y's bytes (§4.3), a proposer could grind encodings to pick its rank;
  `verify` therefore also demands the strict (canonical) BQFC encoding of y and of the proof.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

import chiavdf

from chain.errors import LinguaChainError

FORM_SIZE: Final = 100  # bytes of a compressed class-group element (BQFC) for discriminants <= 1024 bits
GENERATOR: Final = b"\x08" + b"\x00" * (FORM_SIZE - 1)  # the form (2, 1, c) in chiavdf's encoding
MIN_BITS: Final = 64
MAX_BITS: Final = 1024  # chiavdf refuses larger discriminants
MAX_ITERATIONS: Final = 2**64 - 1  # chiavdf takes a uint64


class VdfError(LinguaChainError):
    """Raised when proving fails: bad parameters, or chiavdf returned no result."""


def bits_ok(bits: object) -> bool:
    return type(bits) is int and MIN_BITS <= bits <= MAX_BITS and bits % 8 == 0


def iterations_ok(iterations: object) -> bool:
    return type(iterations) is int and 1 <= iterations <= MAX_ITERATIONS


@lru_cache(maxsize=1024)
def _discriminant(challenge: bytes, bits: int) -> str:
    return chiavdf.create_discriminant(challenge, bits)


def discriminant(challenge: bytes, bits: int) -> str:
    """The class-group discriminant of `challenge` (chiavdf's hex string, negative). Cached.

    Raises `VdfError` on a size chiavdf refuses."""
    if not bits_ok(bits):
        raise VdfError(f"discriminant size {bits!r} is not a multiple of 8 in [{MIN_BITS}, {MAX_BITS}]")
    return _discriminant(bytes(challenge), bits)


def prove(challenge: bytes, discriminant_bits: int, iterations: int) -> tuple[bytes, bytes]:
    """(output, proof) of `iterations` squarings of the generator, computed in this process.

    Blocks for the whole computation and cannot be interrupted: for tests, benchmarks, the worker
    process, and small devnet VDFs. The daemon uses `vdf.prover.VdfProver` instead."""
    if not bits_ok(discriminant_bits):
        raise VdfError(f"discriminant size {discriminant_bits!r} is not supported")
    if not iterations_ok(iterations):
        raise VdfError(f"iterations {iterations!r} out of range [1, 2**64)")
    blob = chiavdf.prove(bytes(challenge), GENERATOR, discriminant_bits, iterations, "")
    if len(blob) != 2 * FORM_SIZE:
        raise VdfError(f"chiavdf returned {len(blob)} bytes instead of {2 * FORM_SIZE}")
    return blob[:FORM_SIZE], blob[FORM_SIZE:]


def verify(challenge: bytes, discriminant_bits: int, iterations: int, output: bytes, proof: bytes) -> bool:
    """True iff `output` is the canonical result of `iterations` squarings for `challenge` and `proof`
    is a valid canonical Wesolowski proof of it (PROTOCOL §4.2).

    Pure, cached, and never raises: wrong types, sizes or garbage bytes give False."""
    if not (bits_ok(discriminant_bits) and iterations_ok(iterations)):
        return False
    if not all(isinstance(b, bytes | bytearray | memoryview) for b in (challenge, output, proof)):
        return False
    if len(output) != FORM_SIZE or len(proof) != FORM_SIZE:
        return False
    return _verify_cached(bytes(challenge), discriminant_bits, iterations, bytes(output), bytes(proof))


@lru_cache(maxsize=4096)
def _verify_cached(challenge: bytes, bits: int, iterations: int, output: bytes, proof: bytes) -> bool:
    try:
        d = _discriminant(challenge, bits)
        # Canonical encodings only (see the module docstring): strict BQFC decoding of y and proof.
        chiavdf.bqfc_deserialize(d, output, True)
        chiavdf.bqfc_deserialize(d, proof, True)
        return bool(chiavdf.verify_wesolowski(d, GENERATOR, output, proof, iterations))
    except (RuntimeError, ValueError, TypeError, OverflowError):
        return False


def cache_info() -> tuple[int, int]:
    """(hits, misses) of the verify cache, for statistics and tests."""
    info = _verify_cached.cache_info()
    return info.hits, info.misses


def clear_caches(*, discriminants: bool = True) -> None:
    """Forget cached verifications (and discriminants): benchmarks measure uncached costs."""
    _verify_cached.cache_clear()
    if discriminants:
        _discriminant.cache_clear()
