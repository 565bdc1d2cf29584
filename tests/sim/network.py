"""In-process multi-validator simulation: direct message delivery, a fake clock, no network.

Owns: `SimNetwork` (an event queue with per-link delays, drops and partitions) and `SimNode` (one
validator with its own block tree and per-block states, built from the pure rules of
chain.consensus: `validate_block` + `check_state_root`, `choose_head`, `advance_final`, the duties of
chain.consensus.duties, `verify_evidence`) plus the Byzantine behaviours. Must not: hold test
assertions beyond the safety invariants every node checks on itself (`SafetyViolation`).

Each node keeps the state after every valid block (`MemoryState` copies: states are tiny here, and
shared between nodes like the transition's result), so side branches validate without reorgs; the
state transition is the state engineer's `apply_block`.
Because `apply_block(params, state_of(parent), block)` is a pure function of the block (its parent
fixes the state), the network caches its result by block hash (`SimNetwork.apply`) to keep 200
schedules fast; every node still runs every other rule (PoW, signature, VDF, rank, timestamp,
certificate, body, state root) itself.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count

from chain.block import Block, Body, TxBody, body_root
from chain.consensus.certificate import check_attestation, meets_threshold
from chain.consensus.duties import (
    ProposalDuty,
    attestation_for,
    build_certificate,
    idle_body,
    proposal_duty,
    should_propose,
    unsigned_header,
)
from chain.consensus.election import challenge_for_child
from chain.consensus.finality import finalized_by, vote_source
from chain.consensus.forkchoice import advance_final, choose_head, descends_from
from chain.consensus.slashing import invalid_block_evidence, verify_evidence
from chain.consensus.validation import check_state_root, validate_block
from chain.consensus.validators import source_matches, vote_weights
from chain.crypto import SecretKey, account_id
from chain.errors import ErrorCode
from chain.evidence import DoubleAttest, DoubleProposal, Evidence, EvidenceKind, SurroundVote
from chain.genesis import Genesis
from chain.header import Attestation, BlockKind, Header, kind_for_height
from chain.params import DEVNET, ChainParams
from chain.state.genesis import genesis_block, genesis_memory_state
from chain.state.transition import BlockEffects, apply_block
from chain.state.view import MemoryState, StateView
from chain.tx import SlashEvidence, Transfer, make_tx
from chain.types import ZERO_HASH, AccountId, Amount, BlockHash, ChainId, Hash32, Height, PubKey, StateRoot
from tests.sim.world import MemoryView, VdfImpl, vrf_proof_for
from tests.support.chainbuilders import dev_genesis

MAX_ANNOUNCED_VOTES = 256  # like the daemon's MAX_REANNOUNCED_VOTES: re-sent votes are bounded


class SafetyViolation(AssertionError):
    """Raised when a node would revert a final block or two nodes finalise conflicting blocks."""


@dataclass(frozen=True)
class Behaviour:
    """What a (Byzantine) node does differently from the honest protocol."""

    silent: bool = False  # never proposes, never attests
    equivocate: bool = False  # proposes two different blocks per duty, one to each half
    double_attest: bool = False  # votes for every block it sees at a height, not only its head
    surround: bool = False  # every second vote signs a forged source 0: it surrounds the one before
    invalid_blocks: bool = False  # its TX blocks carry a tx signed for another chain (stateless fault)

    @property
    def honest(self) -> bool:
        return not (
            self.silent or self.equivocate or self.double_attest or self.invalid_blocks or self.surround
        )


HONEST = Behaviour()


@dataclass
class SimNode:
    net: SimNetwork
    index: int
    key: SecretKey
    behaviour: Behaviour
    view: MemoryView
    blocks: dict[BlockHash, Block] = field(default_factory=dict)
    effects: dict[BlockHash, BlockEffects] = field(default_factory=dict)
    votes: dict[BlockHash, dict[PubKey, Attestation]] = field(default_factory=dict)
    first_vote: dict[tuple[PubKey, int], Attestation] = field(default_factory=dict)
    spans: dict[PubKey, list[Attestation]] = field(default_factory=dict)  # first vote per height
    seen_votes: set[Attestation] = field(default_factory=set)
    by_proposer: dict[tuple[PubKey, int], Header] = field(default_factory=dict)
    evidence: dict[Hash32, Evidence] = field(default_factory=dict)
    orphans: dict[BlockHash, list[Block]] = field(default_factory=dict)
    pending_votes: dict[BlockHash, list[Attestation]] = field(default_factory=dict)
    attested: set[int] = field(default_factory=set)
    last_vote: tuple[int, int] = (0, 0)  # (height, source height) of my last attestation
    vote_log: list[tuple[int, int]] = field(default_factory=list)  # every (height, source) I signed
    proposed_on: set[BlockHash] = field(default_factory=set)
    rejected: dict[BlockHash, ErrorCode] = field(default_factory=dict)
    final_log: list[BlockHash] = field(default_factory=list)
    head: BlockHash = BlockHash(b"")  # noqa: RUF009 - NewType call is free
    skew_ms: int = 0  # this node's clock minus the network's (fake) clock

    @property
    def local_now(self) -> int:
        return self.net.now + self.skew_ms

    # -- lookups ---------------------------------------------------------------------------------
    @property
    def pubkey(self) -> PubKey:
        return self.key.pubkey

    @property
    def params(self) -> ChainParams:
        return self.net.params

    @property
    def final(self) -> BlockHash:
        return self.view.final

    def header(self, h: BlockHash) -> Header:
        return self.view.headers[h]

    def state(self, h: BlockHash) -> StateView:
        return self.view.states[h]

    def eligible_for(self, block_hash: BlockHash) -> dict[PubKey, int]:
        hd = self.header(block_hash)
        return self.net.eligible(hd.prev_hash, hd.height, self.state(hd.prev_hash))

    def source_height(self, block_hash: BlockHash) -> int:
        src = vote_source(self.params, self.view.headers, block_hash, self.eligible_for, self.final)
        return self.header(src).height

    def vote_weight(self, block_hash: BlockHash) -> int:
        eligible = self.eligible_for(block_hash) if block_hash in self.view.headers else {}
        return sum(eligible.get(v, 0) for v in self.votes.get(block_hash, {}))

    def chain(self, tip: BlockHash | None = None) -> list[Header]:
        """Headers from genesis to `tip` (the head by default)."""
        out = []
        h = self.header(tip or self.head)
        while True:
            out.append(h)
            if h.height == 0:
                return out[::-1]
            h = self.header(h.prev_hash)

    # -- receiving -------------------------------------------------------------------------------
    def on_block(self, block: Block, sender: int | None) -> None:
        h = self.net.block_hash(block)
        if h in self.view.headers or h in self.rejected:
            return
        parent = block.header.prev_hash
        if parent not in self.view.headers:
            self.orphans.setdefault(parent, []).append(block)
            if sender is not None:
                self.net.request(self.index, sender, parent)
            return
        result = self._validate(block)
        if isinstance(result, ErrorCode):
            if result == ErrorCode.FUTURE_BLOCK:
                self.net.future_blocks += 1
                self.net.later(self.index, block, 200)  # transient: retry later, never punish
            elif result.is_permanent:
                self.rejected[h] = result
                # a signed block whose committed body breaks a stateless rule is provable (§5.3):
                # the header, the bad leaf and its Merkle branch
                evidence = invalid_block_evidence(self.params, block)
                if evidence is not None:
                    self._add_evidence(evidence)
            return
        self._accept(block, h, result)

    def _validate(self, block: Block) -> BlockEffects | ErrorCode:
        """§4.7 as the daemon sequences it: header and body rules, transition, state root."""
        code = validate_block(self.params, self.view, block, self.local_now, self.net.vdf.verify)
        if code is not None:
            return code
        effects = self.net.apply(self.params, self.state(block.header.prev_hash), block)
        if isinstance(effects, ErrorCode):
            return effects
        return check_state_root(block, effects.state_root) or effects

    def _accept(self, block: Block, h: BlockHash, effects: BlockEffects) -> None:
        header = block.header
        state = self.net.state_after(h, self.state(header.prev_hash), effects)
        self.view.add(header, state, h)
        self.blocks[h] = block
        self.effects[h] = effects
        self.net.register(h, header)
        other = self.by_proposer.setdefault((header.proposer, header.height), header)
        if other is not header and other != header:
            self._add_evidence(Evidence(EvidenceKind.DOUBLE_PROPOSAL, DoubleProposal(other, header)))
        self.net.broadcast(self.index, "block", block)  # relay (flooding gossip)
        for att in header.parent_certificate:  # validated with the header
            self._count_vote(att)
        for child in self.orphans.pop(h, []):
            self.on_block(child, None)
        for att in self.pending_votes.pop(h, []):
            self.on_vote(att)
        if self.behaviour.double_attest and not self.behaviour.silent:
            self._vote(header)
        self.update()

    def on_vote(self, att: Attestation) -> None:
        if att in self.seen_votes:
            return
        if att.block_hash not in self.view.headers:
            if att.height > self.header(self.final).height:
                self.pending_votes.setdefault(att.block_hash, []).append(att)
            else:  # at or below the final height: not counted, but evidence (§4.4, finding 5)
                self.seen_votes.add(att)
                if att.chain_id == self.params.chain_id and att.signature_valid():
                    self._watch_vote(att)
            return
        self.seen_votes.add(att)
        if att.height != self.header(att.block_hash).height:
            return
        if check_attestation(self.params.chain_id, att, self.eligible_for(att.block_hash)) is not None:
            return
        self._watch_vote(att)  # every validly signed vote is checked for double and surround votes
        if not source_matches(att, self.state(att.block_hash)):
            return  # a vote that does not sign its target's source is never counted (§4.4)
        self._count_vote(att)
        self.net.broadcast(self.index, "vote", att)
        self.update()

    def _count_vote(self, att: Attestation) -> None:
        self.votes.setdefault(att.block_hash, {})[att.validator] = att
        self._watch_vote(att)

    def _watch_vote(self, att: Attestation) -> None:
        """The evidence watcher: the first vote per (validator, height) and every vote's span."""
        first = self.first_vote.setdefault((att.validator, att.height), att)
        if first != att and (first.block_hash, first.source_height, first.source_hash) != (
            att.block_hash,
            att.source_height,
            att.source_hash,
        ):
            self._add_evidence(Evidence(EvidenceKind.DOUBLE_ATTEST, DoubleAttest(first, att)))
        spans = self.spans.setdefault(att.validator, [])
        for old in spans:
            if old.source_height < att.source_height and att.height < old.height:
                self._add_evidence(Evidence(EvidenceKind.SURROUND_VOTE, SurroundVote(old, att)))
            elif att.source_height < old.source_height and old.height < att.height:
                self._add_evidence(Evidence(EvidenceKind.SURROUND_VOTE, SurroundVote(att, old)))
        if first is att:
            spans.append(att)

    def on_evidence(self, ev: Evidence) -> None:
        found = verify_evidence(self.params, self.state(self.head), ev)
        if not isinstance(found, ErrorCode) and found[1] not in self.evidence and found[0] != self.pubkey:
            self.evidence[found[1]] = ev

    def _add_evidence(self, ev: Evidence) -> None:
        found = verify_evidence(self.params, self.state(self.head), ev)
        if isinstance(found, ErrorCode) or found[1] in self.evidence or found[0] == self.pubkey:
            return
        self.evidence[found[1]] = ev
        self.net.broadcast(self.index, "evidence", ev)

    # -- fork choice and finality ----------------------------------------------------------------
    def update(self) -> None:
        """Finality, then fork choice (chain.consensus.finality / forkchoice), then my duties."""
        old_final = self.final
        final = old_final
        final_height = self.header(final).height
        headers = self.view.headers
        for block_hash in self.votes:
            hd = headers.get(block_hash)
            if hd is None or hd.height <= final_height + (0 if self.net.literal_rule else 1):
                continue
            if self.net.literal_rule:  # PROTOCOL §4.4 read literally: 2/3 votes on a block = final
                eligible = self.eligible_for(block_hash)
                done = meets_threshold(self.params, self.vote_weight(block_hash), sum(eligible.values()))
                candidate: BlockHash | None = block_hash if done else None
            else:
                candidate = finalized_by(
                    self.params, headers, block_hash, self.vote_weight, self.eligible_for
                )
            if candidate is not None:
                new = advance_final(headers, final, candidate)
                if new != final:
                    final, final_height = new, self.header(new).height
        if final != old_final:
            if not descends_from(headers, final, old_final):
                raise SafetyViolation(f"node {self.index} would revert final block {old_final.hex()[:12]}")
            self.view.final = final
            self.final_log.append(final)
            self.net.check_final(self.index, final)
        source = None if self.net.literal_rule else self.source_height
        head = choose_head(headers, self.final, self.vote_weight, source)
        if not descends_from(headers, head, self.final):
            raise SafetyViolation(f"node {self.index}: head does not descend from its final block")
        if head != self.head:
            self.head = head
            self.net.head_changes += 1
            self.on_new_head()

    def on_new_head(self) -> None:
        if self.behaviour.silent:
            return
        self._vote(self.header(self.head))
        duty = self._duty(self.head)
        if duty is not None:
            self.net.at(max(self.net.now, duty.not_before_ms - self.skew_ms), lambda: self.try_propose(duty))

    def _vote(self, header: Header) -> None:
        if header.height == 0:
            return
        h = self.net.header_hash(header)
        if self.net.literal_rule:  # once per height, nothing else (PROTOCOL §4.4 read literally)
            if header.height in self.attested and not self.behaviour.double_attest:
                return
            last, last_source = header.height - 1, 0
        else:
            last, last_source = self.last_vote
        if self.behaviour.double_attest:
            last, last_source = 0, 0  # votes for everything it sees
        unsigned = attestation_for(
            self.params,
            header,
            self.state(header.prev_hash),
            self.state(h),
            self.pubkey,
            last_height=last,
            last_source_height=last_source,
        )
        if unsigned is None:
            return
        if self.behaviour.surround and self.vote_log and self.vote_log[-1][1] > 0:
            # a forged low source: (0 -> h) strictly surrounds the previous (s > 0 -> h' < h)
            unsigned = dataclasses.replace(
                unsigned, source_height=Height(0), source_hash=BlockHash(ZERO_HASH)
            )
        self.attested.add(header.height)
        self.last_vote = (header.height, unsigned.source_height)
        self.vote_log.append(self.last_vote)
        att = unsigned.signed(self.key)
        self.seen_votes.add(att)
        if source_matches(att, self.state(h)):
            self._count_vote(att)
        self.net.broadcast(self.index, "vote", att)

    # -- proposing -------------------------------------------------------------------------------
    def _duty(self, parent_hash: BlockHash) -> ProposalDuty | None:
        parent = self.header(parent_hash)
        y, _ = self.net.vdf_of(parent_hash)
        return proposal_duty(self.params, parent, self.state(parent_hash), y, self.pubkey)

    def try_propose(self, duty: ProposalDuty) -> None:
        if self.head != duty.parent_hash or duty.parent_hash in self.proposed_on:
            return
        known = [h.rank for h in self.view.headers.values() if h.prev_hash == duty.parent_hash]
        if not should_propose(duty, self.local_now, known):
            return
        self.proposed_on.add(duty.parent_hash)
        if self.behaviour.invalid_blocks and kind_for_height(duty.height) == BlockKind.TX:
            self.net.broadcast(self.index, "block", self.build_invalid_block(duty, self.local_now))
            return
        block = self.build_block(duty, self.local_now)
        if self.behaviour.equivocate:
            twin = self.build_block(duty, self.local_now + 1)
            self.net.split_send(self.index, block, twin)
        self.on_block(block, None)

    def build_block(self, duty: ProposalDuty, now: int) -> Block:
        parent = self.header(duty.parent_hash)
        pstate = self.state(duty.parent_hash)
        body = self._body(duty.height, pstate)
        y, proof = self.net.vdf_of(duty.parent_hash)
        cert: tuple[Attestation, ...] = ()
        if parent.height > 0:
            cert = build_certificate(
                self.params,
                parent,
                self.eligible_for(parent.hash).items(),
                self.votes.get(parent.hash, {}).values(),
            )
        vrf_proof = vrf_proof_for(self.params, parent, self.key)
        draft = unsigned_header(
            self.params,
            parent,
            duty,
            now,
            y,
            proof,
            body_root(body),
            StateRoot(b"\x00" * 32),
            cert,
            self.pubkey,
            vrf_proof=vrf_proof,
        )
        effects = apply_block(self.params, pstate, Block(draft, body))
        assert isinstance(effects, BlockEffects), effects
        header = dataclasses.replace(draft, state_root=effects.state_root)
        return Block(header.mined(self.params.pow_bits_header).signed(self.key), body)

    def build_invalid_block(self, duty: ProposalDuty, now: int) -> Block:
        """A correctly signed and committed TX block with a tx for another chain id."""
        parent = self.header(duty.parent_hash)
        to = self.net.account_of(self.pubkey)
        bad = make_tx(self.key, ChainId("lc-elsewhere"), 0, self.params.min_fee, Transfer(to, Amount(1)))
        body = TxBody((bad,))
        y, proof = self.net.vdf_of(duty.parent_hash)
        vrf_proof = vrf_proof_for(self.params, parent, self.key)
        header = unsigned_header(
            self.params,
            parent,
            duty,
            now,
            y,
            proof,
            body_root(body),
            parent.state_root,
            (),
            self.pubkey,
            vrf_proof=vrf_proof,
        )
        return Block(header.mined(self.params.pow_bits_header).signed(self.key), body)

    def _body(self, height: int, pstate: StateView) -> Body:
        if kind_for_height(height) != BlockKind.TX:
            return idle_body(pstate, height)
        txs = []
        nonce = int(pstate.account(self.net.account_of(self.pubkey)).nonce)
        for ev in self.evidence.values():
            if isinstance(verify_evidence(self.params, pstate, ev), ErrorCode):
                continue
            txs.append(make_tx(self.key, self.params.chain_id, nonce, self.params.min_fee, SlashEvidence(ev)))
            nonce += 1
        return TxBody(tuple(txs[:4]))


@dataclass
class SimNetwork:
    """Validators with a shared fake clock and a priority queue of deliveries."""

    params: ChainParams
    genesis: Genesis
    keys: list[SecretKey]
    vdf: VdfImpl
    rng: random.Random
    behaviours: dict[int, Behaviour] = field(default_factory=dict)
    delay_ms: tuple[int, int] = (5, 150)
    drop: float = 0.0
    partition: list[set[int]] | None = None  # groups that cannot reach each other
    literal_rule: bool = False  # negative control: finality and voting as PROTOCOL §4.4 literally says
    now: int = 0
    nodes: list[SimNode] = field(default_factory=list)
    all_blocks: dict[BlockHash, Header] = field(default_factory=dict)
    final_claims: dict[int, BlockHash] = field(default_factory=dict)
    head_changes: int = 0
    future_blocks: int = 0  # FUTURE_BLOCK results (clock skew), each retried later
    _queue: list[tuple[int, int, Callable[[], None]]] = field(default_factory=list)
    _seq: count[int] = field(default_factory=count)
    _vdf_cache: dict[BlockHash, tuple[bytes, bytes]] = field(default_factory=dict)
    _apply_cache: dict[BlockHash, BlockEffects | ErrorCode] = field(default_factory=dict)
    _eligible_cache: dict[BlockHash, dict[PubKey, int]] = field(default_factory=dict)
    _state_cache: dict[BlockHash, MemoryState] = field(default_factory=dict)
    _accounts: dict[PubKey, AccountId] = field(default_factory=dict)
    _hashes: dict[int, tuple[Header, BlockHash]] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        n: int,
        vdf: VdfImpl,
        *,
        seed: int = 0,
        params: ChainParams = DEVNET,
        behaviours: dict[int, Behaviour] | None = None,
        delay_ms: tuple[int, int] = (5, 150),
        drop: float = 0.0,
        literal_rule: bool = False,
        skews_ms: tuple[int, ...] = (),
    ) -> SimNetwork:
        """`n` validators (equal stake, funded validator accounts), all at genesis."""
        names = [f"validator{i}" for i in range(n)]
        genesis, keymap = dev_genesis(n, funded=names, params=params)
        net = cls(
            genesis.params,
            genesis,
            [keymap[x] for x in names],
            vdf,
            random.Random(seed),
            behaviours or {},
            delay_ms=delay_ms,
            drop=drop,
            literal_rule=literal_rule,
        )
        gblock = genesis_block(genesis)
        gstate = genesis_memory_state(genesis)
        net.now = gblock.header.timestamp_ms
        net.all_blocks[gblock.hash] = gblock.header
        for i, key in enumerate(net.keys):
            node = SimNode(
                net, i, key, net.behaviours.get(i, HONEST), MemoryView.from_genesis(gblock.header, gstate)
            )
            node.head = gblock.hash
            node.skew_ms = skews_ms[i] if i < len(skews_ms) else 0
            node.final_log.append(gblock.hash)
            net.nodes.append(node)
        for node in net.nodes:
            node.on_new_head()
        return net

    # -- shared pure caches ----------------------------------------------------------------------
    def vdf_of(self, parent_hash: BlockHash) -> tuple[bytes, bytes]:
        """The VDF of the child of `parent_hash` (any node could compute it; a timelord shares it)."""
        if parent_hash not in self._vdf_cache:
            challenge = challenge_for_child(self.params.chain_id, self.all_blocks[parent_hash])
            self._vdf_cache[parent_hash] = self.vdf.prove(
                challenge, self.params.vdf_discriminant_bits, self.params.vdf_iterations
            )
        return self._vdf_cache[parent_hash]

    def apply(self, params: ChainParams, state: StateView, block: Block) -> BlockEffects | ErrorCode:
        if block.hash not in self._apply_cache:
            self._apply_cache[block.hash] = apply_block(params, state, block)
        return self._apply_cache[block.hash]

    def state_after(self, h: BlockHash, parent_state: StateView, effects: BlockEffects) -> MemoryState:
        """The state after block `h` (a pure function of the block, like `apply`): built once."""
        state = self._state_cache.get(h)
        if state is None:
            assert isinstance(parent_state, MemoryState)
            state = parent_state.copy()
            state.apply(effects.writes, Height(parent_state.height + 1))
            self._state_cache[h] = state
        return state

    def eligible(self, parent_hash: BlockHash, height: int, state: StateView) -> dict[PubKey, int]:
        if parent_hash not in self._eligible_cache:
            self._eligible_cache[parent_hash] = dict(vote_weights(state, height))
        return self._eligible_cache[parent_hash]

    def account_of(self, pubkey: PubKey) -> AccountId:
        return self._accounts.setdefault(pubkey, account_id(pubkey))

    # -- events ----------------------------------------------------------------------------------
    def at(self, t: int, fn: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (t, next(self._seq), fn))

    def reachable(self, src: int, dst: int) -> bool:
        if self.partition is None:
            return True
        return any(src in g and dst in g for g in self.partition)

    def send(self, src: int, dst: int, kind: str, obj: object, *, reliable: bool = False) -> None:
        if src == dst or not self.reachable(src, dst):
            return
        if not reliable and self.drop and self.rng.random() < self.drop:
            return
        node = self.nodes[dst]
        t = self.now + self.rng.randint(*self.delay_ms)
        if kind == "block":
            self.at(t, lambda: node.on_block(obj, src))  # type: ignore[arg-type]
        elif kind == "vote":
            self.at(t, lambda: node.on_vote(obj))  # type: ignore[arg-type]
        else:
            self.at(t, lambda: node.on_evidence(obj))  # type: ignore[arg-type]

    def broadcast(self, src: int, kind: str, obj: object) -> None:
        for dst in range(len(self.nodes)):
            self.send(src, dst, kind, obj)

    def split_send(self, src: int, a: Block, b: Block) -> None:
        """An equivocator's two blocks: the lower half of the other nodes gets `a`, the rest `b`."""
        others = [i for i in range(len(self.nodes)) if i != src]
        for j, dst in enumerate(others):
            self.send(src, dst, "block", a if j < len(others) // 2 else b)

    def request(self, src: int, dst: int, block_hash: BlockHash) -> None:
        """`src` asks `dst` for a block it is missing (the sync protocol): a reliable, delayed reply."""
        if not self.reachable(src, dst):
            return
        block = self.nodes[dst].blocks.get(block_hash)
        if block is not None:
            self.send(dst, src, "block", block, reliable=True)

    def later(self, dst: int, block: Block, delay: int) -> None:
        self.at(self.now + delay, lambda: self.nodes[dst].on_block(block, None))

    def announce(self) -> None:
        """Every node re-sends its head and the votes above its final block (status/sync)."""
        for node in self.nodes:
            if node.head in node.blocks:
                self.broadcast(node.index, "block", node.blocks[node.head])
            fh = node.header(node.final).height
            unfinal = [
                att
                for bh, votes in node.votes.items()
                if bh in node.view.headers and node.header(bh).height > fh
                for att in votes.values()
            ]
            unfinal.sort(key=lambda a: -a.height)  # the daemon's bound: the highest votes first
            for att in unfinal[:MAX_ANNOUNCED_VOTES]:
                self.broadcast(node.index, "vote", att)

    def start_announcing(self, every_ms: int) -> None:
        """Re-announce heads and votes every `every_ms` (what status/sync does on a real network)."""

        def tick() -> None:
            self.announce()
            self.at(self.now + every_ms, tick)

        self.at(self.now + every_ms, tick)

    def run_until(self, t: int) -> None:
        while self._queue and self._queue[0][0] <= t:
            when, _, fn = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            fn()
        self.now = max(self.now, t)

    def run_slots(self, n_slots: int) -> None:
        self.run_until(self.now + n_slots * self.params.slot_ms)

    def run_until_true(self, predicate: Callable[[], bool], max_slots: int) -> bool:
        """Run slot by slot until `predicate()` holds (True) or `max_slots` passed (False)."""
        for _ in range(max_slots):
            if predicate():
                return True
            self.run_slots(1)
        return predicate()

    # -- global safety ---------------------------------------------------------------------------
    def register(self, h: BlockHash, header: Header) -> None:
        self.all_blocks.setdefault(h, header)

    def check_final(self, index: int, final: BlockHash) -> None:
        """Two nodes' final blocks must lie on one chain (PROTOCOL §4.4 accountable safety)."""
        self.final_claims[index] = final
        for other, theirs in self.final_claims.items():
            lo, hi = (final, theirs)
            if self.all_blocks[lo].height > self.all_blocks[hi].height:
                lo, hi = hi, lo
            if not descends_from(self.all_blocks, hi, lo):
                raise SafetyViolation(f"nodes {index} and {other} finalised conflicting blocks")

    def block_hash(self, block: Block) -> BlockHash:
        return self.header_hash(block.header)

    def header_hash(self, header: Header) -> BlockHash:
        """`header.hash`, memoised per object (every node receives the same object)."""
        hit = self._hashes.get(id(header))
        if hit is None or hit[0] is not header:
            hit = (header, header.hash)
            self._hashes[id(header)] = hit
        return hit[1]

    # -- observations for tests ------------------------------------------------------------------
    @property
    def honest(self) -> list[SimNode]:
        return [n for n in self.nodes if n.behaviour.honest]

    def final_heights(self, *, honest_only: bool = False) -> list[int]:
        return [n.header(n.final).height for n in (self.honest if honest_only else self.nodes)]
