"""The attester: votes for the head of this node's fork choice (PROTOCOL §4.4, chain.consensus.finality).

Owns: the loop that, on every chain change, asks `chain.consensus.duties.attestation_for` whether to
vote (Casper-FFG rule: strictly increasing heights, non-decreasing source heights, from the last vote
kept in slashing protection), records the vote (synced, before signing), signs it, adds it to the
chain service's pool and publishes it. Must not: choose the head (the chain service's fork choice
does) or sign a double or surround vote (slashing protection refuses them even if asked).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:  # trio-stubs in this venv hide trio.TaskStatus from mypy
    from trio_typing import TaskStatus

from chain.consensus.duties import attestation_for
from chain.crypto import SecretKey
from chain.header import Attestation
from chain.types import BlockHash
from linguachaind.logsetup import event
from linguachaind.services.chain_service import ChainService
from linguachaind.services.interfaces import Network
from linguachaind.slashing_protection import SlashingProtection

log = logging.getLogger(__name__)


class Attester:
    """Signs attestations with `key` for the chain head. Start with `nursery.start(attester.run)`."""

    def __init__(
        self, chain: ChainService, key: SecretKey, protection: SlashingProtection, network: Network
    ) -> None:
        self.chain = chain
        self._key = key
        self._protection = protection
        self._network = network
        self.attested = 0

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
        if unsigned is None:
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
