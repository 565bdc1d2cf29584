"""BLAKE2b-256 hashing and the Merkle root of block bodies (PROTOCOL §1.2, §3.2).

Owns: `H`, `merkle_root`, PoW leading-zero counting. Must not: know object types.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

from chain.types import Hash32

_LEAF: Final = b"\x00"
_NODE: Final = b"\x01"
EMPTY_ROOT: Final = Hash32(hashlib.blake2b(b"LC/merkle/empty", digest_size=32).digest())


def H(data: bytes) -> Hash32:
    """BLAKE2b-256 of `data`."""
    return Hash32(hashlib.blake2b(data, digest_size=32).digest())


def H_many(*parts: bytes) -> Hash32:
    """BLAKE2b-256 of the concatenation of `parts`, without building the joined string."""
    h = hashlib.blake2b(digest_size=32)
    for p in parts:
        h.update(p)
    return Hash32(h.digest())


def merkle_root(leaves: Sequence[bytes]) -> Hash32:
    """Bitcoin-style Merkle root with domain bytes: leaf = H(0x00||x), node = H(0x01||l||r).

    An odd node at a level is paired with itself. Domain bytes make a leaf never equal a node, so
    the duplicated-last-leaf ambiguity of Bitcoin (CVE-2012-2459) is harmless here: lists of
    different lengths hash to different roots because the length is mixed into the final hash.
    """
    if not leaves:
        return EMPTY_ROOT
    level = [H_many(_LEAF, leaf) for leaf in leaves]
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [H_many(_NODE, level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return H_many(_NODE, level[0], len(leaves).to_bytes(8, "big"))


def leading_zero_bits(digest: bytes) -> int:
    """Number of leading zero bits of `digest` (PoW difficulty, PROTOCOL §4.6)."""
    n = int.from_bytes(digest, "big")
    return len(digest) * 8 - n.bit_length()


def merkle_branch(leaves: Sequence[bytes], index: int) -> list[Hash32]:
    """The sibling hashes from leaf `index` up to the top of `merkle_root(leaves)` (an odd node's
    sibling is itself), for `merkle_root_from_branch`."""
    if not 0 <= index < len(leaves):
        raise IndexError("leaf index out of range")
    level = [H_many(_LEAF, leaf) for leaf in leaves]
    branch: list[Hash32] = []
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        branch.append(level[index ^ 1])
        level = [H_many(_NODE, level[i], level[i + 1]) for i in range(0, len(level), 2)]
        index //= 2
    return branch


def merkle_root_from_branch(leaf: bytes, index: int, count: int, branch: Sequence[bytes]) -> Hash32 | None:
    """The root that `leaf` at `index` of `count` leaves and its `branch` commit to, or None if the
    shape is impossible (index out of range, wrong branch length)."""
    if not 0 <= index < count:
        return None
    node, n, depth = H_many(_LEAF, leaf), count, 0
    for sibling in branch:
        if n <= 1:
            return None
        node = H_many(_NODE, node, sibling) if index % 2 == 0 else H_many(_NODE, sibling, node)
        index, n, depth = index // 2, (n + 1) // 2, depth + 1
    if n != 1:
        return None
    return H_many(_NODE, node, count.to_bytes(8, "big"))
