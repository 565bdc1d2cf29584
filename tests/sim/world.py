"""Building blocks for consensus tests: validator states, a dict `ChainView`, VDFs, header builders.

Owns: helpers shared by tests/unit/test_consensus_*.py and the in-process simulation
(tests/sim/network.py). Must not: hold assertions of any one test.

VDF: `REAL_VDF` is the project's `vdf.prove`/`vdf.verify` (chiavdf). `FAKE_VDF` is a deterministic
stand-in (y = H(challenge, bits, iterations), empty-ish proof) used only where the VDF is not the
subject and speed matters: the 200-schedule random simulation. Every scenario test and every
header-validation test uses the real one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import vdf
from chain import vrf
from chain.block import Body, TxBody, body_root
from chain.consensus.duties import proposal_duty, unsigned_header
from chain.consensus.election import alpha_for_child, challenge_for_child, eligible_validators, leader_ranks
from chain.crypto import SecretKey, account_id
from chain.hashing import H, H_many
from chain.header import PROTOCOL_VERSION, Attestation, BlockKind, Header
from chain.params import DEVNET, ChainParams
from chain.state.epochs import genesis_sets
from chain.state.model import Account, StakeRecord, StateReader, ValidatorRecord
from chain.state.view import MemoryState, StateOverlay, StateView
from chain.types import (
    ZERO_PUBKEY,
    Amount,
    BlockHash,
    Height,
    Nonce,
    PubKey,
    StateRoot,
    TimestampMs,
)

PARAMS = DEVNET
T0 = 1_700_000_000_000
KEYS = [SecretKey.from_label(f"sim-validator-{i}") for i in range(8)]
STAKE = 100 * 10**8

Prove = Callable[[bytes, int, int], tuple[bytes, bytes]]
Verify = Callable[[bytes, int, int, bytes, bytes], bool]


@dataclass(frozen=True)
class VdfImpl:
    prove: Prove
    verify: Verify


def _fake_prove(challenge: bytes, bits: int, iterations: int) -> tuple[bytes, bytes]:
    y = H_many(b"LC/test-vdf/1", challenge, bits.to_bytes(2, "big"), iterations.to_bytes(8, "big"))
    return y, H(y)


def _fake_verify(challenge: bytes, bits: int, iterations: int, output: bytes, proof: bytes) -> bool:
    return (output, proof) == _fake_prove(challenge, bits, iterations)


REAL_VDF = VdfImpl(vdf.prove, vdf.verify)
FAKE_VDF = VdfImpl(_fake_prove, _fake_verify)


def validator_state(
    params: ChainParams,
    stakes: Sequence[tuple[PubKey, int]],
    *,
    height: int = 0,
    reputation: Mapping[PubKey, int] | None = None,
    jailed_until: Mapping[PubKey, int] | None = None,
    mature_height: Mapping[PubKey, int] | None = None,
    funded: Mapping[PubKey, int] | None = None,
) -> MemoryState:
    """A state holding self-staked validators (owner = the validator key's account), and the
    `funded` keys' accounts with those balances (e.g. a reporter that pays evidence fees)."""
    base = MemoryState(params, Height(height))
    ov = StateOverlay(base)
    for pk, balance in (funded or {}).items():
        ov.set_account(account_id(pk), Account(Amount(balance), Nonce(0)))
    for pk, amount in stakes:
        owner = account_id(pk)
        mature = Height((mature_height or {}).get(pk, 0))
        ov.set_stake(owner, pk, StakeRecord(owner, pk, Amount(amount), mature))
        ov.set_validator(
            ValidatorRecord(
                pubkey=pk,
                stake_total=Amount(amount),
                reputation=(reputation or {}).get(pk, params.reputation_start),
                jailed_until=Height((jailed_until or {}).get(pk, 0)),
                last_proposed=Height(0),
            )
        )
    for which, vset in genesis_sets(ov).items():
        ov.set_validator_set(which, vset)
    base.apply(ov.writes, Height(height))
    return base


def genesis_like(params: ChainParams, state: StateReader, timestamp_ms: int = T0) -> Header:
    root = state.state_root if isinstance(state, MemoryState) else StateRoot(b"\x00" * 32)
    return Header(
        version=PROTOCOL_VERSION,
        chain_id=params.chain_id,
        height=Height(0),
        kind=BlockKind.GENESIS,
        prev_hash=BlockHash(H(b"sim-genesis")),
        timestamp_ms=TimestampMs(timestamp_ms),
        proposer=ZERO_PUBKEY,
        rank=0,
        vdf_output=b"",
        vdf_proof=b"",
        body_root=body_root(TxBody()),
        state_root=root,
        parent_certificate=(),
    )


@dataclass
class MemoryView:
    """A `ChainView` over dicts: headers and states of valid blocks, and the last final block."""

    headers: dict[BlockHash, Header] = field(default_factory=dict)
    states: dict[BlockHash, StateView] = field(default_factory=dict)
    final: BlockHash = BlockHash(b"")  # noqa: RUF009 - NewType call is free

    @classmethod
    def from_genesis(cls, genesis: Header, state: StateView) -> MemoryView:
        return cls({genesis.hash: genesis}, {genesis.hash: state}, genesis.hash)

    def header(self, block_hash: BlockHash) -> Header | None:
        return self.headers.get(block_hash)

    def state(self, block_hash: BlockHash) -> StateView | None:
        return self.states.get(block_hash)

    def final_header(self) -> Header:
        return self.headers[self.final]

    def add(self, header: Header, state: StateView, block_hash: BlockHash | None = None) -> None:
        h = block_hash if block_hash is not None else header.hash
        self.headers[h] = header
        self.states[h] = state


def key_of(pubkey: PubKey) -> SecretKey:
    for k in KEYS:
        if k.pubkey == pubkey:
            return k
    raise KeyError(pubkey.hex())


def vrf_proof_for(params: ChainParams, parent: Header, key: SecretKey) -> bytes:
    """The VRF proof `key` puts in its child of `parent` (what the daemon's producer computes)."""
    return vrf.prove(key.seed, alpha_for_child(params.chain_id, parent))


def vdf_for(params: ChainParams, parent: Header, impl: VdfImpl) -> tuple[bytes, bytes]:
    challenge = challenge_for_child(params.chain_id, parent)
    return impl.prove(challenge, params.vdf_discriminant_bits, params.vdf_iterations)


def child_header(
    params: ChainParams,
    parent: Header,
    parent_state: StateReader,
    impl: VdfImpl,
    *,
    rank: int = 0,
    body: Body | None = None,
    certificate: tuple[Attestation, ...] = (),
    state_root: StateRoot | None = None,
    delay_ms: int = 0,
    sign: bool = True,
    **overrides: object,
) -> Header:
    """A valid (mined, signed) header by the validator of `rank` on top of `parent`.

    `overrides` replace header fields before mining and signing (to build invalid ones).
    """
    y, proof = vdf_for(params, parent, impl)
    ranks = leader_ranks(y, eligible_validators(parent_state, parent.height + 1))
    me = ranks[rank]
    duty = proposal_duty(params, parent, parent_state, y, me)
    assert duty is not None
    assert duty.rank == rank
    body = body if body is not None else TxBody()
    header = unsigned_header(
        params,
        parent,
        duty,
        duty.not_before_ms + delay_ms,
        y,
        proof,
        body_root(body),
        state_root if state_root is not None else parent.state_root,
        certificate,
        me,
        vrf_proof=vrf_proof_for(params, parent, key_of(me)),
    )
    if overrides:
        header = dataclasses.replace(header, **overrides)  # type: ignore[arg-type]
    header = header.mined(params.pow_bits_header)
    signer = key_of(header.proposer) if header.proposer in {k.pubkey for k in KEYS} else None
    return header.signed(signer) if sign and signer is not None else header


def attest(params: ChainParams, header: Header, key: SecretKey) -> Attestation:
    return Attestation(
        params.chain_id, header.height, header.hash, Height(0), BlockHash(bytes(32)), key.pubkey
    ).signed(key)


def equal_stakes(n: int, amount: int = STAKE) -> list[tuple[PubKey, int]]:
    return [(k.pubkey, amount) for k in KEYS[:n]]


__all__ = [
    "FAKE_VDF",
    "KEYS",
    "PARAMS",
    "REAL_VDF",
    "STAKE",
    "T0",
    "MemoryView",
    "VdfImpl",
    "attest",
    "child_header",
    "equal_stakes",
    "genesis_like",
    "key_of",
    "validator_state",
    "vdf_for",
    "vrf_proof_for",
]
