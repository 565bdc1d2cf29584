"""The chain service: block import, attestation pool, finality, fork choice and reorgs (PROTOCOL §4.4-§4.7).

Owns: the one writer of the block store. `import_block` sequences validation (PROTOCOL §4.7, over
this service as the `ChainView`): header and body rules (chain.consensus.validate_block, which
checks every tx signature of a received block), the state transition on the parent state
(chain.state.transition, signatures not verified again), the state root; then connects to the tip or
keeps a valid side block, tells the mempool, updates finality and fork choice and reorganises
through the store's undo records. It answers an `ImportResult`. It also holds orphans until their
parent arrives and attestations until their block does. Must not: decide consensus rules
(chain.consensus does), sign anything (producer, attester), or talk to the network (callers
publish).

States of blocks other than the tip are views, never copies: a main-chain ancestor's state is the
tip state overlaid with the undo records of the blocks above it; a side block's state is its parent's
state overlaid with its own effects. Everything here is synchronous: in trio nothing interleaves
inside a call, so a state read and the decision made on it always agree. `run` (optional, a trio
service) retries blocks that arrived up to a little ahead of our clock (FUTURE_BLOCK) when their
time comes.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Final, TypeAlias

import trio

import vdf
from chain.block import Block, TxBody, VersionScores
from chain.consensus.certificate import check_attestation
from chain.consensus.election import VdfVerifier
from chain.consensus.finality import finalized_by, vote_source
from chain.consensus.forkchoice import advance_final, choose_head, descends_from
from chain.consensus.scoring import RecomputedScores
from chain.consensus.slashing import ScoreOracle, false_score_problem
from chain.consensus.validation import check_state_root, validate_block
from chain.consensus.validators import source_matches, vote_weights
from chain.errors import ConfigError, ErrorCode, StoreError
from chain.evidence import EvidenceKind
from chain.header import Attestation, Header
from chain.state.model import Checkpoint, RewardReason
from chain.state.transition import BlockEffects, BlockError, apply_block_detailed
from chain.state.view import StateOverlay, StateView
from chain.store.blockstore import BlockStore
from chain.tx import SlashEvidence, Tx
from chain.types import BlockHash, Height, PubKey
from linguachaind.logsetup import event
from linguachaind.services.interfaces import ChainWatcher, Clock, MempoolLike

if TYPE_CHECKING:  # trio-stubs in this venv hide trio.TaskStatus from mypy
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

MAX_ORPHANS: Final = 256
MAX_STATE_DEPTH: Final = 1024  # below the final block: deepest main-chain state rebuilt on request
MAX_FUTURE: Final = 64  # blocks from slightly ahead of our clock, retried when their time comes
MAX_FUTURE_WAIT_MS: Final = 60_000  # blocks further ahead than this are dropped, not kept
MAX_PENDING_ATTESTATIONS: Final = 4096
MAX_REANNOUNCED_VOTES: Final = 1024  # votes re-sent to a new peer (about 4 KB of gossip per 20)


class StateAt(StateOverlay):
    """A state view at `height`: `base` overlaid with `writes` (an undo record or block effects)."""

    def __init__(self, base: StateView, writes: Mapping[bytes, bytes | None], height: int) -> None:
        super().__init__(base)
        self.writes.update(writes)
        self._height = Height(height)


class AddBlockResult(Enum):
    """What `import_block` did with a block that is not invalid (like chia's `AddBlockResult`)."""

    NEW_TIP = "new_tip"  # on the best chain now (connected, or made best by fork choice)
    SIDE_BLOCK = "side_block"  # valid, kept beside the best chain
    ALREADY_KNOWN = "already_known"
    ORPHAN = "orphan"  # its parent is unknown: kept until the parent arrives


# The import check of DATA and VERSION bodies on their parent state (BLOB_MISSING is transient).
LearningCheck: TypeAlias = Callable[[Block, StateView], ErrorCode | None]

# FALSE_SCORE's oracle on the claimed VERSION block's parent state (None: not known here) for
# evidence carried by a block at the given height (rounds.RoundsService.scores_of).
ScoresOf: TypeAlias = Callable[[StateView | None, VersionScores, int], RecomputedScores | ErrorCode | None]

# An `ErrorCode` is an invalid block (FUTURE_BLOCK: too early, kept and retried by `run`).
ImportResult: TypeAlias = AddBlockResult | ErrorCode


@dataclass(frozen=True, slots=True)
class ChainStatistics:
    tip_height: int
    tip_hash: bytes
    final_height: int
    side_blocks: int
    orphans: int
    attestations: int
    imported: int
    rejected: int
    reorgs: int


class ChainService:
    """The node's chain: a `ChainView` for validation and the single writer of `store`."""

    def __init__(
        self,
        store: BlockStore,
        clock: Clock,
        *,
        mempool: MempoolLike | None = None,
        verify_vdf: VdfVerifier = vdf.verify,
        checkpoint: Checkpoint | None = None,
        learning_check: LearningCheck | None = None,
        scores_of: ScoresOf | None = None,
        watchers: Sequence[ChainWatcher] = (),
    ) -> None:
        """`learning_check`: the import check of DATA and VERSION bodies with blobs and background
        results (the rounds service's `check_block`, built before this service); None in tests that
        run without blobs. `scores_of`: FALSE_SCORE's oracle (the rounds service's `scores_of`),
        asked with the claimed block's parent state; None: FALSE_SCORE evidence is BAD_EVIDENCE.
        `watchers` are shown every block header handed to `import_block` (with its result) and every
        vote (the evidence reporter, PROTOCOL §5.3, built before this service)."""
        self._scores_of = scores_of
        self.store = store
        self.params = store.params
        self.clock = clock
        self.mempool = mempool
        self._verify_vdf = verify_vdf
        self.checkpoint = checkpoint  # weak subjectivity (PROTOCOL §5.3): a final block we must have
        if checkpoint is not None:
            have = store.hash_at(checkpoint.height)
            if have is not None and have != checkpoint.block_hash:
                raise ConfigError(
                    f"the chain in this datadir has block {have.hex()} at height {checkpoint.height}, "
                    f"not the checkpoint {checkpoint.block_hash.hex()}: resync from an empty datadir"
                )
        self._headers: dict[BlockHash, Header] = {}  # valid blocks above the final one, main and side
        self._side: dict[BlockHash, Block] = {}
        self._effects: dict[BlockHash, BlockEffects] = {}  # of side blocks, computed at validation
        self._orphans: OrderedDict[BlockHash, Block] = OrderedDict()
        self._future: OrderedDict[BlockHash, Block] = OrderedDict()
        self._future_added = trio.Event()
        self._atts: dict[BlockHash, dict[PubKey, Attestation]] = {}
        self._pending_atts: OrderedDict[bytes, Attestation] = OrderedDict()
        self._eligible: dict[BlockHash, dict[PubKey, int]] = {}
        self._states: dict[BlockHash, StateView] = {}  # cleared whenever the tip moves
        self._version = 0
        self._changed = trio.Event()
        self._imported = self._rejected = self._reorgs = 0
        self._watchers = tuple(watchers)
        self.learning_check = learning_check
        self._load_main_headers()

    def score_oracle(self, height: int) -> ScoreOracle | None:
        """FALSE_SCORE's oracle (`chain.consensus.slashing.ScoreOracle`) for evidence carried by a
        block at `height`, over `scores_of`: the claimed block's parent state is looked up here
        (main chain or side branch; None when unknown or too deep). None without `scores_of`."""
        scores_of = self._scores_of
        if scores_of is None:
            return None

        def oracle(header: Header, claim: VersionScores) -> RecomputedScores | ErrorCode | None:
            return scores_of(self.state(BlockHash(header.prev_hash)), claim, height)

        return oracle

    def false_score_problem(self, tx: Tx, height: int, *, margin: int = 0) -> ErrorCode | None:
        """For a producer choosing txs of its block at `height`: None unless `tx` is FALSE_SCORE
        evidence that this node cannot prove false by `margin` more than the slash tolerance
        (`slashing.false_score_problem`; a node that does not evaluate includes none)."""
        p = tx.payload
        if not isinstance(p, SlashEvidence) or p.evidence.kind != EvidenceKind.FALSE_SCORE:
            return None
        oracle = self.score_oracle(height)
        return false_score_problem(self.params, p.evidence, oracle, margin=margin, follow_unchecked=False)

    def _load_main_headers(self) -> None:
        tip_height = self.store.tip[1]
        for height in range(self.store.final_height, tip_height + 1):
            block = self.store.get_block_at(height)
            if block is None:
                raise StoreError(f"main-chain block {height} missing")
            self._headers[block.hash] = block.header

    # -- ChainView (chain.consensus.validation) ------------------------------------------------

    def header(self, block_hash: BlockHash) -> Header | None:
        """The header of a known valid block (main chain or side), or None."""
        found = self._headers.get(block_hash)
        if found is not None:
            return found
        stored = self.store.get_header(block_hash)
        if stored is not None and self.store.hash_at(stored.height) == block_hash:
            return stored  # a main-chain block at or below the final one
        return None

    def state(self, block_hash: BlockHash) -> StateView | None:
        """The state after the valid block `block_hash`, or None if it cannot be rebuilt."""
        cached = self._states.get(block_hash)
        if cached is not None:
            return cached
        header = self.header(block_hash)
        if header is None:
            return None
        tip_hash, tip_height = self.store.tip
        state: StateView | None
        if block_hash == tip_hash:
            state = self.store.reader()
        elif self.store.hash_at(header.height) == block_hash:
            state = self._main_state(header.height, tip_height)
        else:
            state = self._side_state(block_hash, header)
        if state is not None:
            self._states[block_hash] = state
        return state

    def _side_state(self, block_hash: BlockHash, header: Header) -> StateView | None:
        """A side block's state: the nearest known state below it (its fork point's, rebuilt from
        undo records) with the branch's effects merged in order into one overlay. Iterative and
        flat, so a branch of any length works (issue 10 finding 8: recursion over a 1,000-block
        branch overflowed the stack)."""
        path: list[tuple[BlockHash, Header]] = []
        node, hd = block_hash, header
        while (base := self._states.get(node)) is None and self.store.hash_at(hd.height) != node:
            path.append((node, hd))
            parent = self.header(BlockHash(hd.prev_hash))
            if parent is None:
                return None
            node, hd = BlockHash(hd.prev_hash), parent
        base = base if base is not None else self.state(node)  # on the main chain: no recursion
        for side_hash, side_header in reversed(path):
            effects = self._side_effects(side_hash, base)
            if base is None or effects is None:
                return None
            root, merged = (base.base, dict(base.writes)) if isinstance(base, StateAt) else (base, {})
            merged.update(effects.writes)
            base = StateAt(root, merged, side_header.height)
            self._states[side_hash] = base
        return base

    def final_header(self) -> Header:
        header = self.header(self.final_hash)
        assert header is not None
        return header

    def adopt_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Adopt a weak-subjectivity checkpoint fetched from the configured peers (p2p.checkpoint).

        Raises `ConfigError` when a checkpoint was given (a fetched one never overrides it) or the
        datadir's chain holds another block at that height; from then on validation refuses any
        other block there (`CONFLICTS_WITH_FINAL`), as for a given checkpoint."""
        if self.checkpoint is not None:
            raise ConfigError(
                f"a checkpoint was given ({self.checkpoint.height}): a fetched one never overrides it"
            )
        have = self.store.hash_at(checkpoint.height)
        if have is not None and have != checkpoint.block_hash:
            raise ConfigError(
                f"the chain in this datadir has block {have.hex()} at height {checkpoint.height}, "
                f"not the checkpoint {checkpoint.block_hash.hex()} its peers agree on: resync from an "
                "empty datadir, or give --checkpoint"
            )
        self.checkpoint = checkpoint

    # -- queries -------------------------------------------------------------------------------

    @property
    def final_hash(self) -> BlockHash:
        found = self.store.hash_at(self.store.final_height)
        assert found is not None
        return found

    def tip_header(self) -> Header:
        header = self.header(self.store.tip[0])
        assert header is not None
        return header

    def tip_hash(self) -> BlockHash:
        return self.store.tip[0]

    @property
    def height(self) -> int:
        return self.store.tip[1]

    def reader(self) -> StateView:
        """The tip state."""
        return self.store.reader()

    def child_ranks(self, parent_hash: bytes) -> list[int]:
        """Ranks of the known valid children of `parent_hash` (producer: a lower rank already spoke)."""
        return [h.rank for h in self._headers.values() if h.prev_hash == parent_hash]

    def attestations(self, block_hash: bytes) -> list[Attestation]:
        return list(self._atts.get(BlockHash(block_hash), {}).values())

    def unfinalised_votes(self, limit: int = MAX_REANNOUNCED_VOTES) -> list[Attestation]:
        """The votes we hold for blocks above the final height, highest first (at most `limit`):
        what a peer that was apart may lack; fork choice weighs them (§4.4), and until a child block
        carries them in its `parent_certificate` only gossip does. The daemon re-sends them to each
        new peer (`P2PService.reannounce`)."""
        final = self.store.final_height
        votes = [att for pool in self._atts.values() for att in pool.values() if att.height > final]
        votes.sort(key=lambda att: (-att.height, att.block_hash, att.validator))
        return votes[:limit]

    def eligible_for(self, block_hash: BlockHash) -> dict[PubKey, int]:
        """Validator -> vote weight (bonded stake of the epoch's fixed set, §4.4) at the block's height."""
        found = self._eligible.get(block_hash)
        if found is not None:
            return found
        header = self.header(block_hash)
        parent_state = (
            None if header is None or header.height == 0 else self.state(BlockHash(header.prev_hash))
        )
        if header is None or parent_state is None:
            return {}
        weights = dict(vote_weights(parent_state, header.height))
        self._eligible[block_hash] = weights
        return weights

    def attested_weight(self, block_hash: BlockHash) -> int:
        weights = self.eligible_for(block_hash)
        return sum(weights.get(v, 0) for v in self._atts.get(block_hash, {}))

    def statistics(self) -> ChainStatistics:
        tip_hash, tip_height = self.store.tip
        return ChainStatistics(
            tip_height=tip_height,
            tip_hash=tip_hash,
            final_height=self.store.final_height,
            side_blocks=len(self._side),
            orphans=len(self._orphans),
            attestations=sum(len(v) for v in self._atts.values()),
            imported=self._imported,
            rejected=self._rejected,
            reorgs=self._reorgs,
        )

    # -- waiting -------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Bumped on every change (tip, side block, attestation, finality)."""
        return self._version

    async def wait_change(self, seen_version: int) -> int:
        """Return the current version once it differs from `seen_version`."""
        while self._version == seen_version:
            await self._changed.wait()
        return self._version

    async def wait_height(self, height: int) -> None:
        seen = -1
        while self.height < height:
            seen = await self.wait_change(seen)

    async def wait_final(self, height: int) -> None:
        seen = -1
        while self.store.final_height < height:
            seen = await self.wait_change(seen)

    def _notify(self) -> None:
        self._version += 1
        self._changed.set()
        self._changed = trio.Event()

    # -- block import --------------------------------------------------------------------------

    def import_block(self, block: Block, *, effects: BlockEffects | None = None) -> ImportResult:
        """Validate and add `block` (PROTOCOL §4.7), then finality, fork choice, reorg. `effects`: only
        for this node's own block, which the producer just assembled on its parent state from
        mempool-admitted txs (their signatures verified at admission) and applied there: neither the
        transition nor the signature checks run twice. A received block never comes with effects."""
        stored = self._import_one(block, effects)
        for watcher in self._watchers:
            watcher.saw_header(block.header, stored)
        if stored is not None:
            return stored
        self._adopt_orphans(block.hash)
        self._update_chain()
        self._notify()
        on_best = self.store.hash_at(block.height) == block.hash
        return AddBlockResult.NEW_TIP if on_best else AddBlockResult.SIDE_BLOCK

    def _import_one(self, block: Block, effects: BlockEffects | None = None) -> ImportResult | None:
        """Validate and store `block` (connected to the tip or kept beside it): None once stored;
        fork choice runs after, in `import_block`."""
        block_hash = block.hash
        if self.header(block_hash) is not None:
            return AddBlockResult.ALREADY_KNOWN
        parent_hash = BlockHash(block.header.prev_hash)
        if self.header(parent_hash) is None:
            if block.header.height > self.store.final_height:
                self._orphans[block_hash] = block
                while len(self._orphans) > MAX_ORPHANS:
                    self._orphans.popitem(last=False)
            return AddBlockResult.ORPHAN
        result = self._validate(block, effects)
        wait_ms = block.header.timestamp_ms - self.params.max_future_drift_ms - self.clock.now_ms()
        if (
            result is ErrorCode.FUTURE_BLOCK and wait_ms <= MAX_FUTURE_WAIT_MS
        ):  # transient (§1.3): `run` retries
            self._future[block_hash] = block
            while len(self._future) > MAX_FUTURE:
                self._future.popitem(last=False)
            self._future_added.set()
        if isinstance(result, ErrorCode):
            self._rejected += 1
            log.info(
                "%s",
                event("block_rejected", height=block.height, hash=block_hash.hex()[:16], code=result.name),
            )
            return result
        self._imported += 1
        self._headers[block_hash] = block.header
        if parent_hash == self.store.tip[0]:
            self._connect(block, result)
        else:
            self.store.store_side_block(block)
            self._side[block_hash] = block
            self._effects[block_hash] = result
            log.info("%s", event("side_block", height=block.height, hash=block_hash.hex()[:16]))
        for att in block.header.parent_certificate:  # votes carried by the child (§4.4)
            self._add_attestation(att)
        for key, att in list(self._pending_atts.items()):
            if att.block_hash == block_hash:
                del self._pending_atts[key]
                self._add_attestation(att)
        return None

    def _validate(self, block: Block, effects: BlockEffects | None) -> BlockEffects | ErrorCode:
        """§4.7 in order: header and body rules, the transition on the parent state, the state root."""
        now = self.clock.now_ms()
        oracle = self.score_oracle(block.height)
        own = effects is not None  # assembled here from mempool-admitted txs: signatures checked
        code = validate_block(
            self.params, self, block, now, self._verify_vdf, self.checkpoint, oracle, signatures_checked=own
        )
        if code is not None:
            return code
        if effects is None:
            parent_state = self.state(BlockHash(block.header.prev_hash))
            if parent_state is None:  # a parent too deep below the final block (MAX_STATE_DEPTH)
                return ErrorCode.ORPHAN
            if self.learning_check is not None and not isinstance(block.body, TxBody):
                code = self.learning_check(block, parent_state)  # BLOB_MISSING is transient
                if code is not None:
                    return code
            applied = self._apply(parent_state, block)
            if isinstance(applied, ErrorCode):
                return applied
            effects = applied
        return check_state_root(block, effects.state_root) or effects

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Retry blocks refused as FUTURE_BLOCK once the clock reaches their time minus the drift."""
        task_status.started()
        drift = self.params.max_future_drift_ms
        while True:
            if not self._future:
                await self._future_added.wait()
                self._future_added = trio.Event()
                continue
            due = min(b.header.timestamp_ms for b in self._future.values()) - drift
            await self.clock.sleep_until_ms(due)
            for block_hash, block in list(self._future.items()):
                if block.header.timestamp_ms - drift <= self.clock.now_ms():
                    del self._future[block_hash]
                    self.import_block(block)

    def _apply(self, parent_state: StateView, block: Block) -> BlockEffects | ErrorCode:
        """The transition of a block whose body rules passed (`validate_block` checked every tx
        signature, or the block was validated before): signatures are not verified again."""
        out = apply_block_detailed(self.params, parent_state, block, verify_signatures=False)
        return out.code if isinstance(out, BlockError) else out

    def _adopt_orphans(self, parent_hash: BlockHash) -> None:
        todo = [parent_hash]
        while todo:
            parent = todo.pop()
            for h, orphan in list(self._orphans.items()):
                if orphan.header.prev_hash == parent:
                    del self._orphans[h]
                    if self._import_one(orphan) is None:
                        todo.append(h)

    def _connect(self, block: Block, effects: BlockEffects) -> None:
        self.store.connect_block(block, effects)
        self._states.clear()
        if self.mempool is not None:
            self.mempool.on_block_connected(block, self.store.reader())
        log.info(
            "%s",
            event(
                "block_connected",
                height=block.height,
                hash=block.hash.hex()[:16],
                kind=block.header.kind.name,
                rank=block.header.rank,
                txs=len(getattr(block.body, "txs", ())),
            ),
        )
        for evidence, burned, to_reporter in slashes(effects):  # once per applied slash (issue 15)
            log.info(
                "%s",
                event(
                    "validator_slashed",
                    height=block.height,
                    evidence=evidence.hex()[:16],
                    burned=burned,
                    to_reporter=to_reporter,
                ),
            )

    def _main_state(self, height: int, tip_height: int) -> StateView | None:
        """The state after main-chain block `height`: the tip's, rolled back through the undo records
        of every block above it. Any height from the final block up works, however deep (issue 10
        finding 8: a fixed 1,024-block limit left a longer branch forking deeper unadoptable); below
        the final block (no valid branch forks there) only within `MAX_STATE_DEPTH` of the tip."""
        if height < self.store.final_height and tip_height - height > MAX_STATE_DEPTH:
            return None
        writes: dict[bytes, bytes | None] = {}
        for h in range(tip_height, height, -1):  # lower blocks' undo values win: applied last
            undo = self.store.undo_at(h)
            if undo is None:
                raise StoreError(f"undo record of height {h} missing")
            writes.update(undo)
        return StateAt(self.store.reader(), writes, height)

    def _side_effects(self, block_hash: BlockHash, parent_state: StateView | None) -> BlockEffects | None:
        effects = self._effects.get(block_hash)
        if effects is not None or parent_state is None:
            return effects
        block = self._side.get(block_hash)
        if block is None:
            return None
        result = self._apply(parent_state, block)
        if isinstance(result, ErrorCode):  # validated before: only a bug gets here
            raise StoreError(f"side block {block_hash.hex()} no longer applies: {result.name}")
        self._effects[block_hash] = result
        return result

    # -- attestations and finality (§4.4) ------------------------------------------------------

    def on_attestation(self, att: Attestation) -> ErrorCode | None:
        """Add a gossiped or own vote. None if new and valid; UNKNOWN_BLOCK keeps it until the block."""
        if att.chain_id != self.params.chain_id:
            return ErrorCode.WRONG_CHAIN
        if att.height <= self.store.final_height:
            for watcher in self._watchers:  # not counted, but still evidence (§4.4, issue 10 finding 5)
                watcher.saw_attestation(att, False)
            return ErrorCode.STALE
        if self.header(att.block_hash) is None:
            self._pending_atts[att.id] = att
            while len(self._pending_atts) > MAX_PENDING_ATTESTATIONS:
                self._pending_atts.popitem(last=False)
            for watcher in self._watchers:
                watcher.saw_attestation(att, False)
            return ErrorCode.UNKNOWN_BLOCK
        code = self._add_attestation(att)
        if code is None:
            self._update_chain()
            self._notify()
        return code

    def _add_attestation(self, att: Attestation) -> ErrorCode | None:
        header = self.header(att.block_hash)
        if header is None or header.height != att.height:
            return ErrorCode.BAD_HEIGHT if header is not None else ErrorCode.UNKNOWN_BLOCK
        pool = self._atts.setdefault(BlockHash(att.block_hash), {})
        if att.validator in pool:
            return ErrorCode.ALREADY_KNOWN
        code = check_attestation(self.params.chain_id, att, self.eligible_for(BlockHash(att.block_hash)))
        if code is not None:
            return code
        for watcher in self._watchers:
            watcher.saw_attestation(att, True)
        target_state = self.state(BlockHash(att.block_hash))
        if target_state is None or not source_matches(att, target_state):
            return ErrorCode.BAD_SOURCE  # signed, so evidence above; never counted nor certified
        pool[att.validator] = att
        return None

    def _update_chain(self) -> None:
        """Finality (2-chain Casper-FFG rule, chain.consensus.finality), fork choice preferring the
        highest proven source (§4.5), a reorg if the head moved off the tip, then the final mark."""
        final = self.final_hash
        final_height = self.store.final_height
        for block_hash in self._atts:
            header = self._headers.get(block_hash)
            if header is None or header.height <= final_height + 1:
                continue
            candidate = finalized_by(
                self.params, self._headers, block_hash, self.attested_weight, self.eligible_for
            )
            if candidate is not None:
                final = advance_final(self._headers, final, candidate)
                final_height = self._headers[final].height
        head = choose_head(self._headers, final, self.attested_weight, self._source_height_from(final))
        if head != self.store.tip[0]:
            self._reorg_to(head)
        if final_height > self.store.final_height:
            self.store.set_final(final_height)  # `final` is an ancestor of the head: main chain
            log.info("%s", event("block_final", height=final_height, hash=final.hex()[:16]))
            self._prune_below_final()

    def vote_source_height(self, block_hash: BlockHash) -> int:
        """Height of the justified ancestor a vote for `block_hash` links from (Casper-FFG source)."""
        return self._source_height_from(self.final_hash)(block_hash)

    def _source_height_from(self, final: BlockHash) -> Callable[[BlockHash], int]:
        def source_height(block_hash: BlockHash) -> int:
            source = vote_source(self.params, self._headers, block_hash, self.eligible_for, final)
            header = self.header(source)
            assert header is not None
            return header.height

        return source_height

    def _prune_below_final(self) -> None:
        final_hash, final_height = self.final_hash, self.store.final_height
        keep = {h: hd for h, hd in self._headers.items() if hd.height >= final_height}
        self._headers = {h: hd for h, hd in keep.items() if descends_from(keep, h, final_hash)}
        for h in [h for h in self._side if h not in self._headers]:
            del self._side[h]
            self._effects.pop(h, None)
        self._atts = {h: v for h, v in self._atts.items() if h in self._headers}
        self._eligible = {h: v for h, v in self._eligible.items() if h in self._headers}
        self._states.clear()

    def _reorg_to(self, head: BlockHash) -> None:
        """Roll the store back to the fork point with `head` and connect `head`'s branch (§4.5)."""
        path: list[BlockHash] = []
        node = head
        while self.store.hash_at(self._headers[node].height) != node:
            path.append(node)
            node = BlockHash(self._headers[node].prev_hash)
        old_tip = self.store.tip
        while self.store.tip[0] != node:
            block = self.store.disconnect_tip()
            self._states.clear()
            self._side[block.hash] = block
            if self.mempool is not None:
                self.mempool.on_block_disconnected(block, self.store.reader())
        for block_hash in reversed(path):
            block = self._side.pop(block_hash)
            effects = self._effects.pop(block_hash, None)
            if effects is None or effects.base_root != self.store.state_root:
                applied = self._apply(self.store.reader(), block)
                if isinstance(applied, ErrorCode):
                    raise StoreError(f"reorg: block {block_hash.hex()} no longer applies: {applied.name}")
                effects = applied
            self._connect(block, effects)
        self._reorgs += 1
        log.info(
            "%s",
            event(
                "reorg",
                old_height=old_tip[1],
                old_tip=old_tip[0].hex()[:16],
                new_height=self.store.tip[1],
                new_tip=head.hex()[:16],
                fork_height=self._headers[node].height,
            ),
        )


def slashes(effects: BlockEffects) -> list[tuple[bytes, int, int]]:
    """(evidence id, stake burned, paid to the reporter) of each slash a block applies, from its
    reward records: the state rule runs many times per evidence (admission, template, assembly,
    import, side branches), the block is connected once, so it is logged here."""
    found: dict[bytes, list[int]] = {}
    for r in effects.rewards:
        if r.reason in (RewardReason.SLASH_BURN, RewardReason.SLASH_REPORTER):
            entry = found.setdefault(bytes(r.ref), [0, 0])
            entry[0 if r.reason is RewardReason.SLASH_BURN else 1] += abs(int(r.amount))
    return [(ref, burned, paid) for ref, (burned, paid) in found.items()]
