"""Checks and builders for the VDF gossip message `chain.vdfmsg.VdfProof` (PROTOCOL §4.2, §7.2).

Owns: `check_vdf_proof` (what the gossip validator and the VDF service run on a received proof) and
`make_vdf_proof`. Must not: compute challenges (consensus does) or talk to the network.
"""

from __future__ import annotations

from chain.errors import ErrorCode
from chain.params import ChainParams
from chain.types import Hash32
from chain.vdfmsg import VdfProof
from vdf.core import verify


def check_vdf_proof(
    params: ChainParams, msg: VdfProof, expected_challenge: bytes | None = None
) -> ErrorCode | None:
    """None if `msg` is a valid proof for this chain's VDF parameters (and for `expected_challenge`
    when given), else the error code. Cheap checks first; the verify itself is cached."""
    if msg.chain_id != params.chain_id:
        return ErrorCode.WRONG_CHAIN
    if expected_challenge is not None and msg.challenge != expected_challenge:
        return ErrorCode.STALE  # transient: a proof for another parent, maybe a fork we do not follow
    if msg.iterations != params.vdf_iterations:
        return ErrorCode.BAD_VDF
    if not verify(msg.challenge, params.vdf_discriminant_bits, msg.iterations, msg.output, msg.proof):
        return ErrorCode.BAD_VDF
    return None


def make_vdf_proof(params: ChainParams, challenge: bytes, output: bytes, proof: bytes) -> VdfProof:
    return VdfProof(
        chain_id=params.chain_id,
        challenge=Hash32(bytes(challenge)),
        iterations=params.vdf_iterations,
        output=output,
        proof=proof,
    )
