"""Leader election: VRF seed, VDF challenge, eligible validators, weighted ranks, rank timing (§4.2-§4.3).

Owns: the seed chain (`seed_of`, `vrf_alpha` / `alpha_for_child`, `next_seed`, `child_seed`,
`vrf_valid`: RANDAO-style over RFC 9381 VRF outputs, chain.vrf), `vdf_challenge` /
`challenge_for_child`, `eligible_validators`, `leader_ranks` (Efraimidis-Spirakis with exactly
reproducible integer arithmetic), `earliest_time_ms`, `VdfVerifier`. Must not: import `vdf` or
chiavdf (the verifier comes in as a parameter), hold secret keys (the proposer proves its VRF and
passes the proof in), read the clock, or touch storage.

Seed. Block h carries its proposer's VRF proof over alpha(h) = H(chain_id, seed(h-1), h) and
seed(h) = H(seed(h-1) || beta(h)); the order at h+1 ranks by the VDF output over seed(h). beta is
unique per (key, alpha), so the proposer's only choice is to publish or withhold (docs/consensus.md).

Ranks. Efraimidis-Spirakis orders validators by the key u_i^(1/w_i), largest first, where
u_i = H(y || pubkey_i) read as a number in (0, 1]. Taking -ln, this is the "exponential clocks" order:
ascending by e_i = -ln(u_i) / w_i. We compute -ln(u_i) in binary fixed point with 192 fractional
bits using integer operations only (an atanh series with 64 guard bits, below), and compare
e_i = X_i / w_i as exact rationals (`fractions.Fraction`: cross-multiplied integers), ties broken by
the lower pubkey. Every step is integer arithmetic, so every platform computes the same order bit for
bit. Error bound: |X_i * 2^-192 - (-ln u_i)| < 2^-191 (the working precision is 2^-256 and the
< 2^10 truncations of the series and of ln 2 stay below 2^-246; measured worst case 0.9998 * 2^-192
against 500-bit mpmath over 4,000 random inputs). The order can only differ from the ideal
real-number order for two validators whose keys agree to about 2^-190 (probability about 2^-180 per
pair at realistic weights), so the election probabilities are w_i / sum(w) for all practical purposes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Final

from chain import vrf
from chain.consensus.validators import leader_weights
from chain.crypto import DOMAIN_VDF
from chain.hashing import H_many
from chain.header import Header
from chain.params import ChainParams
from chain.state.model import StateReader
from chain.types import ChainId, Hash32, PubKey

DOMAIN_VRF_ALPHA: Final = b"LC/vrf-alpha/1"
DOMAIN_SEED: Final = b"LC/seed/1"

FRAC_BITS: Final = 192
_WORK_BITS: Final = 256
_WORK_ONE: Final = 1 << _WORK_BITS
U_BITS: Final = 256  # u_i = (int(H(y || pk)) + 1) / 2^256


VdfVerifier = Callable[[bytes, int, int, bytes, bytes], bool]
"""(challenge, discriminant_bits, iterations, output, proof) -> valid: the shape of `vdf.verify`.
chain.consensus never imports vdf (ARCHITECTURE.md §3); the daemon passes `vdf.verify` in."""


def genesis_seed(genesis_hash: bytes) -> Hash32:
    """The seed of height 0: H(b"LC/seed/1" || b"genesis" || genesis hash)."""
    return H_many(DOMAIN_SEED, b"genesis", genesis_hash)


def seed_of(header: Header) -> Hash32:
    """The randomness seed after `header`: the one it carries (checked by validation), or for the
    genesis (which has no proposer) the hash-derived one."""
    return genesis_seed(header.hash) if header.height == 0 else header.seed


def vrf_alpha(chain_id: ChainId, parent_seed: bytes, height: int) -> bytes:
    """What the proposer at `height` proves its VRF over: H(b"LC/vrf-alpha/1" || chain_id ||
    parent's seed || u64_be(height)). Nothing in it is chosen by anyone."""
    return H_many(DOMAIN_VRF_ALPHA, chain_id.encode(), parent_seed, height.to_bytes(8, "big"))


def alpha_for_child(chain_id: ChainId, parent: Header) -> bytes:
    return vrf_alpha(chain_id, seed_of(parent), parent.height + 1)


def next_seed(parent_seed: bytes, beta: bytes) -> Hash32:
    """seed(h) = H(b"LC/seed/1" || seed(h-1) || beta(h)), beta = the proposer's unique VRF output."""
    return H_many(DOMAIN_SEED, parent_seed, beta)


def child_seed(parent: Header, vrf_proof: bytes) -> Hash32 | None:
    """The seed a child of `parent` carrying `vrf_proof` must claim (None: the proof does not decode).
    Does not verify the proof: `vrf_valid` does."""
    beta = vrf.proof_to_hash(vrf_proof)
    return None if beta is None else next_seed(seed_of(parent), beta)


@lru_cache(maxsize=4096)
def _vrf_beta(pubkey: bytes, alpha: bytes, proof: bytes) -> bytes | None:
    return vrf.verify(pubkey, alpha, proof)  # about 2 ms: every node of the simulation checks each


def vrf_valid(chain_id: ChainId, parent: Header, header: Header) -> bool:
    """§4.2 (docs/consensus.md): the header's VRF proof is valid for its proposer's key over
    `alpha_for_child(parent)`, and its seed is `next_seed(seed_of(parent), beta)`."""
    beta = _vrf_beta(bytes(header.proposer), alpha_for_child(chain_id, parent), bytes(header.vrf_proof))
    return beta is not None and header.seed == next_seed(seed_of(parent), beta)


def vdf_challenge(chain_id: ChainId, parent_seed: bytes, parent_vdf_output: bytes, height: int) -> bytes:
    """PROTOCOL §4.2: H(b"LC/vdf/1" || chain_id || parent's seed || parent's VDF output || u64_be(h)).

    Nothing the parent's proposer chooses enters except its unique VRF output (through the seed):
    not its transactions, timestamp, pow_nonce, certificate subset, signature or proof nonce. The
    parent's VDF output keeps the VDFs one sequential chain (n blocks take n VDF times to forge,
    even for whoever holds every key); the seed makes the input unpredictable before the parent."""
    return H_many(DOMAIN_VDF, chain_id.encode(), parent_seed, parent_vdf_output, height.to_bytes(8, "big"))


def vdf_seed(parent: Header) -> bytes:
    """The VDF output the child's challenge chains from: the parent's, or for the genesis (which
    has none) its hash, the chain's identity."""
    return parent.hash if parent.height == 0 else parent.vdf_output


def challenge_for_child(chain_id: ChainId, parent: Header) -> bytes:
    """The VDF challenge of the block after `parent`: known only once `parent` exists."""
    return vdf_challenge(chain_id, seed_of(parent), vdf_seed(parent), parent.height + 1)


def eligible_validators(reader: StateReader, height: int) -> list[tuple[PubKey, int]]:
    """(pubkey, leader weight) of the validators ranked at `height`, sorted by pubkey (§4.3).

    `reader` is the parent's state. The set and both factors of the weight (bonded stake x
    reputation / 1000) are fixed per epoch from the last final checkpoint
    (`chain.consensus.validators.leader_weights`); a member jailed since may not propose
    (`validators.may_propose`) but keeps its rank, so slashing shifts no other rank.
    """
    return leader_weights(reader, height)


def _atanh_fixed(z: int) -> int:
    """atanh(z / 2^W) * 2^W (floor per term) for 0 <= z <= 2^W / 3: z + z^3/3 + z^5/5 + ..."""
    z2 = (z * z) >> _WORK_BITS
    total, power, k = 0, z, 1
    while power:
        total += power // k
        power = (power * z2) >> _WORK_BITS
        k += 2
    return total


_LN2_WORK: Final = 2 * _atanh_fixed(_WORK_ONE // 3)  # ln 2 = 2 atanh(1/3), 2^-W scale


def neg_ln_u_fixed(n: int) -> int:
    """-ln(n / 2^256) * 2^192 within 1 unit, for an integer 1 <= n <= 2^256, integers only.

    Works with W = 256 fractional bits (64 guard bits) and drops them at the end.
    """
    if not 1 <= n <= 1 << U_BITS:
        raise ValueError("n must be in [1, 2^256]")
    e = n.bit_length() - 1  # n = 2^e * m, 1 <= m < 2
    m = (n << _WORK_BITS) >> e
    z = ((m - _WORK_ONE) << _WORK_BITS) // (m + _WORK_ONE)  # (m-1)/(m+1) in [0, 1/3)
    ln_m = 2 * _atanh_fixed(z)
    return ((U_BITS - e) * _LN2_WORK - ln_m) >> (_WORK_BITS - FRAC_BITS)


def rank_key(vdf_output: bytes, pubkey: PubKey, weight: int) -> Fraction:
    """The exponential-clock key -ln(u)/w as an exact rational of fixed-point integers."""
    u = int.from_bytes(H_many(vdf_output, pubkey), "big") + 1
    return Fraction(neg_ln_u_fixed(u), weight)


def leader_ranks(vdf_output: bytes, eligible: Sequence[tuple[PubKey, int]]) -> list[PubKey]:
    """Validators in rank order (index = rank; rank 0 leads), §4.3. Zero weights are left out."""
    keyed = [(rank_key(vdf_output, pk, w), pk) for pk, w in eligible if w > 0]
    keyed.sort()
    return [pk for _, pk in keyed]


def rank_of(vdf_output: bytes, eligible: Sequence[tuple[PubKey, int]], pubkey: PubKey) -> int | None:
    ranks = leader_ranks(vdf_output, eligible)
    try:
        return ranks.index(pubkey)
    except ValueError:
        return None


def earliest_time_ms(params: ChainParams, parent_timestamp_ms: int, rank: int) -> int:
    """First timestamp a rank-`rank` block may carry (§4.3).

    PROTOCOL says parent_time + vdf_time + r * rank_delay_ms; vdf_time cannot be measured by other
    nodes, so `slot_ms` stands for it (the nominal VDF-plus-slot time). See docs/consensus.md.
    """
    return parent_timestamp_ms + params.slot_ms + rank * params.rank_delay_ms
