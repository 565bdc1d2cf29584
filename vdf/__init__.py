"""Proof of Time (PROTOCOL §4.2): the only package that uses chiavdf.

Public API (stable; consensus, p2p and the daemon code against it):
- `discriminant(challenge, bits) -> str`: chiavdf's discriminant, cached.
- `prove(challenge, discriminant_bits, iterations) -> (output, proof)`: synchronous, in-process.
- `verify(challenge, discriminant_bits, iterations, output, proof) -> bool`: pure, cached, never raises.
- `VdfProver` / `prove_in_process`: async (trio) proving in a child process, killed at once on cancel.
- `check_vdf_proof(params, msg)` / `make_vdf_proof`: the gossip message `chain.vdfmsg.VdfProof`.

Must not: import p2p, mempool, training or the daemon; know headers or state.
"""

from __future__ import annotations

from vdf.core import FORM_SIZE, GENERATOR, VdfError, discriminant, prove, verify
from vdf.message import check_vdf_proof, make_vdf_proof
from vdf.prover import ProverStatistics, VdfProver, prove_in_process

__all__ = [
    "FORM_SIZE",
    "GENERATOR",
    "ProverStatistics",
    "VdfError",
    "VdfProver",
    "check_vdf_proof",
    "discriminant",
    "make_vdf_proof",
    "prove",
    "prove_in_process",
    "verify",
]
