"""Gossip topics and their payload specs (PROTOCOL §7.2).

Owns: `GossipKind` and `GOSSIP_SPECS`, the one literal table of topics: each kind's type id, topic
name `/lc/<chain_id>/<name>/1` and payload bound. A gossip payload carries no id prefix: the topic
names its type. Must not: validate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Final

from chain.header import VDF_OUTPUT_MAX, VDF_PROOF_MAX
from chain.params import ChainParams


class GossipKind(Enum):
    TX = "tx"
    BLOCK = "block"
    ATTESTATION = "attest"
    VDF = "vdf"


@dataclass(frozen=True, slots=True)
class GossipSpec:
    type_id: int  # stable numeric id of the payload type (PROTOCOL §7.2)
    kind: GossipKind
    name: str
    max_bytes: Callable[[ChainParams], int]

    def topic(self, chain_id: str) -> str:
        return f"/lc/{chain_id}/{self.name}/1"


def _tx_bytes(params: ChainParams) -> int:
    return int(params.max_tx_bytes)


def _block_bytes(params: ChainParams) -> int:
    return int(params.max_block_bytes)


MAX_ATTESTATION_BYTES: Final = 512
MAX_VDF_BYTES: Final = 64 + 32 + 16 + VDF_OUTPUT_MAX + VDF_PROOF_MAX + 32

# The one table of gossip topics: type id (60-79, beside the request-response ids of p2p.messages),
# kind, topic name and payload bound. The family modules (txs, blocks, attestations, vdf) document
# each payload and name their row.
GOSSIP_SPECS: Final[Mapping[GossipKind, GossipSpec]] = MappingProxyType(
    {
        GossipKind.TX: GossipSpec(60, GossipKind.TX, "tx", _tx_bytes),
        GossipKind.BLOCK: GossipSpec(61, GossipKind.BLOCK, "block", _block_bytes),
        GossipKind.ATTESTATION: GossipSpec(
            62, GossipKind.ATTESTATION, "attest", lambda _: MAX_ATTESTATION_BYTES
        ),
        GossipKind.VDF: GossipSpec(63, GossipKind.VDF, "vdf", lambda _: MAX_VDF_BYTES),
    }
)


def topic_for(kind: GossipKind, chain_id: str) -> str:
    return GOSSIP_SPECS[kind].topic(chain_id)


def all_specs() -> dict[GossipKind, GossipSpec]:
    """Every gossip spec (a copy of `GOSSIP_SPECS`)."""
    return dict(GOSSIP_SPECS)
