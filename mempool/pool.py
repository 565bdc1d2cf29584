"""The in-memory pools: entries by id and by sender, fee-rate order, limits, eviction, templates.

Owns: `Entry`, `TxPool` and its invariants (checked by `check_invariants`, used by the property
tests): each sender's pending entries form one gap-free nonce run; no two entries of a sender share
a nonce; every pool stays within its count and byte limits. Insertion is planned first (`plan`:
which entries a replacement or eviction removes) and applied after the caller persisted it
(`commit`), so a failed disk write leaves memory unchanged.
Must not: check signatures or state (mempool.policy does), touch LevelDB (mempool.store does) or
read the clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from chain.errors import ErrorCode
from chain.tx import Tx
from chain.types import AccountId, TxId, UnitId
from chain.units import DataUnit, LearningUnit
from mempool.config import MempoolConfig, PoolKind, fee_rate, pool_of
from mempool.policy import tx_cost

_RATE_SHIFT = 32  # exact-enough sort key for fee / size


@dataclass(frozen=True, slots=True)
class Entry:
    tx: Tx
    tx_id: TxId
    raw: bytes
    added_ms: int
    seq: int  # arrival order: ties in fee rate go to the earlier item
    sender: AccountId
    pool: PoolKind
    cost: int
    rate_key: int  # (fee << 32) // size: orders by fee rate
    unit_id: UnitId | None  # the data or learning unit a DATA_UNIT / LEARNING_UNIT tx carries

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def nonce(self) -> int:
        return self.tx.nonce

    @property
    def fee_rate(self) -> int:
        return fee_rate(self.tx.fee, len(self.raw))


@dataclass(slots=True)
class Plan:
    """An admission decided but not applied: `entry` goes in, `removed` go out."""

    entry: Entry
    index: int  # position in the sender's run (== run length: append)
    removed: list[Entry] = field(default_factory=list)  # the replaced entry, then evictions


class TxPool:
    """Three fee-rate ordered pools over one nonce run per sender. Single-threaded."""

    def __init__(self, config: MempoolConfig) -> None:
        self.config = config
        self._by_id: dict[TxId, Entry] = {}
        self._runs: dict[AccountId, list[Entry]] = {}
        self._count = [0, 0, 0]
        self._bytes = [0, 0, 0]
        # lazy min-heaps of (rate_key, -seq, tx_id): stale tuples are skipped and compacted
        self._heaps: list[list[tuple[int, int, TxId]]] = [[], [], []]
        self._seq = 0
        self._units: dict[UnitId, TxId] = {}

    # -- queries --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._by_id

    def get(self, tx_id: TxId) -> Entry | None:
        return self._by_id.get(tx_id)

    def by_unit(self, unit_id: UnitId) -> Entry | None:
        tx_id = self._units.get(unit_id)
        return None if tx_id is None else self._by_id.get(tx_id)

    def entries(self) -> Iterator[Entry]:
        return iter(self._by_id.values())

    def run(self, sender: AccountId) -> Sequence[Entry]:
        return self._runs.get(sender, ())

    def senders(self) -> list[AccountId]:
        return list(self._runs)

    def count(self, pool: PoolKind) -> int:
        return self._count[pool]

    def size_of(self, pool: PoolKind) -> int:
        return self._bytes[pool]

    def is_full(self, pool: PoolKind) -> bool:
        lim = self.config.limits(pool)
        return self._count[pool] >= lim.max_count or self._bytes[pool] >= lim.max_bytes

    def min_rate_entry(self, pool: PoolKind) -> Entry | None:
        heap = self._heaps[pool]
        while heap:
            entry = self._live(heap[0])
            if entry is not None:
                return entry
            heapq.heappop(heap)
        return None

    # -- building entries ------------------------------------------------------------------------

    def make_entry(self, tx: Tx, tx_id: TxId, raw: bytes, added_ms: int) -> Entry:
        self._seq += 1
        return Entry(
            tx=tx,
            tx_id=tx_id,
            raw=raw,
            added_ms=added_ms,
            seq=self._seq,
            sender=tx.sender_account,
            pool=pool_of(tx.kind),
            cost=tx_cost(tx),
            rate_key=(tx.fee << _RATE_SHIFT) // max(len(raw), 1),
            unit_id=tx.payload.id if isinstance(tx.payload, DataUnit | LearningUnit) else None,
        )

    # -- insertion: plan, then commit -----------------------------------------------------------

    def plan(self, entry: Entry, index: int) -> Plan | ErrorCode:
        """Decide what inserting `entry` at `index` of its sender's run removes, or POOL_FULL.

        Eviction takes the lowest fee rate of the full pool, together with the later nonces of
        that sender (they could never be included without it). The newcomer must pay a strictly
        higher fee rate than every entry it evicts and must not evict its own ancestors."""
        pool = entry.pool
        lim = self.config.limits(pool)
        if entry.size > lim.max_bytes:
            return ErrorCode.POOL_FULL
        plan = Plan(entry, index)
        run = self._runs.get(entry.sender, [])
        gone: set[TxId] = set()
        count, size = self._count[pool] + 1, self._bytes[pool] + entry.size
        if index < len(run):
            old = run[index]
            plan.removed.append(old)
            gone.add(old.tx_id)
            if old.pool is pool:
                count, size = count - 1, size - old.size
        popped: list[tuple[int, int, TxId]] = []
        heap = self._heaps[pool]
        ok = True
        while count > lim.max_count or size > lim.max_bytes:
            if not heap:
                ok = False
                break
            item = heapq.heappop(heap)
            victim = self._live(item)
            if victim is None:
                continue
            popped.append(item)
            if victim.tx_id in gone:
                continue
            if victim.rate_key >= entry.rate_key or (
                victim.sender == entry.sender and victim.nonce < entry.nonce
            ):
                ok = False
                break
            for e in self._tail(victim):  # later nonces of the victim's sender go too
                if e.tx_id not in gone:
                    gone.add(e.tx_id)
                    plan.removed.append(e)
                    if e.pool is pool:
                        count, size = count - 1, size - e.size
        for item in popped:  # commit() drops the dead ones lazily
            heapq.heappush(heap, item)
        return plan if ok else ErrorCode.POOL_FULL

    def commit(self, plan: Plan) -> None:
        entry = plan.entry
        replaced = plan.removed[0] if plan.index < len(self.run(entry.sender)) else None
        evicted = plan.removed[1:] if replaced is not None else plan.removed
        if replaced is not None:
            self._drop(replaced)
            self._runs[entry.sender][plan.index] = entry
        else:
            self._runs.setdefault(entry.sender, []).append(entry)
        self._add(entry)
        self.remove(evicted)

    # -- removal --------------------------------------------------------------------------------

    def remove(self, entries: Iterable[Entry]) -> list[Entry]:
        """Remove `entries` and, to keep each run gap-free, every later nonce of their senders.
        Returns all entries removed (the requested ones and their tails)."""
        out: list[Entry] = []
        for entry in entries:
            if self._by_id.get(entry.tx_id) is not entry:
                continue  # already gone with an earlier tail
            tail = self._tail(entry)
            run = self._runs[entry.sender]
            del run[len(run) - len(tail) :]
            if not run:
                del self._runs[entry.sender]
            for e in tail:
                self._drop(e)
            out.extend(tail)
        return out

    def replace_run(self, sender: AccountId, entries: list[Entry]) -> list[Entry]:
        """Make `entries` (gap-free, nonce order) the sender's run; entries of the old run that are
        kept stay in place. Returns the old entries that are gone. Limits: see `enforce_limits`."""
        old = self._runs.pop(sender, [])
        keep = {id(e) for e in entries}
        gone = [e for e in old if id(e) not in keep]
        for e in gone:
            self._drop(e)
        had = {id(e) for e in old}
        for e in entries:
            if id(e) not in had:
                self._add(e)
        if entries:
            self._runs[sender] = entries
        return gone

    def enforce_limits(self) -> list[Entry]:
        """Evict the lowest fee rates (with their senders' later nonces) until every pool is
        within its limits; used after bulk changes (reorgs, reload). Returns what was evicted."""
        out: list[Entry] = []
        for kind in PoolKind:
            lim = self.config.limits(kind)
            while self._count[kind] > lim.max_count or self._bytes[kind] > lim.max_bytes:
                victim = self.min_rate_entry(kind)
                assert victim is not None, "pool counters say full, heap says empty"
                out.extend(self.remove([victim]))
        return out

    def expired(self, now_ms: int) -> list[Entry]:
        limit = now_ms - self.config.expiry_ms
        return [e for e in self._by_id.values() if e.added_ms <= limit]

    def oldest_ms(self) -> int | None:
        return min((e.added_ms for e in self._by_id.values()), default=None)

    # -- block templates ------------------------------------------------------------------------

    def template(
        self,
        max_bytes: int,
        max_count: int,
        kinds: frozenset[PoolKind] | None = None,
        accept: Callable[[Tx], bool] | None = None,
    ) -> list[Entry]:
        """The best entries within `max_bytes` (sum of encoded sizes) and `max_count`: greedy by
        fee rate over the head of each sender's run, so a sender's nonces stay in order and
        gap-free. A head that does not fit, is of an excluded kind or that `accept` refuses ends
        that sender's turn."""
        heap: list[tuple[int, int, AccountId, int]] = []
        for sender, run in self._runs.items():
            head = run[0]
            if kinds is None or head.pool in kinds:
                heap.append((-head.rate_key, head.seq, sender, 0))
        heapq.heapify(heap)
        out: list[Entry] = []
        room = max_bytes
        while heap and len(out) < max_count:
            _, _, sender, i = heapq.heappop(heap)
            run = self._runs[sender]
            entry = run[i]
            if entry.size > room or (accept is not None and not accept(entry.tx)):
                continue
            out.append(entry)
            room -= entry.size
            if i + 1 < len(run):
                nxt = run[i + 1]
                if kinds is None or nxt.pool in kinds:
                    heapq.heappush(heap, (-nxt.rate_key, nxt.seq, sender, i + 1))
        return out

    # -- invariants (tests) ---------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Raise AssertionError if a structural invariant is broken."""
        count, size = [0, 0, 0], [0, 0, 0]
        seen = 0
        for sender, run in self._runs.items():
            assert run, "empty run kept"
            assert len(run) <= self.config.max_per_sender, "per-sender limit exceeded"
            for i, e in enumerate(run):
                assert e.sender == sender
                assert e.nonce == run[0].nonce + i, "gap or duplicate nonce in a sender's run"
                assert self._by_id.get(e.tx_id) is e
                count[e.pool] += 1
                size[e.pool] += e.size
                seen += 1
        assert seen == len(self._by_id), "entry outside any run"
        units = {e.unit_id: e.tx_id for e in self._by_id.values() if e.unit_id is not None}
        assert units == self._units, "unit index drifted"
        assert count == self._count, "pool counters drifted"
        assert size == self._bytes, "pool byte counters drifted"
        for kind in PoolKind:
            lim = self.config.limits(kind)
            assert count[kind] <= lim.max_count, f"{kind.name} pool over its count limit"
            assert size[kind] <= lim.max_bytes, f"{kind.name} pool over its byte limit"

    # -- internals ------------------------------------------------------------------------------

    def _live(self, item: tuple[int, int, TxId]) -> Entry | None:
        entry = self._by_id.get(item[2])
        return entry if entry is not None and entry.seq == -item[1] else None

    def _tail(self, entry: Entry) -> list[Entry]:
        run = self._runs[entry.sender]
        start = entry.nonce - run[0].nonce
        return run[start:]

    def _add(self, entry: Entry) -> None:
        self._by_id[entry.tx_id] = entry
        if entry.unit_id is not None:
            self._units[entry.unit_id] = entry.tx_id
        self._count[entry.pool] += 1
        self._bytes[entry.pool] += entry.size
        heap = self._heaps[entry.pool]
        heapq.heappush(heap, (entry.rate_key, -entry.seq, entry.tx_id))
        if len(heap) > 2 * self._count[entry.pool] + 64:
            self._heaps[entry.pool] = [i for i in heap if self._live(i) is not None]
            heapq.heapify(self._heaps[entry.pool])

    def _drop(self, entry: Entry) -> None:
        del self._by_id[entry.tx_id]
        if entry.unit_id is not None and self._units.get(entry.unit_id) == entry.tx_id:
            del self._units[entry.unit_id]
        self._count[entry.pool] -= 1
        self._bytes[entry.pool] -= entry.size
