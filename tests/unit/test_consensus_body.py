"""Stateless body rules (chain.consensus.body; PROTOCOL §3.2, §4.7 "body rules")."""

from __future__ import annotations

import dataclasses

from chain.block import (
    Block,
    DataBody,
    Excluded,
    Exclusion,
    QualityReport,
    TxBody,
    UnitWeight,
    VersionBody,
    body_leaves,
    body_root,
)
from chain.consensus.body import check_body_stateless, check_leaf_stateless, faulty_leaf
from chain.crypto import account_id
from chain.errors import ErrorCode
from chain.hashing import H
from chain.header import BlockKind
from chain.params import AggregationRule
from chain.tx import Transfer, Tx, make_tx
from chain.types import ZERO_HASH, Amount, BlobHash, ChainId, Hash32, Height, Micro, Round, Signature, UnitId
from tests.sim.world import KEYS, PARAMS, genesis_like, validator_state

P = PARAMS
BASE = genesis_like(P, validator_state(P, []))


def block(body: TxBody | DataBody | VersionBody, height: int = 1) -> Block:
    kind = {TxBody: BlockKind.TX, DataBody: BlockKind.DATA, VersionBody: BlockKind.VERSION}[type(body)]
    header = dataclasses.replace(BASE, height=Height(height), kind=kind, body_root=body_root(body))
    return Block(header, body)


def tx(nonce: int, chain: str = P.chain_id) -> Tx:
    return make_tx(KEYS[0], ChainId(chain), nonce, P.min_fee, Transfer(account_id(KEYS[1].pubkey), Amount(5)))


def test_valid_tx_body() -> None:
    assert check_body_stateless(P, block(TxBody((tx(0), tx(1))))) is None


def test_body_root_mismatch() -> None:
    b = block(TxBody((tx(0),)))
    wrong = Block(dataclasses.replace(b.header, body_root=Hash32(H(b"x"))), b.body)
    assert check_body_stateless(P, wrong) == ErrorCode.BAD_BODY_ROOT


def test_tx_rules() -> None:
    one = tx(0)
    assert check_body_stateless(P, block(TxBody((one, one)))) == ErrorCode.DUPLICATE_TX
    other_chain = tx(0, "lc-other")
    assert check_body_stateless(P, block(TxBody((other_chain,)))) == ErrorCode.INVALID_TX_IN_BLOCK
    forged = dataclasses.replace(one, signature=Signature(b"\x02" * 64))
    assert check_body_stateless(P, block(TxBody((forged,)))) == ErrorCode.INVALID_TX_IN_BLOCK
    few = dataclasses.replace(P, max_txs_per_block=1)
    assert check_body_stateless(few, block(TxBody((tx(0), tx(1))))) == ErrorCode.TOO_MANY_TXS
    small = dataclasses.replace(P, max_block_bytes=300)
    assert check_body_stateless(small, block(TxBody((tx(0), tx(1))))) == ErrorCode.BLOCK_TOO_LARGE


def test_data_and_version_structure() -> None:
    """Structure of the bodies allowed until the learning rules land: empty DATA, no-op VERSION."""
    empty_report = QualityReport(0, 0, 0, 0, 0, 0, 0, ZERO_HASH)
    assert check_body_stateless(P, block(DataBody((), empty_report), height=2)) is None
    noop = VersionBody(
        round=Round(0),
        base_version_id=ZERO_HASH,
        units=(),
        aggregation_rule=P.aggregation_rule,
        new_adapter_blob_hash=BlobHash(ZERO_HASH),
        per_batch_scores=(),
        total_score=0,
        previous_score=0,
    )
    assert check_body_stateless(P, block(noop, height=3)) is None
    assert check_body_stateless(P, block(dataclasses.replace(noop, round=Round(1)), height=3)) == (
        ErrorCode.BAD_BODY
    )
    other_rule = dataclasses.replace(noop, aggregation_rule=AggregationRule.MEDIAN)
    assert check_body_stateless(P, block(other_rule, height=3)) == ErrorCode.BAD_BODY


def test_data_and_version_bodies_follow_their_stateless_rules() -> None:
    """A DATA body passes on `check_data_body_stateless` (the selection is re-run on import with the
    blobs): ids sorted and counted, counts adding up, the zero hash for no selection. A VERSION body
    on `check_version_body_stateless`: `n_score_batches` batch scores with their floored mean as the
    total, units listed exactly when the total improves (finding 4 of issue 10, a fabricated version,
    is the import check's: it recomputes the aggregate and the scores)."""
    u, v = sorted([UnitId(H(b"u")), UnitId(H(b"v"))])
    report = QualityReport(2, 10, 0, 0, 0, 0, 10, H(b"test set"))
    data = block(DataBody((u, v), report, (4, 6)), height=2)
    assert check_body_stateless(P, data) is None
    assert check_body_stateless(P, block(DataBody((v, u), report, (4, 6)), height=2)) == ErrorCode.BAD_BODY
    fake_report = block(DataBody((), report), height=2)
    assert check_body_stateless(P, fake_report) == ErrorCode.BAD_BODY
    no_hash = QualityReport(2, 10, 0, 0, 0, 0, 0, H(b"test set"))
    assert check_body_stateless(P, block(DataBody((u, v), no_hash, (0, 0)), height=2)) == ErrorCode.BAD_BODY
    for counts in [(), (10,), (4, 7), (4, 6, 0)]:  # one accepted count per unit, summing to n_selected
        assert (
            check_body_stateless(P, block(DataBody((u, v), report, counts), height=2)) == ErrorCode.BAD_BODY
        )
    scores = tuple(Micro(1_000_000 + i) for i in range(P.n_score_batches))
    version = VersionBody(
        round=Round(0),
        base_version_id=ZERO_HASH,
        units=(UnitWeight(u, 1),),
        aggregation_rule=P.aggregation_rule,
        new_adapter_blob_hash=BlobHash(H(b"new adapter")),
        per_batch_scores=scores,
        total_score=sum(scores) // len(scores),
        previous_score=2_000_000,
        previous_batch_scores=tuple(Micro(2_000_000) for _ in scores),
    )
    assert check_body_stateless(P, block(version, height=3)) is None
    one_batch = dataclasses.replace(version, per_batch_scores=(Micro(1),), total_score=1)
    assert check_body_stateless(P, block(one_batch, height=3)) == ErrorCode.BAD_BODY
    wrong_total = dataclasses.replace(version, total_score=version.total_score - 1)
    assert check_body_stateless(P, block(wrong_total, height=3)) == ErrorCode.BAD_BODY
    not_better = dataclasses.replace(
        version, previous_score=version.total_score, previous_batch_scores=scores
    )
    assert check_body_stateless(P, block(not_better, height=3)) == ErrorCode.BAD_BODY  # units, no gain
    scored_noop = dataclasses.replace(not_better, units=())
    assert check_body_stateless(P, block(scored_noop, height=3)) is None


def test_version_bodies_carry_previous_batches_and_exclusions_by_the_rules() -> None:
    """The previous adapter's batches are complete and `previous_score` is their floored mean (so an
    attester can check the improvement per batch); exclusions are sorted, disjoint from the units,
    and listed only beside units (a no-op judges nobody)."""
    u, v, w = sorted([UnitId(H(b"u")), UnitId(H(b"v")), UnitId(H(b"w"))])
    new = tuple(Micro(1_000_000 + i) for i in range(P.n_score_batches))
    old = tuple(Micro(2_000_000 + 3 * i) for i in range(P.n_score_batches))
    version = VersionBody(
        round=Round(0),
        base_version_id=ZERO_HASH,
        units=(UnitWeight(v, 1),),
        aggregation_rule=P.aggregation_rule,
        new_adapter_blob_hash=BlobHash(H(b"new adapter")),
        per_batch_scores=new,
        total_score=sum(new) // len(new),
        previous_score=sum(old) // len(old),
        excluded=(Excluded(u, Exclusion.NORM_OUTLIER), Excluded(w, Exclusion.RARELY_KEPT)),
        previous_batch_scores=old,
    )
    assert check_body_stateless(P, block(version, height=3)) is None
    bad = [
        dataclasses.replace(version, previous_batch_scores=()),
        dataclasses.replace(version, previous_batch_scores=old[:-1]),
        dataclasses.replace(version, previous_score=version.previous_score + 1),
        dataclasses.replace(version, excluded=version.excluded[::-1]),
        dataclasses.replace(version, excluded=(Excluded(v, Exclusion.MALFORMED),)),  # included and excluded
    ]
    for body in bad:
        assert check_body_stateless(P, block(body, height=3)) == ErrorCode.BAD_BODY, body
    noop = dataclasses.replace(
        version, units=(), previous_score=version.total_score, previous_batch_scores=new
    )
    assert check_body_stateless(P, block(noop, height=3)) == ErrorCode.BAD_BODY  # excludes, includes nobody
    assert check_body_stateless(P, block(dataclasses.replace(noop, excluded=()), height=3)) is None


def test_a_data_units_leaf_is_its_id_and_accepted_count() -> None:
    """Each selected unit's Merkle leaf commits to its accepted count (so the count, which splits the
    data pool, is bound by `body_root`); INVALID_BLOCK evidence can prove a unit leaf of the wrong
    size or with more accepted examples than a test set holds."""
    u, v = sorted([UnitId(H(b"u")), UnitId(H(b"v"))])
    report = QualityReport(2, 10, 0, 0, 0, 0, 10, H(b"test set"))
    body = DataBody((u, v), report, (4, 6))
    leaves = body_leaves(body)
    assert leaves[1:] == [bytes(u) + (4).to_bytes(4, "big"), bytes(v) + (6).to_bytes(4, "big")]
    assert body_root(body) != body_root(dataclasses.replace(body, accepted=(6, 4)))
    good = block(body, height=2)
    assert faulty_leaf(P, good) is None
    too_many = block(DataBody((u, v), report, (4, P.max_test_examples + 1)), height=2)
    assert faulty_leaf(P, too_many) == 2
    missing = block(DataBody((u, v), report, (10,)), height=2)  # v's leaf is its bare id
    assert faulty_leaf(P, missing) == 2
    assert check_leaf_stateless(P, good.header, 1, 3, bytes(u)) == ErrorCode.BAD_BODY
