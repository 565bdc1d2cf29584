"""The block producer: waits for the VDF of the next height, computes its rank, and when its time
comes assembles, signs, imports and publishes the block (PROTOCOL §4.1-§4.3, ARCHITECTURE §4 step 2).

Owns: the proposal loop over the chain tip (held back while the node is still syncing, or while
its chain does not hold the final block its peers agree on: a node catching up after a partition
must not propose at heights its peers finalised; never at or below its own final height), block
assembly (a TX body from the mempool template, each tx applied to the block's state as it is chosen
so the body is exactly valid; a DATA body from the data-unit selection when the node has one
(`DataBodySource`), a VERSION body from the rounds service's cached result (`VersionBodySource`,
an unscored no-op without one), the header's certificate, state root, PoW and signature, and
recording the signed block in slashing protection before it is stored (marked published once
stored, before it is published; a recorded block that was never stored releases its height).
Must not: decide ranks or timing rules (chain.consensus.duties does), validate (the chain service
imports our own block through the header and body rules before it is published; the transition is
the one assembly ran, handed over, not run twice), or compute the VDF itself.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Final, Protocol

import trio

if TYPE_CHECKING:  # trio-stubs in this venv hide trio.TaskStatus from mypy
    from trio_typing import TaskStatus

from chain import vrf
from chain.block import Block, Body, DataBody, TxBody, VersionBody, body_root
from chain.codec import decode, encode
from chain.consensus.duties import (
    ProposalDuty,
    build_certificate,
    idle_body,
    proposal_duty,
    should_propose,
    unsigned_header,
)
from chain.consensus.election import alpha_for_child
from chain.crypto import SecretKey
from chain.hashing import H
from chain.header import BlockKind, Header, kind_for_height
from chain.signed import unsigned_bytes
from chain.state.transition import BlockEffects, BlockError, apply_block_detailed, apply_tx
from chain.state.txrules import release_unbonding
from chain.state.view import StateOverlay, StateView
from chain.tx import Tx
from chain.types import ZERO_HASH, BlockHash, Hash32, Height, StateRoot
from linguachaind.logsetup import event
from linguachaind.services.chain_service import AddBlockResult, ChainService
from linguachaind.services.interfaces import Clock, MempoolLike, Network
from linguachaind.slashing_protection import SlashingProtection

log = logging.getLogger(__name__)

HEADER_HEADROOM: Final = 1024  # bytes kept free beside the header and the array framing
SYNC_POLL_S: Final = 0.5  # how often a producer held back by sync looks again (besides chain changes)


def always_synced() -> bool:
    return True


def no_peer_final() -> tuple[int, bytes] | None:
    return None


def agreed_final(claims: Collection[tuple[int, bytes]]) -> tuple[int, bytes] | None:
    """The final block (height, hash) at least half of the peers report at or above: the median
    claim, so that one lying peer cannot hold the producer back by claiming a far final height."""
    ordered = sorted(claims, key=lambda c: c[0], reverse=True)
    return ordered[len(ordered) // 2] if ordered else None


class VdfSource(Protocol):
    async def get(self, prev_hash: bytes) -> tuple[bytes, bytes]: ...


class DataBodySource(Protocol):
    """The DATA proposer's selection on a parent state (linguachaind.services.datablocks)."""

    def body(self, reader: StateView) -> DataBody: ...


class VersionBodySource(Protocol):
    """The VERSION body at a height on its parent state (linguachaind.services.rounds)."""

    def body(self, reader: StateView, height: int) -> VersionBody: ...


class Producer:
    """Proposes blocks with `key` whenever it has a rank and its time has come."""

    def __init__(
        self,
        chain: ChainService,
        vdf_source: VdfSource,
        key: SecretKey,
        protection: SlashingProtection,
        clock: Clock,
        network: Network,
        *,
        mempool: MempoolLike | None = None,
        synced: Callable[[], bool] = always_synced,
        data_blocks: DataBodySource | None = None,
        versions: VersionBodySource | None = None,
        peer_final: Callable[[], tuple[int, bytes] | None] = no_peer_final,
    ) -> None:
        """`synced()` says whether the node has caught up with its peers (the daemon passes the
        syncer's status); while it is False the producer proposes nothing: a block on a stale tip
        would only lose fork choice and waste a signature. `peer_final()` is the final block its
        peers agree on (`agreed_final` of their statuses): while the chain does not hold it (behind
        it, or on a branch without it) the producer proposes nothing either."""
        self.chain = chain
        self.params = chain.params
        self._vdf = vdf_source
        self._key = key
        self._protection = protection
        self._clock = clock
        self._network = network
        self._mempool = mempool
        self._synced = synced
        self._peer_final = peer_final
        self._data = data_blocks  # DATA bodies (linguachaind.services.datablocks); None: empty ones
        self._versions = versions  # VERSION bodies (linguachaind.services.rounds); None: no-ops
        self.proposed = 0
        self.waiting_for_sync = False
        self.skipped_txs = 0  # template candidates refused by the state rules (not in any block)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            tip = self.chain.tip_header()
            block: Block | None = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._cancel_when_tip_moves, tip.hash, nursery.cancel_scope)
                block = await self._work_on(tip)
                nursery.cancel_scope.cancel()
            if block is not None:  # outside the scope that our own import (a tip move) cancels
                await self._network.publish_block(block)
            while self.chain.tip_header().hash == tip.hash:  # done with this parent: wait for the next
                await self.chain.wait_change(self.chain.version)

    async def _cancel_when_tip_moves(self, tip_hash: BlockHash, scope: trio.CancelScope) -> None:
        seen = self.chain.version
        while self.chain.tip_header().hash == tip_hash:
            seen = await self.chain.wait_change(seen)
        scope.cancel()

    async def _wait_synced(self) -> None:
        """Return once `synced()` holds (at once, normally). A tip change cancels the wait."""
        while not self._synced() or self.behind_peers_final():
            if not self.waiting_for_sync:  # logged once per sync, not once per imported block
                self.waiting_for_sync = True
                claim = self._peer_final()
                final = claim[0] if claim else "-"
                log.info("%s", event("producer_waiting_for_sync", height=self.chain.height, peer_final=final))
            with trio.move_on_after(SYNC_POLL_S):  # the sync status has no event: poll it
                await self.chain.wait_change(self.chain.version)
        if self.waiting_for_sync:
            self.waiting_for_sync = False
            log.info("%s", event("producer_synced", height=self.chain.height))

    def behind_peers_final(self) -> bool:
        """The main chain does not hold the final block the peers agree on: it is below its height,
        or another block is at that height (a branch the peers finalised against)."""
        claim = self._peer_final()
        if claim is None:
            return False
        height, block_hash = claim
        return self.chain.height < height or self.chain.store.hash_at(height) != block_hash

    async def _work_on(self, parent: Header) -> Block | None:
        """Wait for sync, the VDF and our rank time on `parent`; the imported block to publish, or None."""
        await self._wait_synced()
        output, proof = await self._vdf.get(parent.hash)
        reader = self.chain.state(parent.hash)
        if reader is None:
            return None
        duty = proposal_duty(self.params, parent, reader, output, self._key.pubkey)
        if duty is None or duty.height <= self.chain.store.final_height:
            return None  # never at or below a final height
        await self._clock.sleep_until_ms(duty.not_before_ms)
        await self._wait_synced()  # sync may have started meanwhile
        if not should_propose(duty, self._clock.now_ms(), self.chain.child_ranks(parent.hash)):
            return None
        built = self._build(parent, duty, output, proof)
        if built is None:
            return None
        block, effects = built
        result = self.chain.import_block(block, effects=effects)
        if result not in (AddBlockResult.NEW_TIP, AddBlockResult.SIDE_BLOCK):
            log.error("own block at height %d was not added: %s", block.height, result.name)
            if self.chain.header(block.hash) is None:
                self._protection.release(block.height)  # never stored, never published
            return None
        self._protection.mark_published(block.height)  # stored: from now on it may leave the process
        self.proposed += 1
        log.info(
            "%s", event("block_proposed", height=block.height, hash=block.hash.hex()[:16], rank=duty.rank)
        )
        return block

    def assemble(self, parent: Header, duty: ProposalDuty, output: bytes, proof: bytes) -> Block | None:
        """The signed block for `duty`, or None when slashing protection refuses (synchronous)."""
        built = self._build(parent, duty, output, proof)
        return None if built is None else built[0]

    def _build(
        self, parent: Header, duty: ProposalDuty, output: bytes, proof: bytes
    ) -> tuple[Block, BlockEffects | None] | None:
        """`assemble`, with the block's effects on the parent state (None for a block signed before
        a restart: the chain service applies that one itself)."""
        reader = self.chain.state(parent.hash)
        if reader is None:
            return None
        kind = kind_for_height(duty.height)
        eligible = self.chain.eligible_for(parent.hash) if parent.height > 0 else {}
        cert = build_certificate(self.params, parent, eligible.items(), self.chain.attestations(parent.hash))
        now = self._clock.now_ms()
        draft = unsigned_header(
            self.params,
            parent,
            duty,
            now,
            output,
            proof,
            ZERO_HASH,
            StateRoot(ZERO_HASH),
            cert,
            self._key.pubkey,
            vrf_proof=vrf.prove(self._key.seed, alpha_for_child(self.params.chain_id, parent)),
        )
        body: Body = idle_body(reader, duty.height)
        if kind == BlockKind.TX and self._mempool is not None:
            body = TxBody(tuple(self.tx_template(reader, draft)))
        if kind == BlockKind.DATA and self._data is not None:
            body = self._data.body(reader)
        if kind == BlockKind.VERSION and self._versions is not None:
            body = self._versions.body(reader, duty.height)
        # Signatures: the mempool checked each tx on admission; these effects are the block's import.
        effects = apply_block_detailed(self.params, reader, Block(draft, body), verify_signatures=False)
        if isinstance(effects, BlockError) and isinstance(body, TxBody) and body.txs:
            log.error("tx template does not apply (%s); proposing an empty TX block", _why(effects))
            body = TxBody()
            effects = apply_block_detailed(self.params, reader, Block(draft, body), verify_signatures=False)
        if (
            isinstance(effects, BlockError)
            and not isinstance(body, TxBody)
            and body != idle_body(reader, duty.height)
        ):
            log.error("%s body does not apply (%s); proposing an empty one", kind.name, _why(effects))
            body = idle_body(reader, duty.height)
            effects = apply_block_detailed(self.params, reader, Block(draft, body), verify_signatures=False)
        if isinstance(effects, BlockError):
            log.error("cannot build a block at height %d: %s", duty.height, _why(effects))
            return None
        header = dataclasses.replace(draft, body_root=body_root(body), state_root=effects.state_root).mined(
            self.params.pow_bits_header
        )
        signing_root = Hash32(H(unsigned_bytes(header)))
        # Signed in memory first (Ed25519 is deterministic): the record holds the block itself, in
        # the same synced batch, before the block can be stored or published.
        block = Block(header.signed(self._key), body)
        if not self._protection.record_signed_proposal(duty.height, signing_root, encode(block)):
            again = self._signed_before(parent, duty.height)
            if again is None and self._release_lost(duty.height):
                return self._build(parent, duty, output, proof)
            return None if again is None else (again, None)
        return block, _for_block(effects, Block(draft, body).hash, block)

    def _release_lost(self, height: int) -> bool:
        """Reopen `height` when the block recorded there never reached the block store (a full disk
        failed its store write, a crash came first): it never left this process."""
        raw = self._protection.signed_block(height)
        recorded = None if raw is None else decode(Block, raw)
        if not isinstance(recorded, Block):
            return False
        if self.chain.header(recorded.hash) is not None:
            self._protection.mark_published(height)  # stored before a crash: it may have left
            return False
        return self._protection.release(height)

    def tx_template(self, reader: StateView, draft: Header) -> list[Tx]:
        """The mempool's best txs for the TX block `draft`, each applied (`apply_tx`) to the block's
        state as it is chosen, after the unbonding releases that open the block (PROTOCOL §3.5):
        a tx the pool's coarser view let through (a STAKE on a validator jailed meanwhile, an
        UNSTAKE larger than a slashed stake) is left out instead of invalidating the block, and so is
        FALSE_SCORE evidence this node's rounds cannot prove false beyond the slash tolerance plus
        `score_tolerance_micro` (gossiped evidence against an honest block would invalidate it)."""
        assert self._mempool is not None
        height = Height(draft.height)
        overlay = StateOverlay(reader)
        if release_unbonding(overlay, height) is not None:
            return []  # the block cannot apply at all; assemble reports it

        def accept(tx: Tx) -> bool:
            # FALSE_SCORE evidence only when this node proves it by a margin every honest node agrees on
            code = self.chain.false_score_problem(tx, height, margin=self.params.score_tolerance_micro)
            if code is None:
                code = apply_tx(self.params, overlay, tx, height, verify_signature=False)
            if code is not None:
                self.skipped_txs += 1
                log.info("height %d: pending tx %s left out: %s", height, tx.id.hex()[:16], code.name)
            return code is None

        budget = self.params.max_block_bytes - len(encode(draft)) - HEADER_HEADROOM
        return self._mempool.tx_template(budget, self.params.max_txs_per_block, accept=accept)

    def _signed_before(self, parent: Header, height: int) -> Block | None:
        """The block this key already signed on `parent` at `height` (e.g. before a crash), if it
        was never imported; slashing protection refuses any other one."""
        raw = self._protection.signed_block(height)
        block = None if raw is None else decode(Block, raw)
        if not isinstance(block, Block) or block.header.prev_hash != parent.hash:
            log.warning(
                "slashing protection: already signed another block at height %d; not proposing", height
            )
            return None
        if self.chain.header(block.hash) is not None:
            self._protection.mark_published(height)  # stored before a crash: it may have left
            return None
        log.info("re-using the block signed at height %d before a restart", height)
        return block


def _for_block(effects: BlockEffects, draft_hash: bytes, block: Block) -> BlockEffects:
    """The draft's effects, for the signed block: only the block hash differs (the state does not
    commit to it, so the writes and the state root are the same; reward records name the block)."""
    rewards = tuple(
        dataclasses.replace(r, ref=Hash32(block.hash)) if r.ref == draft_hash else r for r in effects.rewards
    )
    return dataclasses.replace(effects, block_hash=block.hash, rewards=rewards)


def _why(error: BlockError) -> str:
    if error.inner is None:
        return error.code.name
    return f"{error.code.name} (tx {error.tx_index}: {error.inner.name})"
