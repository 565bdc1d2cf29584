"""Catching up with the network: download missing blocks from several peers and import them in order.

Owns: the decision to sync (a peer's status shows a best block we do not have), the fast path
(peers ahead on our branch: the missing heights split into batches fetched in parallel from every
such peer, `/lc/<chain_id>/sync/1`, PROTOCOL §7.3), the fork path (a peer on another branch, longer,
as long or shorter: find the common ancestor with `GetHeaders`, then fetch that peer's blocks from
ancestor+1 to its tip, bounded per round, and let the sink's fork choice (§4.5) decide), importing
strictly in height order through the node's `BlockSink`, scoring peers whose replies are garbage or
whose blocks are permanently invalid, and the progress figures `getblockchaininfo` shows. Once caught
up the node follows gossip. Must not: validate blocks itself (the sink runs the consensus rules) or
choose between branches (the sink's fork choice does).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from chain.block import Block
from chain.codec import decode
from chain.errors import ErrorCode
from chain.hashing import H
from chain.types import Height
from p2p import framing
from p2p.interfaces import BlockSink, ChainSource
from p2p.messages import sync as syncmsg
from p2p.protocols import sync_protocol
from p2p.scoring import Offence

if TYPE_CHECKING:  # trio-stubs in this venv hide trio.TaskStatus from mypy
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncStats:
    syncing: bool
    current_height: int
    target_height: int
    start_height: int
    peers: int  # peers we are downloading from
    blocks_imported: int
    rounds: int
    failures: int
    fork_rounds: int = 0  # rounds that fetched a peer's branch from a common ancestor below our tip
    polls: int = 0  # completed looks at the peers (tests wait on it instead of sleeping)

    @property
    def progress(self) -> float:
        """Fraction of this sync round done (1.0 when not syncing)."""
        span = self.target_height - self.start_height
        if not self.syncing or span <= 0:
            return 1.0
        return max(0.0, min(1.0, (self.current_height - self.start_height) / span))


class Syncer:
    def __init__(
        self,
        host: Any,
        chain_id: str,
        chain: ChainSource,
        sink: BlockSink,
        peer_heights: Callable[[], dict[Any, int]],
        penalise: Callable[[str, Offence], None],
        *,
        batch: int = 64,
        streams_per_peer: int = 2,
        window_batches: int = 4,
        poll_s: float = 1.0,
        timeout_s: float = 10.0,
        peer_tips: Callable[[], dict[Any, tuple[int, bytes]]] | None = None,
        fork_blocks: int = 512,
        fork_peers: int = 4,
        fork_round_s: float = 120.0,
        gate: trio.Event | None = None,
    ) -> None:
        """`gate`: while given and not set, the syncer fetches nothing (the node holds it until the
        weak-subjectivity checkpoint from the configured peers is adopted, p2p.checkpoint)."""
        self.host, self.chain, self.sink = host, chain, sink
        self.gate = gate
        self.peer_heights, self.penalise = peer_heights, penalise
        self.protocol = sync_protocol(chain_id)
        self.batch = min(batch, syncmsg.MAX_BLOCKS)
        self.streams_per_peer = streams_per_peer
        self.window_batches = window_batches  # batches fetched ahead of the importer, at least
        self.poll_s, self.timeout_s = poll_s, timeout_s
        self._wake = trio.Event()
        self._syncing = False
        self._target = 0
        self._start = 0
        self._peers = 0
        self._imported = 0
        self._rounds = 0
        self._polls = 0
        self._failures = 0
        self._synced_once = trio.Event()
        # Fork path (see `_fork_sync`). Without `peer_tips` (best hashes) only the fast path runs.
        self.peer_tips = peer_tips
        self.fork_blocks = fork_blocks  # blocks fetched from one diverged peer per round
        self.fork_peers = fork_peers  # diverged peers handled per round
        self.fork_round_s = fork_round_s  # deadline of one fork round (each request has its own)
        self._have: OrderedDict[bytes, None] = OrderedDict()  # hashes the sink accepted from us
        self._gave_up: dict[Any, bytes] = {}  # peer -> best hash we could not fetch; retried on change
        self._diverged: set[Any] = set()  # peers on another branch: kept out of fast-path rounds
        self._forks = 0

    def poke(self) -> None:
        """A peer reported a new height: look again now."""
        self._wake.set()

    def statistics(self) -> SyncStats:
        return SyncStats(
            self._syncing,
            self.chain.tip()[0],
            max(self._target, self.chain.tip()[0]),
            self._start,
            self._peers,
            self._imported,
            self._rounds,
            self._failures,
            self._forks,
            self._polls,
        )

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with trio.move_on_after(self.poll_s):
                await self._wake.wait()
            self._wake = trio.Event()
            try:
                await self.step()
            except trio.Cancelled:
                raise
            except Exception:
                self._failures += 1
                log.exception("sync round failed")
            finally:
                self._syncing = False
                self._polls += 1

    async def step(self) -> None:
        """One look at the peers: the fast path for peers ahead on our branch, then the fork path for
        peers whose best block we do not have (on another branch, whatever its height)."""
        if self.gate is not None and not self.gate.is_set():
            return
        tip = self.chain.tip()[0]
        if self.peer_tips is None:
            ahead = {p: h for p, h in self.peer_heights().items() if h > tip}
            if ahead:
                await self.sync_round(ahead)
            return
        tips = self.peer_tips()
        for gone in [p for p in self._gave_up if p not in tips]:
            del self._gave_up[gone]
        final = self.chain.final()[0]
        unknown = {
            p: (h, bh)
            for p, (h, bh) in tips.items()
            if h > final and not self._known(h, bh) and self._gave_up.get(p) != bh
        }
        self._diverged &= set(unknown)  # a peer whose tip we have is on our branch again
        if not unknown:
            return
        forks: dict[Any, tuple[int, int]] = {}  # peer -> (common ancestor height, its height)
        ahead = {}
        async with trio.open_nursery() as nursery:
            for peer, peer_tip in sorted(unknown.items(), key=lambda kv: -kv[1][0])[:16]:
                nursery.start_soon(self._classify, peer, peer_tip, final, tip, ahead, forks)
        if ahead:
            await self.sync_round(ahead)
        for peer, (ancestor, height) in sorted(forks.items(), key=lambda kv: -kv[1][1])[: self.fork_peers]:
            if peer not in self.peer_tips():
                continue
            best_hash = unknown[peer][1]
            with trio.move_on_after(self.fork_round_s):
                if await self._fork_sync(peer, ancestor, height):
                    continue
            self._gave_up[peer] = best_hash  # not this tip again; a new tip of the peer is retried

    # -- the fork path --------------------------------------------------------------------------

    def _main_hash(self, height: int) -> bytes | None:
        raw = self.chain.header_at(height)
        return H(raw) if raw is not None else None

    def _known(self, height: int, block_hash: bytes) -> bool:
        """Do we have this block: on our main chain at `height`, or accepted by the sink from us."""
        return block_hash in self._have or (
            height <= self.chain.tip()[0] and self._main_hash(height) == block_hash
        )

    def _remember(self, block_hash: bytes) -> None:
        self._have[block_hash] = None
        self._have.move_to_end(block_hash)
        while len(self._have) > 8192:
            self._have.popitem(last=False)

    def _have_header(self, height: int, raw: bytes) -> bool:
        """The peer's header at `height` is a block we have (so are all its ancestors)."""
        return raw == self.chain.header_at(height) or H(raw) in self._have

    def _bad_reply(self, peer: Any, reply: Any) -> None:
        if reply is ErrorCode.TIMEOUT:
            self.penalise(str(peer), Offence.TIMEOUT)
        elif not isinstance(reply, ErrorCode) or reply.is_permanent:  # garbage, or not what we asked
            self.penalise(str(peer), Offence.MALFORMED)

    async def _headers(self, peer: Any, start: int, count: int) -> tuple[bytes, ...] | None:
        reply = await framing.request(
            self.host,
            peer,
            self.protocol,
            syncmsg.GetHeaders(Height(start), count),
            syncmsg.Headers,
            timeout_s=self.timeout_s,
        )
        if isinstance(reply, syncmsg.Headers) and reply.start == start and len(reply.headers) <= count:
            return reply.headers
        self._bad_reply(peer, reply)
        return None

    async def _classify(
        self,
        peer: Any,
        peer_tip: tuple[int, bytes],
        final: int,
        tip: int,
        ahead: dict[Any, int],
        forks: dict[Any, tuple[int, int]],
    ) -> None:
        """Ahead on our branch (its header at our tip height is our tip) or a fork: where it branched."""
        height, best_hash = peer_tip
        if height > tip:
            got = await self._headers(peer, tip, 1)
            if got is None:
                return
            if got and got[0] == self.chain.header_at(tip):
                self._diverged.discard(peer)
                ahead[peer] = height
                return
        ancestor = await self._common_ancestor(peer, final, min(height, tip))
        if ancestor is None:
            log.info("sync: no common block with %s at or above our final height %d", peer, final)
            self._gave_up[peer] = best_hash  # until its tip changes
            return
        self._diverged.add(peer)
        if ancestor < height:
            forks[peer] = (ancestor, height)

    async def _common_ancestor(self, peer: Any, lo: int, hi: int) -> int | None:
        """Highest height in [lo, hi] where the peer's main-chain header is a block we have; None if
        not even `lo` (our final height) matches or the peer does not answer. Binary search with
        one-header probes while the range is over `MAX_HEADERS`, then one range request."""
        while hi - lo + 1 > syncmsg.MAX_HEADERS:
            mid = (lo + hi + 1) // 2
            got = await self._headers(peer, mid, 1)
            if got is None:
                return None
            if got and self._have_header(mid, got[0]):
                lo = mid
            else:
                hi = mid - 1
        got = await self._headers(peer, lo, hi - lo + 1)
        if got is None:
            return None
        ancestor = None
        for i, raw in enumerate(got):
            if not self._have_header(lo + i, raw):
                break
            ancestor = lo + i
        return ancestor

    async def _fork_sync(self, peer: Any, ancestor: int, height: int) -> bool:
        """Fetch the peer's blocks ancestor+1.. (at most `fork_blocks`) and import them in order; side
        blocks are fine, the sink's fork choice decides. True if all were accepted."""
        self._rounds += 1
        self._forks += 1
        self._syncing = True
        target = min(height, ancestor + self.fork_blocks)
        self._start, self._target, self._peers = ancestor, target, 1
        log.info(
            "sync: peer %s is on another branch from %d; fetching %d..%d",
            peer,
            ancestor,
            ancestor + 1,
            target,
        )
        next_height = ancestor + 1
        while next_height <= target:
            count = min(self.batch, target + 1 - next_height)
            reply = await framing.request(
                self.host,
                peer,
                self.protocol,
                syncmsg.GetBlocks(Height(next_height), count),
                syncmsg.Blocks,
                timeout_s=self.timeout_s,
            )
            if not (isinstance(reply, syncmsg.Blocks) and reply.start == next_height and reply.blocks):
                self._bad_reply(peer, reply)
                return False
            for raw in reply.blocks[:count]:
                code = await self.sink.import_block(raw)
                if code is not None and code is not ErrorCode.ALREADY_KNOWN:
                    log.info("sync: fork block %d from %s rejected: %s", next_height, peer, code.name)
                    if code.is_permanent:
                        self.penalise(str(peer), Offence.INVALID)
                    return False
                block = decode(Block, raw, max_bytes=syncmsg.MAX_ITEM_BYTES)
                if not isinstance(block, ErrorCode):
                    self._remember(block.hash)
                self._imported += 1
                next_height += 1
        log.info("sync: fetched %d blocks of %s's branch (to %d)", target - ancestor, peer, target)
        return True

    async def sync_round(self, ahead: dict[Any, int]) -> None:
        """Fetch and import everything up to the best height any of `ahead` reported."""
        self._rounds += 1
        self._syncing = True
        tip = self.chain.tip()[0]
        self._start = tip
        self._target = max(ahead.values())
        self._peers = len(ahead)
        log.info("sync: from %d to %d with %d peers", tip, self._target, len(ahead))
        await _SyncRound(self, tip, self._target).run(ahead)
        if self.chain.tip()[0] >= self._target:
            self._synced_once.set()
            log.info("sync: reached %d", self.chain.tip()[0])


class _SyncRound:
    """One sync round: `streams_per_peer` fetchers per peer take batches from `todo` (at most a
    window ahead of the import), put what they got in `results`, and one importer imports them in
    height order. Peers that connect or report a new height during the round join it."""

    def __init__(self, syncer: Syncer, tip: int, target: int) -> None:
        self.syncer = syncer
        self.target = target
        self.todo: deque[tuple[int, int]] = deque(
            (start, min(syncer.batch, target + 1 - start))
            for start in range(tip + 1, target + 1, syncer.batch)
        )
        self.results: dict[int, tuple[tuple[bytes, ...], Any]] = {}
        self.next_height = tip + 1
        self.changed = trio.Event()
        self.dropped: set[Any] = set()  # peers that failed 3 requests
        self.stop = False  # a block was refused: the round ends
        self.alive = 0  # fetchers running
        self.started: set[Any] = set()
        self.finished = trio.Event()

    async def run(self, ahead: dict[Any, int]) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run_importer)
            nursery.start_soon(self._recruit, nursery)
            for peer, height in ahead.items():
                self._start_fetchers(nursery, peer, height)

    def _poke(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def _start_fetchers(self, nursery: trio.Nursery, peer: Any, height: int) -> None:
        self.started.add(peer)
        self.alive += self.syncer.streams_per_peer
        for _ in range(self.syncer.streams_per_peer):
            nursery.start_soon(self._counted, peer, height)

    async def _counted(self, peer: Any, height: int) -> None:
        try:
            await self._fetcher(peer, height)
        finally:
            self.alive -= 1
            self._poke()

    async def _fetcher(self, peer: Any, height: int) -> None:
        syncer = self.syncer
        failures = 0
        while not self.stop and peer not in self.dropped:
            job = next((j for j in self.todo if j[0] <= height), None)
            if job is None:
                return
            if job[0] >= self.next_height + syncer.batch * max(syncer.window_batches, self.alive + 1):
                await self.changed.wait()
                continue
            self.todo.remove(job)
            start, count = job
            reply = await framing.request(
                syncer.host,
                peer,
                syncer.protocol,
                syncmsg.GetBlocks(Height(start), count),
                syncmsg.Blocks,
                timeout_s=syncer.timeout_s,
            )
            if isinstance(reply, syncmsg.Blocks) and reply.start == start and reply.blocks:
                blocks = reply.blocks[:count]
                self.results[start] = (blocks, peer)
                if len(blocks) < count:
                    self.todo.appendleft((start + len(blocks), count - len(blocks)))
            else:
                failures += 1
                self.todo.appendleft(job)
                if reply is ErrorCode.TIMEOUT:
                    syncer.penalise(str(peer), Offence.TIMEOUT)
                elif isinstance(reply, ErrorCode) and reply.is_permanent:
                    syncer.penalise(str(peer), Offence.MALFORMED)
                if failures >= 3:
                    self.dropped.add(peer)
            self._poke()

    async def _run_importer(self) -> None:
        try:
            await self._importer()
        finally:
            self.finished.set()

    async def _importer(self) -> None:
        syncer = self.syncer
        while self.next_height <= self.target:
            if self.next_height not in self.results:
                if self.alive <= 0:
                    return
                await self.changed.wait()
                continue
            blocks, peer = self.results.pop(self.next_height)
            for raw in blocks:
                code = await syncer.sink.import_block(raw)
                if code is None or code is ErrorCode.ALREADY_KNOWN:
                    syncer._imported += 1
                    self.next_height += 1
                    continue
                log.info("sync: block %d from %s rejected: %s", self.next_height, peer, code.name)
                if code.is_permanent:
                    syncer.penalise(str(peer), Offence.INVALID)
                self.stop = True
                self._poke()
                return
            self._poke()

    async def _recruit(self, nursery: trio.Nursery) -> None:
        """Peers that connect (or report a new height) during the round join it."""
        syncer = self.syncer
        while not self.finished.is_set():
            with trio.move_on_after(0.25):
                await self.finished.wait()
            for peer, height in syncer.peer_heights().items():
                if peer in syncer._diverged:  # on another branch: the fork path serves it
                    continue
                if peer not in self.started and height >= self.next_height and self.todo and not self.stop:
                    self._start_fetchers(nursery, peer, height)
                    syncer._peers = len(self.started)
