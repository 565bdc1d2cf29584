"""VDF gossip (PROTOCOL §7.2 `/lc/<chain_id>/vdf/1`, §4.2): a proof for the next height.

Owns: naming its row of `p2p.messages.gossip.GOSSIP_SPECS` (id 63, bound `MAX_VDF_BYTES`). The wire
type is `chain.vdfmsg.VdfProof` (`[chain_id, challenge, iterations, output, proof]`), re-exported
here so the p2p layer has one name per family. Must not: verify the proof (the vdf package does,
through the node's `GossipValidator.validate_vdf`).
"""

from __future__ import annotations

from typing import Final

from chain.vdfmsg import VdfProof
from p2p.messages.gossip import GOSSIP_SPECS, MAX_VDF_BYTES, GossipKind, GossipSpec

__all__ = ["MAX_VDF_BYTES", "SPEC", "VdfProof"]

SPEC: Final[GossipSpec] = GOSSIP_SPECS[GossipKind.VDF]
