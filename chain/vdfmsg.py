"""The VDF gossip message: one computed proof serves every node (PROTOCOL §4.2 timelord role, §7.2).

Owns: `VdfProof`, the wire type published on `/lc/<chain_id>/vdf/1` and handed from the VDF service
to the producer. Must not: verify the proof (chain imports no chiavdf; `vdf.check_vdf_proof` does),
or compute the challenge (consensus does: `H(b"LC/vdf/1" || chain_id || prev_hash)`).

The discriminant size is not on the wire: a receiver always uses its own `vdf_discriminant_bits`,
so a message built for other parameters simply fails verification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from chain.codec import U64, ByteLen, encode
from chain.hashing import H
from chain.header import VDF_OUTPUT_MAX, VDF_PROOF_MAX
from chain.types import ChainId, Hash32


@dataclass(frozen=True, slots=True)
class VdfProof:
    """`[chain_id, challenge, iterations, output, proof]`: y and the Wesolowski proof for a challenge."""

    chain_id: ChainId
    challenge: Hash32
    iterations: U64
    output: Annotated[bytes, ByteLen(0, VDF_OUTPUT_MAX)]
    proof: Annotated[bytes, ByteLen(0, VDF_PROOF_MAX)]

    @property
    def id(self) -> Hash32:
        """Message id for gossip de-duplication."""
        return H(encode(self))
