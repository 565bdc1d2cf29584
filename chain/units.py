"""Data units (test data, PROTOCOL §3.3) and learning units (model updates, §3.4).

Owns: the two commitment types, their ids, PoW preimage and required difficulty. Must not: read
blobs (the blob store does) or check body rules (the federated-learning rules do).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Self

from chain.codec import U32, U64, encode, encode_fields
from chain.hashing import H
from chain.params import ChainParams
from chain.signed import pow_ok, solve_pow
from chain.types import BlobHash, ChainId, Hash32, Micro, PubKey, TimestampMs, UnitId


class DataFormat(IntEnum):
    JSONL_TEXT = 1  # {"text": ...} per line
    JSONL_PROMPT_COMPLETION = 2  # {"prompt": ..., "completion": ...} per line


class Encryption(IntEnum):
    PLAINTEXT = 0
    CKKS = 1  # an encrypted cohort's unit (PROTOCOL §6.6)


def unit_pow_bits(params: ChainParams, byte_size: int) -> int:
    """Required PoW bits: a base plus a step per started MiB of blob (PROTOCOL §4.6)."""
    mib = (byte_size + (1 << 20) - 1) >> 20
    return params.pow_bits_unit_base + params.pow_bits_unit_per_mib * mib


class _MinedUnit:
    """Id and proof of work shared by both unit kinds; `pow_nonce` is the last of `POW_FIELDS + 1`."""

    __slots__ = ()
    POW_FIELDS: ClassVar[int]
    byte_size: int
    pow_nonce: int

    @property
    def id(self) -> UnitId:
        return UnitId(H(encode(self)))

    def pow_preimage(self) -> bytes:
        return encode_fields(self, self.POW_FIELDS)

    def pow_valid(self, params: ChainParams) -> bool:
        return pow_ok(self.pow_preimage(), self.pow_nonce, unit_pow_bits(params, self.byte_size))

    def mined(self, params: ChainParams) -> Self:
        nonce = solve_pow(self.pow_preimage(), unit_pow_bits(params, self.byte_size))
        return dataclasses.replace(self, pow_nonce=nonce)  # type: ignore[type-var]


@dataclass(frozen=True, slots=True)
class DataUnit(_MinedUnit):
    chain_id: ChainId
    author: PubKey
    blob_hash: BlobHash
    n_examples: U32
    byte_size: U32
    format: DataFormat
    task: U32  # task id; 0 = general language modelling
    created_ms: TimestampMs
    pow_nonce: U64

    POW_FIELDS: ClassVar[int] = 8


@dataclass(frozen=True, slots=True)
class LearningUnit(_MinedUnit):
    chain_id: ChainId
    author: PubKey
    base_version_id: Hash32
    adapter_blob_hash: BlobHash
    n_examples: U32
    train_loss_micro: Micro
    dp_epsilon_micro: U64  # 0 = no differential privacy
    encryption: Encryption
    byte_size: U32  # size of the adapter blob (prices the PoW, bounds the download)
    created_ms: TimestampMs
    pow_nonce: U64

    POW_FIELDS: ClassVar[int] = 10
