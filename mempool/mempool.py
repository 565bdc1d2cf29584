"""The node's Mempool: admission, persistence, chain events, templates and statistics.

Owns: `Mempool`, the one object the daemon, p2p and the producer call. It runs the pure policy
(`mempool.policy`), keeps the pools (`mempool.pool`), writes every accepted item atomically to its
own LevelDB before it is visible (`mempool.store`), reloads and re-validates on open, follows
block connects and disconnects (PROTOCOL §4.5: rolled-back txs return to the pool), and answers
RPC statistics. All methods are synchronous and short (the daemon calls them from trio).
Must not: read the clock (callers pass `now_ms`), import trio/p2p, or change chain state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from chain.block import Block, TxBody
from chain.codec import encode
from chain.errors import ErrorCode
from chain.hashing import H
from chain.params import ChainParams
from chain.state.model import StateReader
from chain.state.view import StateView
from chain.tx import Tx, TxKind
from chain.types import AccountId, TxId, UnitId
from chain.units import DataUnit, LearningUnit
from mempool import policy
from mempool.caches import CheckedCache, FutureQueue, Held, RecentRejects
from mempool.config import MempoolConfig, MempoolStats, PoolKind, PoolStats
from mempool.pool import Entry, Plan, TxPool
from mempool.store import MempoolStore

log = logging.getLogger(__name__)

# Unit admission (PROTOCOL §3.3, §3.4): the node's check that a unit's blob is held and is the
# unit's (linguachaind.services.datablocks.DataBlocks.unit_blob_problem).
UnitCheck = Callable[[DataUnit | LearningUnit], ErrorCode | None]


class Mempool:
    """Pending txs of every kind in three pools (plain txs, data units, learning units)."""

    def __init__(
        self,
        store: MempoolStore,
        params: ChainParams,
        config: MempoolConfig,
        reader: StateReader,
        *,
        unit_check: UnitCheck | None = None,
    ) -> None:
        self.params = params
        self.config = config
        self._store = store
        self._reader = reader
        self._pool = TxPool(config)
        self._rejects = RecentRejects(config.recent_rejects)
        self._checked = CheckedCache(config.checked_cache)
        self._future = FutureQueue(config.max_future)
        self._now_ms = 0
        self._batch: tuple[list[tuple[TxId, int, bytes]], list[TxId]] | None = None  # see add_many
        self._accepted = self._rejected = self._evicted = self._expired = 0
        # None admits units on their tx rules alone (tests without blobs).
        self.unit_check = unit_check

    @classmethod
    def open(
        cls,
        path: str | Path,
        params: ChainParams,
        config: MempoolConfig,
        reader: StateReader,
        now_ms: int,
        *,
        unit_check: UnitCheck | None = None,
    ) -> Mempool:
        """Open (or create) the store at `path`, reload every item and re-validate it against
        `reader` (the tip state): what became invalid or expired is dropped from disk too.
        `unit_check` is asked at admission (`add_raw`), not on reload."""
        config.validate()
        store = MempoolStore(path, sync=config.sync_writes)
        mempool = cls(store, params, config, reader, unit_check=unit_check)
        mempool._reload(now_ms)
        return mempool

    def close(self) -> None:
        self._store.close()

    # -- admission ------------------------------------------------------------------------------

    def add_raw(self, raw: bytes, now_ms: int) -> TxId | ErrorCode:
        """Admit bytes from gossip or RPC (PROTOCOL §4.7 order). Returns the tx id once the item
        is accepted and on disk, else why not (`is_transient` says whether to penalise a peer)."""
        self._now_ms = max(self._now_ms, now_ms)
        if len(raw) > self.params.max_tx_bytes:
            return self._reject(ErrorCode.TOO_LARGE)
        tx_id = TxId(H(raw))
        if tx_id in self._pool:
            return self._reject(ErrorCode.ALREADY_KNOWN)
        if tx_id in self._rejects:
            return self._reject(ErrorCode.RECENTLY_REJECTED)
        if tx_id in self._future:
            return self._reject(ErrorCode.NONCE_TOO_HIGH)
        tx = self._checked.get(tx_id) or policy.check_raw(self.params, raw)
        if isinstance(tx, ErrorCode):
            if tx in policy.STATELESS_CODES:
                self._rejects.add(tx_id)
            return self._reject(tx)
        if self.unit_check is not None and isinstance(tx.payload, DataUnit | LearningUnit):
            code = self.unit_check(tx.payload)  # BLOB_MISSING (transient) until the blob is here
            if code is not None:
                return self._reject(code)
        result = self._admit(tx, tx_id, raw, now_ms)
        if isinstance(result, ErrorCode):
            self._checked.put(tx_id, tx)  # refused against state: a resend skips decode and signature
        else:
            self._checked.discard(tx_id)
        return result

    def add_many(self, raws: Sequence[bytes], now_ms: int) -> list[TxId | ErrorCode]:
        """Admit a batch (a peer's mempool, a burst of gossip) as `add_raw` would, one by one, but
        with ONE synced write for all of them: the results are returned once it is on disk."""
        self._batch = ([], [])
        try:
            results = [self.add_raw(raw, now_ms) for raw in raws]
            puts, deletes = self._batch
            self._store.write(
                [p for p in puts if p[0] in self._pool], [d for d in deletes if d not in self._pool]
            )
        finally:
            self._batch = None
        return results

    def add(self, tx: Tx, now_ms: int) -> TxId | ErrorCode:
        """Admit a tx object (local wallet or RPC): same checks as `add_raw` on its encoding."""
        return self.add_raw(encode(tx), now_ms)

    def _admit(self, tx: Tx, tx_id: TxId, raw: bytes, now_ms: int) -> TxId | ErrorCode:
        plan = self._plan(tx, tx_id, raw, now_ms)
        if isinstance(plan, ErrorCode):
            if plan is ErrorCode.NONCE_TOO_HIGH:
                self._hold(tx, tx_id, raw, now_ms)
            return self._reject(plan)
        self._persist([(tx_id, now_ms, raw)], [e.tx_id for e in plan.removed])
        self._commit(plan)
        self._promote(tx.sender_account)
        return tx_id

    def _plan(self, tx: Tx, tx_id: TxId, raw: bytes, added_ms: int) -> Plan | ErrorCode:
        """Stateful checks (tip state plus the sender's pending run), then pool limits."""
        sender = tx.sender_account
        run = self._pool.run(sender)
        account = self._reader.account(sender)
        pending = [e.tx for e in run]
        index = policy.check_against_state(self.config, tx, account, pending, sum(e.cost for e in run))
        if isinstance(index, ErrorCode):
            return index
        if tx.kind is not TxKind.TRANSFER and isinstance(self._reader, StateView):
            code = policy.check_state_rules(self.params, self._reader, tx, account, pending[:index])
            if code is not None:
                return code
        return self._pool.plan(self._pool.make_entry(tx, tx_id, raw, added_ms), index)

    def _commit(self, plan: Plan) -> None:
        replaced = plan.index < len(self._pool.run(plan.entry.sender))
        self._pool.commit(plan)
        self._accepted += 1
        self._evicted += len(plan.removed) - (1 if replaced else 0)

    def _hold(self, tx: Tx, tx_id: TxId, raw: bytes, now_ms: int) -> None:
        """Keep a tx with a small nonce gap in memory (not accepted, not relayed) until the gap fills."""
        sender = tx.sender_account
        account = self._reader.account(sender)
        expected = account.nonce + len(self._pool.run(sender))
        # Only a funded sender may park txs: fresh keys cost nothing and must not flush the queue.
        if tx.nonce - expected <= self.config.max_nonce_gap and policy.tx_cost(tx) <= account.balance:
            self._future.hold(Held(tx, tx_id, raw, now_ms))

    def _promote(self, sender: AccountId) -> None:
        """Admit held txs that now continue the sender's run (each its own atomic write)."""
        while True:
            run = self._pool.run(sender)
            nxt = run[-1].nonce + 1 if run else self._reader.account(sender).nonce
            held = self._future.take(sender, nxt)
            if held is None or held.added_ms + self.config.expiry_ms <= self._now_ms:
                return
            now = self._now_ms  # accepted now: its expiry counts from here
            plan = self._plan(held.tx, held.tx_id, held.raw, now)
            if isinstance(plan, ErrorCode):
                return
            self._persist([(held.tx_id, now, held.raw)], [e.tx_id for e in plan.removed])
            self._commit(plan)

    def _persist(self, puts: list[tuple[TxId, int, bytes]], deletes: list[TxId]) -> None:
        """Write before the change is visible in memory (or collect it for `add_many`)."""
        if self._batch is None:
            self._store.write(puts, deletes)
        else:
            self._batch[0].extend(puts)
            self._batch[1].extend(deletes)

    def _reject(self, code: ErrorCode) -> ErrorCode:
        self._rejected += 1
        return code

    # -- chain events (PROTOCOL §4.5) -----------------------------------------------------------

    def on_block_connected(self, block: Block, reader: StateReader) -> None:
        """`reader` is the state after `block`: drop what it included and what became invalid
        (same-nonce conflicts, spends the new balance no longer covers)."""
        self._reader = reader
        if isinstance(block.body, TxBody):
            self._resync({tx.sender_account for tx in block.body.txs}, ())

    def on_block_disconnected(self, block: Block, reader: StateReader) -> None:
        """`reader` is the state after rolling `block` back: its txs return to the pool,
        re-validated, ahead of the senders' later pending nonces."""
        self._reader = reader
        if isinstance(block.body, TxBody):
            txs = block.body.txs
            self._resync({tx.sender_account for tx in txs}, txs)

    def revalidate(self, reader: StateReader) -> None:
        """Re-check every pending item against `reader` (after a tip change without events)."""
        self._reader = reader
        self._resync(set(self._pool.senders()), ())

    def _resync(self, senders: set[AccountId], extra: Iterable[Tx]) -> None:
        """Rebuild the runs of `senders` from their pending entries plus `extra` txs (in nonce
        order; for one nonce the block's tx first), evict to the limits, persist the difference
        in one batch, then admit held txs that now continue a run."""
        extra_by_sender: dict[AccountId, list[Tx]] = {}
        for tx in extra:
            extra_by_sender.setdefault(tx.sender_account, []).append(tx)
        removed: list[Entry] = []
        added: list[Entry] = []
        for sender in senders:
            fresh: list[Entry] = []
            for tx in extra_by_sender.get(sender, ()):
                raw = encode(tx)
                tx_id = TxId(H(raw))
                # validated with its block when it was connected: no second signature check
                code = policy.check_stateless(self.params, tx, verify_signature=False)
                if tx_id not in self._pool and code is None:
                    fresh.append(self._pool.make_entry(tx, tx_id, raw, self._now_ms))
            old = list(self._pool.run(sender))
            candidates = sorted(
                [(e, 0) for e in fresh] + [(e, 1) for e in old], key=lambda c: (c[0].nonce, c[1])
            )
            run, gone = self._rebuild(sender, [c[0] for c in candidates])
            removed.extend(gone)
            new_ids = {id(e) for e in fresh}
            added.extend(e for e in run if id(e) in new_ids)
            self._future.drop_below(sender, self._reader.account(sender).nonce)
        evicted = self._pool.enforce_limits()
        self._evicted += len(evicted)
        puts = [(e.tx_id, e.added_ms, e.raw) for e in added if e.tx_id in self._pool]
        deletes = [e.tx_id for e in removed + evicted if e.tx_id not in self._pool]
        self._store.write(puts, deletes)
        for sender in senders:
            self._promote(sender)

    def _rebuild(self, sender: AccountId, candidates: list[Entry]) -> tuple[list[Entry], list[Entry]]:
        """Make the valid part of `candidates` the sender's run (policy.select_run against the
        current reader). Returns (the new run, the old entries that are gone)."""
        account = self._reader.account(sender)
        rules: policy.StateRule | None = None
        reader = self._reader
        if isinstance(reader, StateView):

            def rules(tx: Tx, before: Sequence[Tx]) -> ErrorCode | None:
                return policy.check_state_rules(self.params, reader, tx, account, before)

        chosen = policy.select_run(self.config, account, [c.tx for c in candidates], rules)
        run = [candidates[i] for i in chosen]
        return run, self._pool.replace_run(sender, run)

    # -- expiry and reload ----------------------------------------------------------------------

    def expire(self, now_ms: int) -> int:
        """Drop items older than `expiry_ms` (and the later nonces of their senders)."""
        self._now_ms = max(self._now_ms, now_ms)
        gone = self._pool.remove(self._pool.expired(now_ms))
        self._store.write([], [e.tx_id for e in gone])
        self._expired += len(gone)
        return len(gone)

    def _reload(self, now_ms: int) -> None:
        """Load every stored item, re-check it fully (signature included) and rebuild each
        sender's run against the tip; delete what is invalid, expired or over the limits."""
        self._now_ms = now_ms
        by_sender: dict[AccountId, list[Entry]] = {}
        deletes: list[TxId] = []
        for record in self._store.load():
            if not isinstance(record, tuple):
                deletes.append(record)
                continue
            tx_id, added_ms, raw = record
            tx = policy.check_raw(self.params, raw)
            if (
                isinstance(tx, ErrorCode)
                or TxId(H(raw)) != tx_id
                or added_ms + self.config.expiry_ms <= now_ms
            ):
                deletes.append(tx_id)
                continue
            entry = self._pool.make_entry(tx, tx_id, raw, added_ms)
            by_sender.setdefault(entry.sender, []).append(entry)
        for sender, entries in by_sender.items():
            entries.sort(key=lambda e: (e.nonce, e.added_ms))
            run, _ = self._rebuild(sender, entries)
            kept = {id(e) for e in run}
            deletes.extend(e.tx_id for e in entries if id(e) not in kept)
        deletes.extend(e.tx_id for e in self._pool.enforce_limits())
        self._store.write([], deletes)
        log.info("mempool reloaded: %d items kept, %d dropped", len(self._pool), len(deletes))

    # -- queries for the producer, p2p and RPC --------------------------------------------------

    def tx_template(
        self,
        max_bytes: int,
        max_count: int,
        kinds: frozenset[PoolKind] | None = None,
        accept: Callable[[Tx], bool] | None = None,
    ) -> list[Tx]:
        """The best txs for a TX block: at most `max_count`, encoded sizes summing to at most
        `max_bytes` (leave room for the header and array framing), each sender's nonces in order
        from its state nonce without a gap, never spending more than its balance.

        `accept(tx)`, if given, is called on each candidate in the order chosen (the producer
        applies it to its block overlay with `apply_tx` and returns whether it succeeded); a
        refused tx ends its sender's turn, so the result is exactly what the block can hold."""
        return [e.tx for e in self._pool.template(max_bytes, max_count, kinds, accept)]

    def data_units(self) -> list[Tx]:
        """Pending DATA_UNIT txs, highest fee rate first (the data producer's rules pick among them)."""
        return self._by_rate(PoolKind.DATA)

    def learning_units(self) -> list[Tx]:
        """Pending LEARNING_UNIT txs, highest fee rate first."""
        return self._by_rate(PoolKind.LEARNING)

    def _by_rate(self, pool: PoolKind) -> list[Tx]:
        entries = [e for e in self._pool.entries() if e.pool is pool]
        entries.sort(key=lambda e: (-e.rate_key, e.seq))
        return [e.tx for e in entries]

    def get(self, tx_id: TxId) -> Tx | None:
        entry = self._pool.get(tx_id)
        return None if entry is None else entry.tx

    def get_unit(self, unit_id: UnitId) -> Tx | None:
        """The pending DATA_UNIT / LEARNING_UNIT tx carrying this unit (blob fetches, producers)."""
        entry = self._pool.by_unit(unit_id)
        return None if entry is None else entry.tx

    def get_raw(self, tx_id: TxId) -> bytes | None:
        entry = self._pool.get(tx_id)
        return None if entry is None else entry.raw

    def contains(self, tx_id: TxId) -> bool:
        return tx_id in self._pool

    def __len__(self) -> int:
        return len(self._pool)

    def ids(self) -> list[TxId]:
        return [e.tx_id for e in self._pool.entries()]

    def pending(self, account: AccountId) -> list[Tx]:
        """The account's pending txs in nonce order."""
        return [e.tx for e in self._pool.run(account)]

    def next_nonce(self, account: AccountId) -> int:
        """The nonce a wallet should use next: the state nonce plus its pending txs."""
        return self._reader.account(account).nonce + len(self._pool.run(account))

    def statistics(self, now_ms: int | None = None) -> MempoolStats:
        now = self._now_ms if now_ms is None else now_ms
        pools = []
        for kind in PoolKind:
            lim = self.config.limits(kind)
            low = self._pool.min_rate_entry(kind)
            low_rate = 0 if low is None else low.fee_rate
            pools.append(
                PoolStats(
                    kind=kind,
                    count=self._pool.count(kind),
                    bytes=self._pool.size_of(kind),
                    max_count=lim.max_count,
                    max_bytes=lim.max_bytes,
                    min_fee_rate=low_rate,
                    min_fee_rate_to_enter=low_rate + 1 if self._pool.is_full(kind) else 0,
                )
            )
        oldest = self._pool.oldest_ms()
        return MempoolStats(
            pools=(pools[0], pools[1], pools[2]),
            senders=len(self._pool.senders()),
            oldest_age_ms=0 if oldest is None else max(0, now - oldest),
            future_held=len(self._future),
            recent_rejects=len(self._rejects),
            accepted_total=self._accepted,
            rejected_total=self._rejected,
            evicted_total=self._evicted,
            expired_total=self._expired,
        )

    def check_invariants(self) -> None:
        """Structural invariants of the pools (tests)."""
        self._pool.check_invariants()
