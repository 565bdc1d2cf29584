"""Block headers and attestations (PROTOCOL §3.2, §4.4).

Owns: `BlockKind`, `Header`, `Attestation`, their ids, signing and PoW preimages.
Must not: validate against chain state (chain.consensus does).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated

from chain.codec import U8, U32, U64, ByteLen, MaxItems, encode, encode_fields
from chain.crypto import DOMAIN_ATTEST, DOMAIN_HEADER, SecretKey
from chain.hashing import H
from chain.signed import pow_ok, sign_object, solve_pow, verify_object
from chain.types import (
    ZERO_HASH,
    ZERO_SIGNATURE,
    BlockHash,
    ChainId,
    Hash32,
    Height,
    PubKey,
    Signature,
    StateRoot,
    TimestampMs,
)

PROTOCOL_VERSION = 1
VRF_PROOF_BYTES = 80  # chain.vrf.PROOF_BYTES (RFC 9381 ECVRF-EDWARDS25519-SHA512-TAI)
VDF_OUTPUT_MAX = 256
VDF_PROOF_MAX = 2048
MAX_CERTIFICATE = 1024


class BlockKind(IntEnum):
    GENESIS = 0
    TX = 1
    DATA = 2
    VERSION = 3


@dataclass(frozen=True, slots=True)
class Attestation:
    """A validator's Casper-FFG vote (§4.4): target `block_hash` at `height`, linked from its source,
    the highest justified ancestor the voter knows (`source_height`, `source_hash`). Signing the
    source makes surround votes provable (SURROUND_VOTE evidence, §5.3)."""

    chain_id: ChainId
    height: Height
    block_hash: BlockHash
    source_height: Height
    source_hash: BlockHash
    validator: PubKey
    signature: Signature = ZERO_SIGNATURE

    @property
    def id(self) -> Hash32:
        return H(encode(self))

    def signed(self, key: SecretKey) -> Attestation:
        if key.pubkey != self.validator:
            raise ValueError("attestation signed with a key that is not its validator's")
        return sign_object(self, key, DOMAIN_ATTEST)

    def signature_valid(self) -> bool:
        return verify_object(self, self.validator, DOMAIN_ATTEST)


@dataclass(frozen=True, slots=True)
class Header:
    version: U8
    chain_id: ChainId
    height: Height
    kind: BlockKind
    prev_hash: BlockHash
    timestamp_ms: TimestampMs
    proposer: PubKey
    rank: U32
    vdf_output: Annotated[bytes, ByteLen(0, VDF_OUTPUT_MAX)]
    vdf_proof: Annotated[bytes, ByteLen(0, VDF_PROOF_MAX)]
    body_root: Hash32
    state_root: StateRoot
    parent_certificate: Annotated[tuple[Attestation, ...], MaxItems(MAX_CERTIFICATE)]
    # The proposer's RFC 9381 VRF proof over the parent's seed and the height, and the seed it gives
    # (chain.consensus.election: next leader orders derive from it). Empty / zero in the genesis.
    vrf_proof: Annotated[bytes, ByteLen(0, VRF_PROOF_BYTES)] = b""
    seed: Hash32 = ZERO_HASH
    pow_nonce: U64 = 0
    signature: Signature = ZERO_SIGNATURE

    @property
    def hash(self) -> BlockHash:
        return BlockHash(H(encode(self)))

    def pow_preimage(self) -> bytes:
        """Every field before `pow_nonce` (the nonce and signature are excluded)."""
        return encode_fields(self, 15)

    def pow_valid(self, bits: int) -> bool:
        return pow_ok(self.pow_preimage(), self.pow_nonce, bits)

    def mined(self, bits: int) -> Header:
        return dataclasses.replace(self, pow_nonce=solve_pow(self.pow_preimage(), bits))

    def signed(self, key: SecretKey) -> Header:
        if key.pubkey != self.proposer:
            raise ValueError("header signed with a key that is not its proposer's")
        return sign_object(self, key, DOMAIN_HEADER)

    def signature_valid(self) -> bool:
        return verify_object(self, self.proposer, DOMAIN_HEADER)


def kind_for_height(height: int) -> BlockKind:
    """PROTOCOL §4.1: (TX, DATA, VERSION) in a fixed cycle from height 1; height 0 is GENESIS."""
    if height == 0:
        return BlockKind.GENESIS
    return (BlockKind.TX, BlockKind.DATA, BlockKind.VERSION)[(height - 1) % 3]


def round_for_height(height: int) -> int:
    return 0 if height == 0 else (height - 1) // 3
