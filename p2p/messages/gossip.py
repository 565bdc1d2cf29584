"""Gossip topics and their payload specs (PROTOCOL §7.2).

Owns: `GossipKind`, the topic name `/lc/<chain_id>/<name>/1` and the size bound of each kind's
payload. A gossip payload carries no id prefix: the topic names its type. Must not: validate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from chain.params import ChainParams


class GossipKind(Enum):
    TX = "tx"
    BLOCK = "block"
    ATTESTATION = "attest"
    VDF = "vdf"


@dataclass(frozen=True, slots=True)
class GossipSpec:
    msg_id: int
    kind: GossipKind
    name: str
    max_bytes: Callable[[ChainParams], int]

    def topic(self, chain_id: str) -> str:
        return f"/lc/{chain_id}/{self.name}/1"


GOSSIP_SPECS: dict[GossipKind, GossipSpec] = {}


def register_gossip(spec: GossipSpec) -> GossipSpec:
    if spec.kind in GOSSIP_SPECS or any(s.msg_id == spec.msg_id for s in GOSSIP_SPECS.values()):
        raise ValueError(f"gossip spec {spec.name} registered twice")
    GOSSIP_SPECS[spec.kind] = spec
    return spec


def topic_for(kind: GossipKind, chain_id: str) -> str:
    return all_specs()[kind].topic(chain_id)


def all_specs() -> dict[GossipKind, GossipSpec]:
    """Every gossip spec, with each family module imported (and so registered)."""
    from p2p.messages import attestations, blocks, txs, vdf  # noqa: F401

    return dict(GOSSIP_SPECS)
