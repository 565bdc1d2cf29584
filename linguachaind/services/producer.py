"""The block producer: waits for the VDF of the next height, computes its rank, and when its time
comes assembles, signs, imports and publishes the block (PROTOCOL §4.1-§4.3, ARCHITECTURE §4 step 2).

Owns: the proposal loop over the chain tip, block assembly (a TX body from the mempool template; DATA
and VERSION blocks carry empty/no-op bodies until the federated-learning issue fills them), the
header's certificate, state root, PoW and signature, and asking slashing protection before signing.
Must not: decide ranks or timing rules (chain.consensus.duties does), validate (the chain service
imports our own block through full validation before it is published), or compute the VDF itself.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Final, Protocol

import trio

if TYPE_CHECKING:  # trio-stubs in this venv hide trio.TaskStatus from mypy
    from trio_typing import TaskStatus

from chain.block import Block, Body, DataBody, QualityReport, TxBody, VersionBody, body_root
from chain.codec import decode, encode
from chain.consensus.duties import (
    ProposalDuty,
    build_certificate,
    proposal_duty,
    should_propose,
    unsigned_header,
)
from chain.crypto import SecretKey
from chain.errors import ErrorCode
from chain.hashing import H
from chain.header import BlockKind, Header, kind_for_height, round_for_height
from chain.signed import unsigned_bytes
from chain.state.model import StateReader
from chain.state.transition import apply_block
from chain.types import ZERO_HASH, BlockHash, Hash32, StateRoot
from linguachaind.logsetup import event
from linguachaind.services.chain_service import ChainService
from linguachaind.services.interfaces import Clock, MempoolLike, Network
from linguachaind.slashing_protection import SlashingProtection

log = logging.getLogger(__name__)

HEADER_HEADROOM: Final = 1024  # bytes kept free beside the header and the array framing


class VdfSource(Protocol):
    async def get(self, prev_hash: bytes) -> tuple[bytes, bytes]: ...


def empty_body(kind: BlockKind, reader: StateReader, height: int) -> Body:
    """The body of a DATA or VERSION block with nothing selected: no units, a no-op version (§6.4,
    §6.5). The federated-learning issue replaces this with real selection and aggregation."""
    if kind == BlockKind.DATA:
        return DataBody(unit_ids=(), report=QualityReport(0, 0, 0, 0, 0, 0, 0, ZERO_HASH))
    model = reader.model_version()
    return VersionBody(
        round=round_for_height(height),  # type: ignore[arg-type]
        base_version_id=model.version_id,
        units=(),
        aggregation_rule=reader.params.aggregation_rule,
        new_adapter_blob_hash=model.adapter_blob_hash,
        per_batch_scores=(),
        total_score=model.score,
        previous_score=model.score,
    )


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
    ) -> None:
        self.chain = chain
        self.params = chain.params
        self._vdf = vdf_source
        self._key = key
        self._protection = protection
        self._clock = clock
        self._network = network
        self._mempool = mempool
        self.proposed = 0

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

    async def _work_on(self, parent: Header) -> Block | None:
        """Wait for the VDF and our rank time on `parent`; the imported block to publish, or None."""
        output, proof = await self._vdf.get(parent.hash)
        reader = self.chain.state(parent.hash)
        if reader is None:
            return None
        duty = proposal_duty(self.params, parent, reader, output, self._key.pubkey)
        if duty is None:
            return None
        await self._clock.sleep_until_ms(duty.not_before_ms)
        if not should_propose(duty, self._clock.now_ms(), self.chain.child_ranks(parent.hash)):
            return None
        block = self.assemble(parent, duty, output, proof)
        if block is None:
            return None
        code = self.chain.import_block(block)
        if code is not None:
            log.error("own block at height %d was rejected: %s", block.height, code.name)
            return None
        self.proposed += 1
        log.info(
            "%s", event("block_proposed", height=block.height, hash=block.hash.hex()[:16], rank=duty.rank)
        )
        return block

    def assemble(self, parent: Header, duty: ProposalDuty, output: bytes, proof: bytes) -> Block | None:
        """The signed block for `duty`, or None when slashing protection refuses (synchronous)."""
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
        )
        body: Body = empty_body(kind, reader, duty.height) if kind != BlockKind.TX else TxBody()
        if kind == BlockKind.TX and self._mempool is not None:
            budget = self.params.max_block_bytes - len(encode(draft)) - HEADER_HEADROOM
            body = TxBody(tuple(self._mempool.tx_template(budget, self.params.max_txs_per_block)))
        effects = apply_block(self.params, reader, Block(draft, body))
        if isinstance(effects, ErrorCode) and isinstance(body, TxBody) and body.txs:
            log.warning("tx template does not apply (%s); proposing an empty TX block", effects.name)
            body = TxBody()
            effects = apply_block(self.params, reader, Block(draft, body))
        if isinstance(effects, ErrorCode):
            log.error("cannot build a block at height %d: %s", duty.height, effects.name)
            return None
        header = dataclasses.replace(draft, body_root=body_root(body), state_root=effects.state_root).mined(
            self.params.pow_bits_header
        )
        signing_root = Hash32(H(unsigned_bytes(header)))
        if not self._protection.record_proposal(duty.height, signing_root):
            return self._signed_before(parent, duty.height)
        block = Block(header.signed(self._key), body)
        self._protection.remember_signed_block(duty.height, encode(block))
        return block

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
            return None
        log.info("re-using the block signed at height %d before a restart", height)
        return block
