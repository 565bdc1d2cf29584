"""What a validator should do now: propose at its rank, attest its head, build certificates (§4.3, §4.4).

Owns: pure decisions reused by the daemon's producer/attester services and by the in-process
simulation (tests/sim): `proposal_duty`, `should_propose`, `attestation_for`, `build_certificate`,
`unsigned_header`, `idle_body` (the body with nothing selected, which every proposer falls back
to). Must not: sign, read the clock, compute a VDF, assemble bodies with content or store anything
(callers pass `now_ms`, the VDF output, and do the I/O).

Honest behaviour encoded here:
- Propose at height h only if this key has rank r in the ranks of the parent's VDF output, the
  time has reached `earliest_time_ms(parent, r)`, and no valid block of a lower rank at height h
  on the same parent is known (a backup only steps in for a silent leader).
- Attest the head of one's own fork choice, when eligible at its height, only at strictly increasing
  heights and with non-decreasing source heights (chain.consensus.finality: two votes at one
  height are slashable, §5.3, and surround votes would break finality).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from chain.block import Body, DataBody, QualityReport, TxBody, VersionBody
from chain.consensus.certificate import check_attestation
from chain.consensus.election import child_seed, earliest_time_ms, eligible_validators, leader_ranks
from chain.consensus.finality import may_attest
from chain.consensus.validators import may_propose, vote_source_of, vote_weights
from chain.header import PROTOCOL_VERSION, Attestation, BlockKind, Header, kind_for_height, round_for_height
from chain.params import ChainParams
from chain.state.model import StateReader
from chain.types import ZERO_HASH, BlockHash, Hash32, Height, PubKey, Round, StateRoot, TimestampMs


@dataclass(frozen=True, slots=True)
class ProposalDuty:
    """This validator may propose the child of `parent_hash` at `rank` from `not_before_ms`."""

    parent_hash: BlockHash
    height: int
    rank: int
    not_before_ms: int


def proposal_duty(
    params: ChainParams, parent: Header, parent_state: StateReader, vdf_output: bytes, me: PubKey
) -> ProposalDuty | None:
    """The duty of `me` for the child of `parent`, or None if `me` is not eligible there."""
    height = parent.height + 1
    ranks = leader_ranks(vdf_output, eligible_validators(parent_state, height))
    if me not in ranks or not may_propose(parent_state, me, height):
        return None
    rank = ranks.index(me)
    return ProposalDuty(parent.hash, height, rank, earliest_time_ms(params, parent.timestamp_ms, rank))


def should_propose(duty: ProposalDuty, now_ms: int, known_child_ranks: Iterable[int]) -> bool:
    """True once the duty's time has come and no child of the parent with a lower rank is known."""
    if now_ms < duty.not_before_ms:
        return False
    return all(r > duty.rank for r in known_child_ranks)


def unsigned_header(
    params: ChainParams,
    parent: Header,
    duty: ProposalDuty,
    now_ms: int,
    vdf_output: bytes,
    vdf_proof: bytes,
    body_root: Hash32,
    state_root: StateRoot,
    certificate: tuple[Attestation, ...],
    me: PubKey,
    *,
    vrf_proof: bytes,
) -> Header:
    """The header to mine and sign: timestamp = max(now, rank time, parent + 1) (§1.3, §4.3).

    `vrf_proof` is `chain.vrf.prove(my seed, election.alpha_for_child(chain_id, parent))` (the
    caller holds the key); the header's seed follows from it (`election.child_seed`)."""
    ts = max(now_ms, duty.not_before_ms, parent.timestamp_ms + 1)
    seed = child_seed(parent, vrf_proof)
    if seed is None:
        raise ValueError("vrf_proof does not decode")
    return Header(
        version=PROTOCOL_VERSION,
        chain_id=params.chain_id,
        height=Height(duty.height),
        kind=kind_for_height(duty.height),
        prev_hash=parent.hash,
        timestamp_ms=TimestampMs(ts),
        proposer=me,
        rank=duty.rank,
        vdf_output=vdf_output,
        vdf_proof=vdf_proof,
        body_root=body_root,
        state_root=state_root,
        parent_certificate=certificate,
        vrf_proof=vrf_proof,
        seed=seed,
    )


def attestation_for(
    params: ChainParams,
    head: Header,
    head_parent_state: StateReader,
    head_state: StateReader,
    me: PubKey,
    *,
    last_height: int,
    last_source_height: int,
) -> Attestation | None:
    """The (unsigned) vote `me` should cast for its fork-choice head, or None (§4.4).

    The vote signs its source, `validators.vote_source_of(head_state)` (the highest block the head's
    chain proves justified); `last_height` and `last_source_height` describe this validator's
    previous vote (0, 0 before any). None for genesis, when `finality.may_attest` forbids the vote
    (a double or surround vote), or when `me` has no vote weight at the head's height. The caller
    records the new last heights durably before it signs.
    """
    if head.height == 0:
        return None
    source = vote_source_of(head_state)
    if not may_attest(head.height, source.height, last_height, last_source_height):
        return None
    weights = dict(vote_weights(head_parent_state, head.height))
    if weights.get(me, 0) <= 0:
        return None
    return Attestation(
        chain_id=params.chain_id,
        height=head.height,
        block_hash=head.hash,
        source_height=source.height,
        source_hash=source.block_hash,
        validator=me,
    )


def build_certificate(
    params: ChainParams,
    parent: Header,
    eligible: Iterable[tuple[PubKey, int]],
    known: Iterable[Attestation],
) -> tuple[Attestation, ...]:
    """The `parent_certificate` to put in a child of `parent` (§3.2): every known valid vote for it,
    one per validator, sorted by validator, heaviest first when over `max_attestations`."""
    if parent.height == 0:
        return ()
    weights: Mapping[PubKey, int] = dict(eligible)
    chosen: dict[bytes, Attestation] = {}
    for att in known:
        if att.height != parent.height or att.block_hash != parent.hash or att.validator in chosen:
            continue
        if check_attestation(params.chain_id, att, weights) is None:
            chosen[att.validator] = att
    atts = sorted(chosen.values(), key=lambda a: (-weights[a.validator], a.validator))
    atts = atts[: params.max_attestations]
    return tuple(sorted(atts, key=lambda a: a.validator))


def idle_body(reader: StateReader, height: int) -> Body:
    """The body at `height` on the parent state `reader` with nothing selected: no txs, no data units,
    a no-op version that keeps the current adapter and score (§6.4, §6.5)."""
    kind = kind_for_height(height)
    if kind == BlockKind.DATA:
        return DataBody(unit_ids=(), report=QualityReport(0, 0, 0, 0, 0, 0, 0, ZERO_HASH))
    if kind != BlockKind.VERSION:
        return TxBody()
    model = reader.model_version()
    return VersionBody(
        round=Round(round_for_height(height)),
        base_version_id=model.version_id,
        units=(),
        aggregation_rule=reader.params.aggregation_rule,
        new_adapter_blob_hash=model.adapter_blob_hash,
        per_batch_scores=(),
        total_score=model.score,
        previous_score=model.score,
    )
