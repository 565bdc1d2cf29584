"""Transaction gossip (PROTOCOL §7.2 `/lc/<chain_id>/tx/1`): the payload is one `chain.tx.Tx` encoding.

Owns: id 60 and the payload bound (`ChainParams.max_tx_bytes`). Must not: validate (the node's
`GossipValidator.validate_tx` does, through p2p.gossip).
"""

from __future__ import annotations

from chain.params import ChainParams
from p2p.messages.gossip import GossipKind, GossipSpec, register_gossip


def _max(params: ChainParams) -> int:
    return int(params.max_tx_bytes)


SPEC = register_gossip(GossipSpec(60, GossipKind.TX, "tx", _max))
