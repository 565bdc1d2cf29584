"""The incremental `state_root` (PROTOCOL §3.5): a fixed two-level bucket tree over the sorted state.

Owns: the leaf, bucket, middle and root hashes and their in-memory cache. Must not: know what the
keys mean or touch storage.

    leaf(key, value) = H(key) || H(value)                                  (64 bytes)
    bucket b (b = first 2 bytes of H(key), 65,536 buckets)
                     = H("LC/state-bucket/1" || leaves of the bucket sorted by H(key))
    middle m (m = first byte of H(key), 256 middles)
                     = H("LC/state-mid/1" || bucket m*256+0 || ... || bucket m*256+255)
    state_root       = H("LC/state/1" || middle 0 || ... || middle 255)

An empty bucket hashes to H("LC/state-bucket/1"). A block re-hashes only the buckets it touches
(about state size / 65,536 leaves each) and their middles (256 hashes each), so its cost grows with
the keys it writes, not with the whole state. The reward history is not state and is not covered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from chain.hashing import H, H_many
from chain.types import StateRoot

N_MIDDLES: Final = 256
N_BUCKETS: Final = 256 * N_MIDDLES
_BUCKET_TAG: Final = b"LC/state-bucket/1"
_MID_TAG: Final = b"LC/state-mid/1"
_ROOT_TAG: Final = b"LC/state/1"


def _bucket_hash(leaves: Mapping[bytes, bytes]) -> bytes:
    parts = [_BUCKET_TAG]
    for hk in sorted(leaves):
        parts.append(hk)
        parts.append(leaves[hk])
    return H_many(*parts)


EMPTY_BUCKET: Final = _bucket_hash({})
EMPTY_MID: Final = H_many(_MID_TAG, *([EMPTY_BUCKET] * 256))


def _bucket_of(hk: bytes) -> int:
    return (hk[0] << 8) | hk[1]


class StateHasher:
    """Leaf hashes of a whole state, kept in memory; cheap root of "this state plus some writes"."""

    __slots__ = ("_buckets", "_leaves", "_mids", "_root")

    def __init__(self, items: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self._leaves: dict[int, dict[bytes, bytes]] = {}
        for key, value in items:
            hk = H(key)
            self._leaves.setdefault(_bucket_of(hk), {})[hk] = H(value)
        self._buckets: dict[int, bytes] = {b: _bucket_hash(leaves) for b, leaves in self._leaves.items()}
        used = {b >> 8 for b in self._buckets}
        self._mids = [self._mid_hash(m, {}) if m in used else EMPTY_MID for m in range(N_MIDDLES)]
        self._root = self._combine(self._mids)

    def _mid_hash(self, mid: int, override: Mapping[int, bytes]) -> bytes:
        base = mid << 8
        get, over = self._buckets.get, override.get
        return H_many(_MID_TAG, *(over(b) or get(b, EMPTY_BUCKET) for b in range(base, base + 256)))

    def copy(self) -> StateHasher:
        """An independent hasher of the same state, without re-hashing anything (copy on write:
        `apply` replaces the leaf maps it changes instead of mutating them)."""
        out = StateHasher.__new__(StateHasher)
        out._leaves = dict(self._leaves)
        out._buckets = dict(self._buckets)
        out._mids = list(self._mids)
        out._root = self._root
        return out

    @staticmethod
    def _combine(mids: list[bytes]) -> StateRoot:
        return StateRoot(H_many(_ROOT_TAG, *mids))

    @property
    def root(self) -> StateRoot:
        return self._root

    def __len__(self) -> int:
        return sum(len(b) for b in self._leaves.values())

    def _dirty(self, writes: Mapping[bytes, bytes | None]) -> dict[int, dict[bytes, bytes]]:
        """New leaf maps of every bucket that `writes` touch (the cached ones are not modified)."""
        out: dict[int, dict[bytes, bytes]] = {}
        for key, value in writes.items():
            hk = H(key)
            b = _bucket_of(hk)
            leaves = out.get(b)
            if leaves is None:
                leaves = out[b] = dict(self._leaves.get(b, {}))
            if value is None:
                leaves.pop(hk, None)
            else:
                leaves[hk] = H(value)
        return out

    def root_after(self, writes: Mapping[bytes, bytes | None]) -> StateRoot:
        """The root of this state with `writes` applied (None deletes), without changing it."""
        if not writes:
            return self._root
        dirty = self._dirty(writes)
        buckets = {b: _bucket_hash(leaves) for b, leaves in dirty.items()}
        mids = list(self._mids)
        for m in {b >> 8 for b in dirty}:
            mids[m] = self._mid_hash(m, buckets)
        return self._combine(mids)

    def apply(self, writes: Mapping[bytes, bytes | None]) -> StateRoot:
        """Apply `writes` to the cached leaves and return the new root."""
        if not writes:
            return self._root
        dirty = self._dirty(writes)
        for b, leaves in dirty.items():
            if leaves:
                self._leaves[b] = leaves
                self._buckets[b] = _bucket_hash(leaves)
            else:
                self._leaves.pop(b, None)
                self._buckets.pop(b, None)
        for m in {b >> 8 for b in dirty}:
            self._mids[m] = self._mid_hash(m, {})
        self._root = self._combine(self._mids)
        return self._root
