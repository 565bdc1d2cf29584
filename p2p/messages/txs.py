"""Transaction gossip (PROTOCOL §7.2 `/lc/<chain_id>/tx/1`): the payload is one `chain.tx.Tx` encoding.

Owns: naming its row of `p2p.messages.gossip.GOSSIP_SPECS` (id 60, bound `ChainParams.max_tx_bytes`).
Must not: validate (the node's `GossipValidator.validate_tx` does, through p2p.gossip).
"""

from __future__ import annotations

from typing import Final

from p2p.messages.gossip import GOSSIP_SPECS, GossipKind, GossipSpec

SPEC: Final[GossipSpec] = GOSSIP_SPECS[GossipKind.TX]
