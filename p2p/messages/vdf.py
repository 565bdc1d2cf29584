"""VDF gossip (PROTOCOL §7.2 `/lc/<chain_id>/vdf/1`, §4.2): a proof for the next height.

Owns: id 63 and the size bound of the VDF topic. The wire type is `chain.vdfmsg.VdfProof`
(`[chain_id, challenge, iterations, output, proof]`), re-exported here so the p2p layer has one
name per family. Must not: verify the proof (the vdf package does, through the node's
`GossipValidator.validate_vdf`).
"""

from __future__ import annotations

from chain.header import VDF_OUTPUT_MAX, VDF_PROOF_MAX
from chain.params import ChainParams
from chain.vdfmsg import VdfProof
from p2p.messages.gossip import GossipKind, GossipSpec, register_gossip

__all__ = ["MAX_VDF_BYTES", "SPEC", "VdfProof"]

MAX_VDF_BYTES = 64 + 32 + 16 + VDF_OUTPUT_MAX + VDF_PROOF_MAX + 32


def _max(params: ChainParams) -> int:
    return MAX_VDF_BYTES


SPEC = register_gossip(GossipSpec(63, GossipKind.VDF, "vdf", _max))
