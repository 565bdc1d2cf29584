"""Bounded memory-only caches of the mempool: recently rejected ids and future-nonce txs.

Owns: `RecentRejects` (an LRU set of ids whose bytes failed a stateless check, so a flood of the
same bad item costs one check), `CheckedCache` (decoded txs that passed the stateless stage but
were refused against state, so resending one costs no second decode or signature check) and
`FutureQueue` (txs whose nonce leaves a small gap, held until
the gap fills; they are not accepted, not relayed and not persisted). Both are strictly bounded.
Must not: validate anything or touch LevelDB.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from chain.tx import Tx
from chain.types import AccountId, TxId


class RecentRejects:
    """An LRU set of at most `capacity` ids."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: bytes) -> bool:
        if item_id in self._ids:
            self._ids.move_to_end(item_id)
            return True
        return False

    def add(self, item_id: bytes) -> None:
        if self.capacity <= 0:
            return
        self._ids[item_id] = None
        self._ids.move_to_end(item_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def clear(self) -> None:
        self._ids.clear()


class CheckedCache:
    """An LRU map id -> decoded tx whose stateless checks (signature included) passed."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._txs: OrderedDict[bytes, Tx] = OrderedDict()

    def __len__(self) -> int:
        return len(self._txs)

    def get(self, tx_id: bytes) -> Tx | None:
        tx = self._txs.get(tx_id)
        if tx is not None:
            self._txs.move_to_end(tx_id)
        return tx

    def put(self, tx_id: bytes, tx: Tx) -> None:
        if self.capacity <= 0:
            return
        self._txs[tx_id] = tx
        self._txs.move_to_end(tx_id)
        while len(self._txs) > self.capacity:
            self._txs.popitem(last=False)

    def discard(self, tx_id: bytes) -> None:
        self._txs.pop(tx_id, None)


@dataclass(frozen=True, slots=True)
class Held:
    tx: Tx
    tx_id: TxId
    raw: bytes
    added_ms: int


class FutureQueue:
    """Txs that passed every stateless check but whose nonce is ahead of the sender's next one.

    At most `capacity` in all (oldest dropped first) and one per (sender, nonce): a later arrival
    for the same slot replaces the held one only with a higher fee."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._order: OrderedDict[tuple[AccountId, int], None] = OrderedDict()
        self._by_sender: dict[AccountId, dict[int, Held]] = {}
        self._ids: set[TxId] = set()

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._ids

    def hold(self, held: Held) -> bool:
        if self.capacity <= 0:
            return False
        sender, nonce = held.tx.sender_account, held.tx.nonce
        slots = self._by_sender.setdefault(sender, {})
        old = slots.get(nonce)
        if old is not None:
            if held.tx.fee <= old.tx.fee:
                return False
            self._ids.discard(old.tx_id)
        slots[nonce] = held
        self._order[(sender, nonce)] = None
        self._order.move_to_end((sender, nonce))
        self._ids.add(held.tx_id)
        while len(self._order) > self.capacity:
            (s, n), _ = self._order.popitem(last=False)
            self._pop(s, n)
        return True

    def take(self, sender: AccountId, nonce: int) -> Held | None:
        if nonce not in self._by_sender.get(sender, {}):
            return None
        del self._order[(sender, nonce)]
        return self._pop(sender, nonce)

    def drop_below(self, sender: AccountId, nonce: int) -> None:
        """Forget the sender's held txs whose nonce is already used."""
        for n in [n for n in self._by_sender.get(sender, {}) if n < nonce]:
            del self._order[(sender, n)]
            self._pop(sender, n)

    def _pop(self, sender: AccountId, nonce: int) -> Held:
        slots = self._by_sender[sender]
        held = slots.pop(nonce)
        if not slots:
            del self._by_sender[sender]
        self._ids.discard(held.tx_id)
        return held
