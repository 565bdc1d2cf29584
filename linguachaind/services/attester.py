"""The attester: votes for the head of this node's fork choice (PROTOCOL §4.4, chain.consensus.finality).

Owns: the loop that, on every chain change, asks `chain.consensus.duties.attestation_for` whether to
vote (Casper-FFG rule: strictly increasing heights, non-decreasing source heights, from the last vote
kept in slashing protection) and, for a scored VERSION head, the rounds service whether this
validator's VDF-assigned score batches agree with the claim (PROTOCOL §6.5, `RoundsService.may_attest`),
records the vote (synced, before signing), signs it, adds it to the chain service's pool and
publishes it. Must not: choose the head (the chain service's fork choice does), score anything
itself, or sign a double or surround vote (slashing protection refuses them even if asked).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias

import trio

if TYPE_CHECKING:  # trio-stubs in this venv hide trio.TaskStatus from mypy
    from trio_typing import TaskStatus

from chain.block import Block
from chain.consensus.duties import attestation_for
from chain.consensus.validators import vote_weights
from chain.crypto import SecretKey
from chain.header import Attestation
from chain.state.view import StateView
from chain.types import BlockHash, PubKey
from linguachaind.logsetup import event
from linguachaind.services.chain_service import ChainService
from linguachaind.services.interfaces import Network
from linguachaind.slashing_protection import SlashingProtection

log = logging.getLogger(__name__)

# (head block, its parent's state, this validator, the validators voting at its height) -> may vote
ScoreCheck: TypeAlias = Callable[[Block, StateView, PubKey, Sequence[PubKey]], bool]


class Attester:
    """Signs attestations with `key` for the chain head. Start with `nursery.start(attester.run)`."""

    def __init__(
        self,
        chain: ChainService,
        key: SecretKey,
        protection: SlashingProtection,
        network: Network,
        *,
        score_check: ScoreCheck | None = None,
    ) -> None:
        """`score_check`: the rounds service's `may_attest` (None: no scored VERSION blocks to
        check, as in tests without learning)."""
        self.chain = chain
        self._key = key
        self._protection = protection
        self._network = network
        self._score_check = score_check
        self.attested = 0
        self.withheld = 0  # votes not cast because the head's assigned score batches disagreed

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        seen = -1
        while True:
            seen = await self.chain.wait_change(seen)
            att = self.attest_head()
            if att is not None:
                await self._network.publish_attestation(att)

    def attest_head(self) -> Attestation | None:
        """Sign and pool a vote for the current head if due (synchronous); the vote, or None."""
        head = self.chain.tip_header()
        if head.height == 0:
            return None
        parent_state = self.chain.state(BlockHash(head.prev_hash))
        head_state = self.chain.state(head.hash)
        if parent_state is None or head_state is None:
            return None
        last_height, last_source = self._protection.last_vote()
        unsigned = attestation_for(  # signs the source the head's chain proves justified (§4.4)
            self.chain.params,
            head,
            parent_state,
            head_state,
            self._key.pubkey,
            last_height=last_height,
            last_source_height=last_source,
        )
        if unsigned is None or not self._scores_agree(head.hash, parent_state):
            return None
        source = unsigned.source_height
        if not self._protection.record_attestation(unsigned.height, unsigned.block_hash, source):
            return None
        att = unsigned.signed(self._key)
        code = self.chain.on_attestation(att)
        if code is not None:
            log.warning("own attestation at height %d refused by the chain: %s", att.height, code.name)
        self.attested += 1
        log.info("%s", event("attested", height=att.height, hash=att.block_hash.hex()[:16]))
        return att

    def _scores_agree(self, head_hash: BlockHash, parent_state: StateView) -> bool:
        """PROTOCOL §6.5: a scored VERSION head is attested only if this validator's assigned
        batches agree (both adapters within `score_tolerance_micro`); other heads always."""
        if self._score_check is None:
            return True
        block = self.chain.store.get_block(head_hash)
        if block is None:
            return False
        attesters = [k for k, w in vote_weights(parent_state, block.height) if w > 0]
        if self._score_check(block, parent_state, self._key.pubkey, attesters):
            return True
        self.withheld += 1
        log.info("%s", event("attestation_withheld", height=block.height, hash=head_hash.hex()[:16]))
        return False
