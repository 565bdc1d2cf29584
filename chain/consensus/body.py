"""Stateless body rules of a block (PROTOCOL §3.2, §4.7 "body rules").

Owns: the checks a block body must pass that need only the params and the block itself: body root,
block size, tx count, per-tx chain id / size / signature, duplicates, and the structural rules of DATA
and VERSION bodies. They are shared by block validation (`chain.consensus.validation`) and by
`INVALID_BLOCK` slashing evidence (`chain.consensus.slashing`), which can only prove faults that do
not depend on a parent state.

Must not: read state, the mempool or blobs. State-dependent rules (nonces, balances) are the state
transition's; the federated-learning rules of DATA and VERSION bodies (selection, aggregation,
scores, PROTOCOL §6.4-§6.5) are completed by the FL issue in `check_fl_body_stateless` below and in
their own state-aware module.
"""

from __future__ import annotations

from chain.block import (
    VERSION_LEAVES,
    Block,
    DataBody,
    QualityReport,
    TxBody,
    VersionBody,
    VersionScores,
    body_leaves,
    body_root,
)
from chain.codec import decode, encode
from chain.consensus.data_selection import check_data_body_stateless
from chain.consensus.scoring import check_version_body_stateless, total_score
from chain.errors import ErrorCode
from chain.header import BlockKind, Header, round_for_height
from chain.params import ChainParams
from chain.tx import TX_VERSION, Tx
from chain.types import ZERO_HASH, UnitId

EMPTY_REPORT = QualityReport(0, 0, 0, 0, 0, 0, 0, ZERO_HASH)


def check_body_stateless(
    params: ChainParams, block: Block, *, signatures_checked: bool = False
) -> ErrorCode | None:
    """First failing stateless body rule of `block`, or None. Cheap checks first (§4.7).

    `signatures_checked`: every tx signature of the body was verified already on this node, so it
    is not verified again (every other rule still runs). Only the chain service's import of a block
    it assembled itself from mempool-admitted txs (the mempool verified each one at admission) sets
    it; a received block, from gossip or sync, never does."""
    if body_root(block.body) != block.header.body_root:
        return ErrorCode.BAD_BODY_ROOT
    if len(encode(block)) > params.max_block_bytes:
        return ErrorCode.BLOCK_TOO_LARGE
    body = block.body
    if isinstance(body, TxBody):
        return _check_txs(params, body, signatures_checked)
    return check_fl_body_stateless(params, block)


def _check_txs(params: ChainParams, body: TxBody, signatures_checked: bool) -> ErrorCode | None:
    if len(body.txs) > params.max_txs_per_block:
        return ErrorCode.TOO_MANY_TXS
    seen: set[bytes] = set()
    for tx in body.txs:
        if tx.version != TX_VERSION or tx.chain_id != params.chain_id:
            return ErrorCode.INVALID_TX_IN_BLOCK
        if len(encode(tx)) > params.max_tx_bytes:
            return ErrorCode.INVALID_TX_IN_BLOCK
        tx_id = tx.id
        if tx_id in seen:
            return ErrorCode.DUPLICATE_TX
        seen.add(tx_id)
        if not signatures_checked and not tx.signature_valid():
            return ErrorCode.INVALID_TX_IN_BLOCK
    return None


def check_fl_body_stateless(params: ChainParams, block: Block) -> ErrorCode | None:
    """Structural rules of DATA and VERSION bodies (PROTOCOL §6.4, §6.5).

    The stateless parts of the data-selection and version rules (`check_data_body_stateless`,
    `check_version_body_stateless`), so INVALID_BLOCK evidence can prove them; the state- and
    blob-dependent parts (re-running the selection, recomputing the aggregate, the scores) are the
    node's import check (linguachaind.services.rounds, `ChainService.learning_check`).
    Issue 10, finding 4 (a fabricated VERSION paid the learning pool for 0.001 LC in fees) is
    closed by that import check, which recomputes the aggregate and every batch score.
    """
    body = block.body
    if isinstance(body, DataBody):
        return check_data_body_stateless(params, body)
    if isinstance(body, VersionBody):
        if body.round != round_for_height(block.header.height):
            return ErrorCode.BAD_BODY
        ids = [u.unit_id for u in body.units]
        if len(set(ids)) != len(ids):
            return ErrorCode.BAD_BODY
        if body.aggregation_rule != params.aggregation_rule:
            return ErrorCode.BAD_BODY
        return check_version_body_stateless(params, body)
    return None


def check_leaf_stateless(
    params: ChainParams, header: Header, index: int, count: int, leaf: bytes
) -> ErrorCode | None:
    """The first stateless rule that one committed body leaf (`body_leaves` order) breaks, or None.

    What INVALID_BLOCK evidence can prove with a single leaf and its Merkle branch (§5.3): a TX
    body with more than `max_txs_per_block` leaves, or a leaf that is not a canonical tx of this
    chain within `max_tx_bytes` with a valid signature; a DATA report that breaks
    `check_data_body_stateless` (its counts, limits, the zero hash of no selection, its unit count
    against the leaf count) or a unit leaf that is not 36 bytes (id and accepted count) or counts
    more than `max_test_examples`; a VERSION body whose leaf count is not `VERSION_LEAVES`, a
    score leaf that breaks `check_score_claim`, or a body leaf that breaks
    `check_version_body_stateless`. Faults that need two leaves (a
    duplicate tx) or the whole body (`max_block_bytes`) are not provable this way.
    """
    if header.kind == BlockKind.TX:
        if count > params.max_txs_per_block:
            return ErrorCode.TOO_MANY_TXS
        if len(leaf) > params.max_tx_bytes:
            return ErrorCode.INVALID_TX_IN_BLOCK
        tx = decode(Tx, leaf, max_bytes=params.max_tx_bytes)
        if isinstance(tx, ErrorCode) or tx.version != TX_VERSION or tx.chain_id != params.chain_id:
            return ErrorCode.INVALID_TX_IN_BLOCK
        return None if tx.signature_valid() else ErrorCode.INVALID_TX_IN_BLOCK
    if header.kind == BlockKind.DATA:
        if index > 0:  # a selected unit: its id and its accepted count (chain.block.body_leaves)
            ok = len(leaf) == 36 and int.from_bytes(leaf[32:], "big") <= params.max_test_examples
            return None if ok else ErrorCode.BAD_BODY
        report = decode(QualityReport, leaf, max_bytes=params.max_block_bytes)
        if isinstance(report, ErrorCode) or report.n_units != count - 1:
            return ErrorCode.BAD_BODY
        return _report_rules(params, report)
    if header.kind == BlockKind.VERSION:
        if count != VERSION_LEAVES:
            return ErrorCode.BAD_BODY
        if index == 0:
            claim = decode(VersionScores, leaf, max_bytes=params.max_block_bytes)
            if isinstance(claim, ErrorCode):
                return ErrorCode.BAD_BODY
            return check_score_claim(params, header, claim)
        body = decode(VersionBody, leaf, max_bytes=params.max_block_bytes)
        if isinstance(body, ErrorCode):
            return ErrorCode.BAD_BODY
        return check_fl_body_stateless(params, Block(header, body))
    return None


def check_score_claim(params: ChainParams, header: Header, claim: VersionScores) -> ErrorCode | None:
    """What a VERSION body's score leaf shows by itself (§6.5): the header's round, and either
    unscored (no batch scores of either adapter, equal totals) or `n_score_batches` batch scores of
    each adapter whose floored means are the two totals."""
    if claim.round != round_for_height(header.height):
        return ErrorCode.BAD_BODY
    if not claim.per_batch_scores and not claim.previous_batch_scores:
        return None if claim.total_score == claim.previous_score else ErrorCode.BAD_BODY
    n = params.n_score_batches
    if len(claim.per_batch_scores) != n or len(claim.previous_batch_scores) != n:
        return ErrorCode.BAD_BODY
    if claim.total_score != total_score(claim.per_batch_scores):
        return ErrorCode.BAD_BODY
    return None if claim.previous_score == total_score(claim.previous_batch_scores) else ErrorCode.BAD_BODY


def _report_rules(params: ChainParams, report: QualityReport) -> ErrorCode | None:
    """The DATA report's own rules (`check_data_body_stateless` without the unit-id order and the
    accepted counts' sum, which one leaf cannot show)."""
    ids = tuple(UnitId(i.to_bytes(32, "big")) for i in range(report.n_units))
    accepted = (report.n_selected,) + (0,) * (report.n_units - 1) if report.n_units else ()
    return check_data_body_stateless(params, DataBody(ids, report, accepted))


def faulty_leaf(params: ChainParams, block: Block) -> int | None:
    """Index of the first body leaf that `check_leaf_stateless` refuses (to build evidence with)."""
    leaves = body_leaves(block.body)
    for i, leaf in enumerate(leaves):
        if check_leaf_stateless(params, block.header, i, len(leaves), leaf) is not None:
            return i
    return None
