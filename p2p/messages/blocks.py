"""Block gossip (PROTOCOL §7.2 `/lc/<chain_id>/block/1`): the payload is one `chain.block.Block`
encoding. Blocks carry unit ids, never blobs (blobs travel on `/blob/1`).

Owns: naming its row of `p2p.messages.gossip.GOSSIP_SPECS` (id 61, bound `ChainParams.max_block_bytes`).
Must not: validate.
"""

from __future__ import annotations

from typing import Final

from p2p.messages.gossip import GOSSIP_SPECS, GossipKind, GossipSpec

SPEC: Final[GossipSpec] = GOSSIP_SPECS[GossipKind.BLOCK]
