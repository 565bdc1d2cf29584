"""Block gossip (PROTOCOL §7.2 `/lc/<chain_id>/block/1`): the payload is one `chain.block.Block`
encoding. Blocks carry unit ids, never blobs (blobs travel on `/blob/1`).

Owns: id 61 and the payload bound (`ChainParams.max_block_bytes`). Must not: validate.
"""

from __future__ import annotations

from chain.params import ChainParams
from p2p.messages.gossip import GossipKind, GossipSpec, register_gossip


def _max(params: ChainParams) -> int:
    return int(params.max_block_bytes)


SPEC = register_gossip(GossipSpec(61, GossipKind.BLOCK, "block", _max))
