"""The mempool's own LevelDB (`<datadir>/mempool/`): one record per accepted item.

Owns: the key layout (`b"V"` schema version, `b"i" + tx_id` -> 8-byte big-endian accept time in ms
followed by the tx's canonical bytes), loading, and atomic batches (each admission, with the items
it replaced or evicted, is one synced batch).
Must not: validate items (the mempool re-validates everything it loads) or import plyvel (it goes
through `chain.store.leveldb.LevelDB`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from chain.errors import StoreError
from chain.store.leveldb import LevelDB
from chain.types import TxId

SCHEMA_KEY: Final = b"V"
SCHEMA_VERSION: Final = b"\x01"
ITEM_PREFIX: Final = b"i"
_TIME_LEN: Final = 8  # the accept time is stored so that expiry survives restarts


class MempoolStore:
    """Durable set of accepted items. One writer (the mempool)."""

    def __init__(self, path: str | Path, *, sync: bool = True) -> None:
        self._db = LevelDB(path)
        self._sync = sync
        version = self._db.get(SCHEMA_KEY)
        if version is None:
            self._db.write([(SCHEMA_KEY, SCHEMA_VERSION)], sync=sync)
        elif version != SCHEMA_VERSION:
            self._db.close()
            raise StoreError(f"mempool store {path} has schema {version.hex()}, this node reads 01")

    def load(self) -> Iterator[tuple[TxId, int, bytes] | TxId]:
        """Every stored item as (id, added_ms, raw); a bare id for a record that does not decode."""
        for key, value in self._db.iterate(ITEM_PREFIX):
            tx_id = TxId(key[len(ITEM_PREFIX) :])
            if len(value) <= _TIME_LEN:
                yield tx_id
            else:
                yield tx_id, int.from_bytes(value[:_TIME_LEN], "big"), value[_TIME_LEN:]

    def write(self, puts: Iterable[tuple[TxId, int, bytes]], deletes: Iterable[TxId]) -> None:
        """One atomic batch: delete then put (all or nothing on a crash)."""
        put_list = [(ITEM_PREFIX + i, max(ms, 0).to_bytes(_TIME_LEN, "big") + raw) for i, ms, raw in puts]
        del_list = [ITEM_PREFIX + i for i in deletes]
        if put_list or del_list:
            self._db.write(put_list, del_list, sync=self._sync)

    def count(self) -> int:
        return sum(1 for _ in self._db.iterate_keys(ITEM_PREFIX))

    def approximate_size(self) -> int:
        return self._db.approximate_size()

    def close(self) -> None:
        self._db.close()
