"""Attestation gossip (PROTOCOL §7.2 `/lc/<chain_id>/attest/1`): one `chain.header.Attestation`.

Owns: naming its row of `p2p.messages.gossip.GOSSIP_SPECS` (id 62, bound `MAX_ATTESTATION_BYTES`).
Must not: validate.
"""

from __future__ import annotations

from typing import Final

from p2p.messages.gossip import GOSSIP_SPECS, MAX_ATTESTATION_BYTES, GossipKind, GossipSpec

__all__ = ["MAX_ATTESTATION_BYTES", "SPEC"]

SPEC: Final[GossipSpec] = GOSSIP_SPECS[GossipKind.ATTESTATION]
