"""Attestation gossip (PROTOCOL §7.2 `/lc/<chain_id>/attest/1`): one `chain.header.Attestation`.

Owns: id 62 and its bound. Must not: validate.
"""

from __future__ import annotations

from chain.params import ChainParams
from p2p.messages.gossip import GossipKind, GossipSpec, register_gossip

MAX_ATTESTATION_BYTES = 512


def _max(params: ChainParams) -> int:
    return MAX_ATTESTATION_BYTES


SPEC = register_gossip(GossipSpec(62, GossipKind.ATTESTATION, "attest", _max))
