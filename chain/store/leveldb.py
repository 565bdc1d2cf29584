"""The project's only plyvel import: a small typed LevelDB wrapper with atomic write batches.

Owns: opening (with a clear error when locked or corrupt), reads, prefix iteration, and atomic
batches written with `sync=True`. Must not: know key layouts (the block store and the mempool do).
Used by `chain.store` and, through this module, by the mempool's own database.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

import plyvel

from chain.errors import StoreError


class LevelDB:
    """One LevelDB directory. Not thread-safe for writers: use one writer (STYLE.md §7)."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._db = plyvel.DB(str(self.path), create_if_missing=create, paranoid_checks=True)
        except plyvel.IOError as exc:
            if "lock" in str(exc).lower():
                raise StoreError(f"{self.path} is in use by another process (LevelDB lock held)") from None
            raise StoreError(f"cannot open LevelDB at {self.path}: {exc}") from None
        except plyvel.CorruptionError as exc:
            raise StoreError(f"LevelDB at {self.path} is corrupt: {exc}") from None
        except plyvel.Error as exc:
            raise StoreError(f"cannot open LevelDB at {self.path}: {exc}") from None
        self._closed = False

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        assert value is None or isinstance(value, bytes)
        return value

    def write(
        self,
        puts: Iterable[tuple[bytes, bytes]] = (),
        deletes: Iterable[bytes] = (),
        *,
        sync: bool = True,
    ) -> None:
        """Apply all `deletes` then all `puts` in ONE atomic batch (all or nothing on a crash)."""
        try:
            with self._db.write_batch(sync=sync) as batch:
                for key in deletes:
                    batch.delete(key)
                for key, value in puts:
                    batch.put(key, value)
        except plyvel.IOError as exc:
            if _is_disk_full(exc):
                raise StoreError(f"disk full while writing {self.path}; nothing was written") from None
            raise StoreError(f"write to {self.path} failed; nothing was written: {exc}") from None

    def iterate(self, prefix: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs whose key starts with `prefix`, in key order."""
        with self._db.iterator(prefix=prefix, reverse=reverse) as it:
            yield from it

    def iterate_keys(self, prefix: bytes) -> Iterator[bytes]:
        with self._db.iterator(prefix=prefix, include_value=False) as it:
            yield from it

    def approximate_size(self) -> int:
        """Bytes on disk (sum of the directory's files)."""
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> LevelDB:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _is_disk_full(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "no space" in text or os.strerror(errno.ENOSPC).lower() in text
