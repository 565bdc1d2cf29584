"""The evidence reporter: faults this node sees become SLASH_EVIDENCE txs (PROTOCOL §5.3).

Owns: watching what the chain service is shown (every block header handed to `import_block`, added or
rejected, and every vote: the chain service is built with the reporter among its `watchers`),
finding two different signed headers of one proposer at one height (DOUBLE_PROPOSAL) and two votes
of one validator for different blocks at one height (DOUBLE_ATTEST), checking the `Evidence` with
`chain.consensus.slashing.verify_evidence` against the tip state, and submitting it as a
SLASH_EVIDENCE tx signed by the node's validator key (the reporter, paid
`slash_reporter_share_permille` of the slash) through the node's one `submit_tx` (mempool, then
network).
Must not: decide what proves a fault (chain.consensus.slashing) or apply the slash (the state
transition), block or fail an import (its hooks are quick and synchronous), or hold unbounded memory:
it keeps one signed header per (height, proposer) above the final height (at or below it the main
chain's header from the store is the other half) and the first vote per (height, validator) for the
whole evidence window (`unbonding_blocks`; votes at or below the final height included), capped.
Two votes of one validator whose spans strictly nest are SURROUND_VOTE evidence. A VERSION block
whose import found its score claim false beyond `score_slash_tolerance_micro + score_tolerance_micro`
(the rounds service keeps that FALSE_SCORE evidence: header, score leaf, Merkle branch) is reported
as FALSE_SCORE, whether the block was refused or not.

Each fault is reported once (its normalised evidence key); evidence found while the reporter account
cannot pay `min_fee` waits (capped) and a WARNING names the address to fund, once. Every validator
reports the same fault, so most reports lose the race to the block: such a dead tx would hold the
reporter account's nonce in the mempool until it expires (no later tx of that account could be
included), so the reporter has the mempool re-check it and resubmits its reports queued behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

import trio

if TYPE_CHECKING:  # trio-stubs in this venv hide trio.TaskStatus from mypy
    from trio_typing import TaskStatus

from chain.address import HRP_BY_NETWORK, address_of
from chain.codec import encode
from chain.consensus.slashing import accused, evidence_key, verify_evidence
from chain.crypto import SecretKey, account_id
from chain.errors import ErrorCode
from chain.evidence import DoubleAttest, DoubleProposal, Evidence, EvidenceKind, SurroundVote
from chain.header import Attestation, BlockKind, Header
from chain.state.model import StateReader
from chain.store.blockstore import BlockStore
from chain.tx import SlashEvidence, Tx, make_tx
from chain.types import AccountId, Hash32, PubKey, TxId
from linguachaind.logsetup import event
from linguachaind.services.chain_service import AddBlockResult
from linguachaind.services.submit import TxSubmitter
from linguachaind.services.vote_index import VoteIndex
from linguachaind.services.wakeup import ChainChanges

log = logging.getLogger(__name__)

MAX_HEADERS: Final = 256  # signed headers kept (a header can carry a large certificate)
MAX_VOTES: Final = 8192
MAX_REPORTED: Final = 4096  # evidence keys remembered (older ones are past `unbonding_blocks` anyway)
MAX_WAITING: Final = 64  # evidence found while the reporter account cannot pay the fee
FUTURE_HEADERS: Final = 256  # headers further above the tip than this are not kept

# Header results that say the header itself is broken (not ours to prove anything with).
_BROKEN: Final = frozenset(
    {ErrorCode.BAD_VERSION, ErrorCode.WRONG_CHAIN, ErrorCode.BAD_POW, ErrorCode.BAD_SIGNATURE}
)

V = TypeVar("V")


class EvidencePool(Protocol):
    """The part of `mempool.Mempool` the reporter uses."""

    def next_nonce(self, account: AccountId) -> int: ...

    def contains(self, tx_id: TxId) -> bool: ...

    def revalidate(self, reader: StateReader) -> None: ...


class EvidenceReporter:
    """Reports equivocations with `key`'s account. Built over the store before the chain service,
    which is given it as a watcher; `run(chain)` (a trio service) follows the chain service's changes:
    it retries evidence that waited for funds."""

    def __init__(
        self,
        store: BlockStore,
        key: SecretKey,
        mempool: EvidencePool,
        txs: TxSubmitter,
        *,
        false_scores: Callable[[], Iterable[Evidence]] | None = None,
    ) -> None:
        """`false_scores`: the FALSE_SCORE evidence this node's rounds service keeps for VERSION
        blocks it found false (`RoundsService.false_scores`), looked at for every VERSION header and
        on every chain change (a block judged after its import waited); None: not looked for.
        `store`: the chain the chain service writes (tip state, final height, main-chain headers)
        and `txs` the node's submitter, both built before the chain service."""
        self.store = store
        self._false_scores = false_scores
        self.params = store.params
        self._key = key
        self._account = account_id(key.pubkey)
        self.address = address_of(key.pubkey, HRP_BY_NETWORK.get(self.params.network, "rlc"))
        self._mempool = mempool
        self._txs = txs
        self._headers: dict[tuple[int, PubKey], Header] = {}
        self._votes = VoteIndex(MAX_VOTES)  # O(log n) double- and surround-vote lookups
        self._reported: dict[Hash32, int] = {}  # evidence key -> fault height
        self._waiting: dict[Hash32, tuple[Evidence, int]] = {}
        self._pending: dict[TxId, tuple[Tx, Hash32, int]] = {}  # our evidence txs not yet in a block
        self._pruned_at = -1
        self._warned = False
        self.submitted: list[Tx] = []  # evidence txs accepted by the mempool (newest last, capped)

    # -- ChainWatcher ----------------------------------------------------------------------------

    def saw_header(self, header: Header, code: AddBlockResult | ErrorCode | None) -> None:
        if code in _BROKEN or header.chain_id != self.params.chain_id or header.height == 0:
            return
        self._prune()
        if header.kind == BlockKind.VERSION:
            self._report_false_scores()
        checked = code is None or code is ErrorCode.ALREADY_KNOWN  # signature verified by the import
        other = self._other_header(header)
        if other is None:
            slot = (int(header.height), header.proposer)
            if (
                slot not in self._headers
                and self.store.final_height < header.height <= self._height() + FUTURE_HEADERS
                and self.store.reader().validator(header.proposer) is not None
                and (checked or self._header_ok(header))
            ):
                self._headers[slot] = header
                _cap(self._headers, MAX_HEADERS)
            return
        if not self._known(EvidenceKind.DOUBLE_PROPOSAL, header.proposer, header.height) and (
            checked or self._header_ok(header)
        ):
            self._found(
                Evidence(EvidenceKind.DOUBLE_PROPOSAL, DoubleProposal(other, header)),
                header.proposer,
                header.height,
            )

    def saw_attestation(self, att: Attestation, verified: bool) -> None:
        """Every vote the chain service is shown, also at or below the final height: the first vote
        per (height, validator) is kept for the whole evidence window (`unbonding_blocks`)."""
        too_old = att.height + self.params.unbonding_blocks <= self._height()
        if att.chain_id != self.params.chain_id or too_old:
            return
        self._prune()
        self._check_surround(att, verified)
        slot = (int(att.height), att.validator)
        other = self._votes.get(slot)
        if other is None:
            if verified or att.signature_valid():
                self._votes.add(att)
            return
        if (
            _vote_content(other) != _vote_content(att)
            and not self._known(EvidenceKind.DOUBLE_ATTEST, att.validator, att.height)
            and (verified or att.signature_valid())
        ):
            self._found(
                Evidence(EvidenceKind.DOUBLE_ATTEST, DoubleAttest(other, att)), att.validator, att.height
            )

    def _check_surround(self, att: Attestation, verified: bool) -> None:
        """SURROUND_VOTE (§5.3): a kept vote of the same validator whose span strictly contains the
        new one's, or the reverse (`VoteIndex.surrounding`, O(log n))."""
        pair = self._votes.surrounding(att)
        if pair is None:
            return
        outer, inner = pair
        if not self._known(EvidenceKind.SURROUND_VOTE, att.validator, outer.height) and (
            verified or att.signature_valid()
        ):
            proof = SurroundVote(outer, inner)
            self._found(Evidence(EvidenceKind.SURROUND_VOTE, proof), att.validator, outer.height)

    # -- the service -----------------------------------------------------------------------------

    async def run(
        self, chain: ChainChanges, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """On every change of `chain` (the chain service that shows this reporter what it imports):
        follow our pending txs, report kept FALSE_SCORE evidence, submit what waited for funds."""
        task_status.started()
        seen = -1
        while True:
            seen = await chain.wait_change(seen)
            self._prune()
            self._follow_pending()
            self._report_false_scores()
            if self._waiting and self._can_pay():  # the account may have been funded
                for key, (evidence, height) in list(self._waiting.items()):
                    self._submit(key, evidence, height)

    def statistics(self) -> dict[str, int]:
        return {
            "headers": len(self._headers),
            "votes": len(self._votes),
            "reported": len(self.submitted),
            "waiting_for_funds": len(self._waiting),
        }

    # -- internals -------------------------------------------------------------------------------

    def _other_header(self, header: Header) -> Header | None:
        """A known signed header of the same proposer at the same height with another hash."""
        kept = self._headers.get((int(header.height), header.proposer))
        main_hash = self.store.hash_at(header.height)  # checked when it was imported
        main = None if main_hash is None else self.store.get_header(main_hash)
        for other in (kept, main):
            if other is not None and other.proposer == header.proposer and other.hash != header.hash:
                return other
        return None

    def _follow_pending(self) -> None:
        """Forget our txs that reached the main chain; have the mempool drop those another report
        beat (they would block the account's later nonces) and resubmit what was queued behind."""
        reader = self.store.reader()
        dead = False
        for tx_id, (tx, _, _) in list(self._pending.items()):
            if self.store.find_tx(tx_id) is not None:
                del self._pending[tx_id]
            elif self._mempool.contains(tx_id) and isinstance(
                verify_evidence(self.params, reader, _evidence(tx)), ErrorCode
            ):
                dead = True
        if dead:
            log.info("an evidence tx of ours can no longer apply (reported by another); re-checking the pool")
            self._mempool.revalidate(reader)
        for tx_id, (tx, key, height) in list(self._pending.items()):
            if not self._mempool.contains(tx_id):  # dropped: dead, or queued behind a dead one
                del self._pending[tx_id]
                self._reported.pop(key, None)
                self._submit(key, _evidence(tx), height)  # DUPLICATE_EVIDENCE ends it for good

    def _can_pay(self) -> bool:
        return self.store.reader().account(self._account).balance >= self.params.min_fee

    def _height(self) -> int:
        """The tip height (the chain service's `height`)."""
        return self.store.tip[1]

    def _header_ok(self, header: Header) -> bool:
        return header.pow_valid(self.params.pow_bits_header) and header.signature_valid()

    def _known(self, kind: EvidenceKind, validator: PubKey, height: int) -> bool:
        """Already reported, or waiting for funds (checked before any signature is verified)."""
        key = evidence_key(kind, validator, height)
        return key in self._reported or key in self._waiting

    def _report_false_scores(self) -> None:
        """FALSE_SCORE evidence the rounds service kept and this reporter has not reported yet,
        while its fault is within the evidence window."""
        if self._false_scores is None:
            return
        horizon = self._height() - self.params.unbonding_blocks
        for evidence in self._false_scores():
            validator, height = accused(evidence)
            if height > horizon and not self._known(EvidenceKind.FALSE_SCORE, validator, height):
                self._found(evidence, validator, height)

    def _found(self, evidence: Evidence, validator: PubKey, height: int) -> None:
        key = evidence_key(evidence.kind, validator, height)
        log.warning(
            "%s",
            event("fault_seen", kind=evidence.kind.name, validator=validator.hex()[:16], height=height),
        )
        self._submit(key, evidence, height)

    def _submit(self, key: Hash32, evidence: Evidence, height: int) -> None:
        reader = self.store.reader()
        found = verify_evidence(self.params, reader, evidence)
        if isinstance(found, ErrorCode):  # DUPLICATE_EVIDENCE: someone else's report was included
            log.info("evidence %s at height %d not reported: %s", evidence.kind.name, height, found.name)
            self._waiting.pop(key, None)
            self._remember(key, height)
            return
        if not self._can_pay():
            self._wait_for_funds(key, evidence, height)
            return
        nonce = self._mempool.next_nonce(self._account)
        tx = make_tx(self._key, self.params.chain_id, nonce, self.params.min_fee, SlashEvidence(evidence))
        result = self._txs.submit_tx(encode(tx))
        if isinstance(result, ErrorCode):
            if result.is_transient:  # INSUFFICIENT_BALANCE (pending spends), POOL_FULL, ...
                self._wait_for_funds(key, evidence, height, result)
            else:
                log.error("evidence tx refused by the mempool: %s; not reported", result.name)
                self._waiting.pop(key, None)
                self._remember(key, height)
            return
        self._waiting.pop(key, None)
        self._remember(key, height)
        self._warned = False
        self._pending[tx.id] = (tx, key, height)
        self.submitted.append(tx)
        del self.submitted[:-MAX_REPORTED]
        log.warning(
            "%s",
            event(
                "evidence_reported",
                kind=evidence.kind.name,
                validator=found[0].hex()[:16],
                height=height,
                tx=tx.id.hex()[:16],
                reporter=self.address,
            ),
        )

    def _wait_for_funds(
        self, key: Hash32, evidence: Evidence, height: int, code: ErrorCode | None = None
    ) -> None:
        if key not in self._waiting and len(self._waiting) < MAX_WAITING:
            self._waiting[key] = (evidence, height)
        if not self._warned:
            self._warned = True
            why = "cannot pay the fee" if code is None else f"was refused ({code.name})"
            log.warning(
                "slashing evidence (%s at height %d) not reported: the validator account %s %s; "
                "send it at least %d base units (min_fee) to report equivocations and earn the "
                "reporter share",
                evidence.kind.name,
                height,
                self.address,
                why,
                self.params.min_fee,
            )

    def _remember(self, key: Hash32, height: int) -> None:
        self._reported[key] = height
        while len(self._reported) > MAX_REPORTED:
            del self._reported[next(iter(self._reported))]

    def _prune(self) -> None:
        """Forget what the final height settled and evidence too old to be accepted."""
        final = self.store.final_height
        if final == self._pruned_at:
            return
        self._pruned_at = final
        self._headers = {k: v for k, v in self._headers.items() if k[0] > final}
        horizon = self._height() - self.params.unbonding_blocks
        self._votes.prune(horizon)  # the evidence window
        self._reported = {k: h for k, h in self._reported.items() if h > horizon}
        self._pending = {i: v for i, v in self._pending.items() if v[2] > horizon}
        self._waiting = {k: v for k, v in self._waiting.items() if v[1] > horizon}


def _vote_content(att: Attestation) -> tuple[bytes, int, bytes]:
    """What a vote says (target and source): two different ones at one height are a double vote."""
    return att.block_hash, att.height, att.source_hash + att.source_height.to_bytes(8, "big")


def _cap(kept: dict[tuple[int, PubKey], V], limit: int) -> None:
    """Drop the lowest heights when over `limit` (they become final first)."""
    if len(kept) > limit:
        for slot in sorted(kept)[: len(kept) - limit]:
            del kept[slot]


def _evidence(tx: Tx) -> Evidence:
    assert isinstance(tx.payload, SlashEvidence)
    return tx.payload.evidence
