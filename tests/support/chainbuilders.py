"""Shared builders of small real chains for tests: a devnet genesis with funded dev keys, and blocks
built and signed without consensus (rank 0, empty VDF fields). Other areas import these; keep the
names and signatures stable.

Owns: `dev_genesis`, `make_block`, `next_block` (applies a body on a state and returns the block with
the right `state_root` and its effects), `certified_header` (a bare header whose parent certificate
carries given votes), `MemChain` (a chain in memory with rollback), unit miners and body builders.
Must not: validate consensus rules (VDF, ranks, certificates are left empty) or mock anything.
"""

from __future__ import annotations

from collections.abc import Sequence

from chain.block import (
    Block,
    Body,
    DataBody,
    Excluded,
    Exclusion,
    QualityReport,
    TxBody,
    UnitWeight,
    VersionBody,
    body_root,
)
from chain.crypto import SecretKey, account_id
from chain.genesis import Allocation, BaseModel, Genesis, GenesisValidator
from chain.hashing import H
from chain.header import PROTOCOL_VERSION, Attestation, BlockKind, Header, kind_for_height, round_for_height
from chain.params import DEVNET, ChainParams
from chain.state import keys
from chain.state.genesis import genesis_block, genesis_memory_state
from chain.state.model import RewardReason, StakeRecord
from chain.state.transition import BlockEffects, BlockError, apply_block, apply_block_detailed
from chain.state.view import MemoryState, StateView, load
from chain.tx import Payload, Tx, make_tx
from chain.types import (
    COIN,
    ZERO_HASH,
    ZERO_PUBKEY,
    AccountId,
    Amount,
    BlobHash,
    BlockHash,
    Hash32,
    Height,
    Micro,
    PubKey,
    Round,
    StateRoot,
    TimestampMs,
    UnitId,
)
from chain.units import DataFormat, DataUnit, Encryption, LearningUnit

GENESIS_TIME_MS = 1_700_000_000_000
VALIDATOR_STAKE = 100 * COIN


def dev_genesis(
    n_validators: int = 1,
    funded: Sequence[str] = ("alice", "bob"),
    amount: int = 1_000 * COIN,
    *,
    params: ChainParams = DEVNET,
    stake: int = VALIDATOR_STAKE,
) -> tuple[Genesis, dict[str, SecretKey]]:
    """A genesis whose accounts `funded` hold `amount` each, with validators "validator0".. whose
    stake `stake` is owned by "staker0".. (unfunded). Keys come from `SecretKey.from_label(name)`."""
    keys = {name: SecretKey.from_label(name) for name in funded}
    validators = []
    for i in range(n_validators):
        keys[f"validator{i}"] = v = SecretKey.from_label(f"validator{i}")
        keys[f"staker{i}"] = s = SecretKey.from_label(f"staker{i}")
        validators.append(GenesisValidator(account_id(s.pubkey), v.pubkey, Amount(stake)))
    allocations = [Allocation(account_id(keys[n].pubkey), Amount(amount)) for n in funded]
    genesis = Genesis(
        params=params,
        timestamp_ms=TimestampMs(GENESIS_TIME_MS),
        allocations=tuple(sorted(allocations, key=lambda a: a.account)),
        validators=tuple(sorted(validators, key=lambda v: v.validator)),
        base_model=BaseModel("lc-tiny", ZERO_HASH),
    )
    return genesis, keys


def make_block(
    parent_header: Header,
    kind_body: Body,
    proposer_key: SecretKey,
    state_root: bytes,
    timestamp_ms: int,
    *,
    pow_bits: int = DEVNET.pow_bits_header,
) -> Block:
    """The child of `parent_header` with this body, signed by `proposer_key` (rank 0, no VDF)."""
    height = parent_header.height + 1
    header = Header(
        version=PROTOCOL_VERSION,
        chain_id=parent_header.chain_id,
        height=Height(height),
        kind=kind_for_height(height),
        prev_hash=parent_header.hash,
        timestamp_ms=TimestampMs(timestamp_ms),
        proposer=proposer_key.pubkey,
        rank=0,
        vdf_output=b"",
        vdf_proof=b"",
        body_root=body_root(kind_body),
        state_root=StateRoot(state_root),
        parent_certificate=(),
    )
    return Block(header.mined(pow_bits).signed(proposer_key), kind_body)


def certified_header(params: ChainParams, height: int, prev: BlockHash, signers: Sequence[PubKey]) -> Header:
    """A header at `height` on `prev` whose parent certificate holds one (unsigned) vote of each of
    `signers` for `prev`, source the genesis; no proposer, VDF or signature: for the epoch and
    validator-set rules (`chain.state.epochs.advance_sets`), which read only heights and votes."""
    cert = tuple(
        Attestation(params.chain_id, Height(height - 1), prev, Height(0), BlockHash(bytes(32)), pk)
        for pk in signers
    )
    return Header(
        version=1,
        chain_id=params.chain_id,
        height=Height(height),
        kind=kind_for_height(height) if height else BlockKind.GENESIS,
        prev_hash=prev,
        timestamp_ms=TimestampMs(height),
        proposer=ZERO_PUBKEY,
        rank=0,
        vdf_output=b"",
        vdf_proof=b"",
        body_root=H(b"body"),
        state_root=StateRoot(bytes(32)),
        parent_certificate=cert,
    )


def empty_body(height: int, base_version_id: Hash32 = ZERO_HASH) -> Body:
    """The smallest valid-looking body for `height`: no txs, no units, a no-op version."""
    kind = kind_for_height(height).name
    if kind == "TX":
        return TxBody()
    if kind == "DATA":
        return DataBody((), QualityReport(0, 0, 0, 0, 0, 0, 0, ZERO_HASH))
    return version_body(height, base_version_id, (), BlobHash(ZERO_HASH), 0, 0)


def data_body(unit_ids: Sequence[UnitId], accepted: Sequence[int] | None = None) -> DataBody:
    """A DATA body for the transition alone (no selection behind it): `accepted` examples per unit
    (default 1 each), which split the data pool."""
    counts = tuple(accepted) if accepted is not None else (1,) * len(unit_ids)
    return DataBody(tuple(unit_ids), QualityReport(len(unit_ids), 0, 0, 0, 0, 0, 0, ZERO_HASH), counts)


def version_body(
    height: int,
    base_version_id: Hash32,
    units: Sequence[tuple[UnitId, int]],
    adapter: BlobHash,
    total_score: int,
    previous_score: int,
    excluded: Sequence[tuple[UnitId, Exclusion]] = (),
) -> VersionBody:
    return VersionBody(
        round=Round(round_for_height(height)),
        base_version_id=base_version_id,
        units=tuple(UnitWeight(u, w) for u, w in units),
        aggregation_rule=DEVNET.aggregation_rule,
        new_adapter_blob_hash=adapter,
        per_batch_scores=(Micro(total_score),),
        total_score=total_score,
        previous_score=previous_score,
        excluded=tuple(Excluded(u, r) for u, r in excluded),
        previous_batch_scores=(Micro(previous_score),),
    )


def next_block(
    params: ChainParams,
    state: StateView,
    parent_header: Header,
    body: Body,
    proposer_key: SecretKey,
    timestamp_ms: int | None = None,
) -> tuple[Block, BlockEffects]:
    """Build the next block on `state` (the parent's state) with the right `state_root`; raises
    AssertionError with the code if the body does not apply."""
    ts = timestamp_ms if timestamp_ms is not None else parent_header.timestamp_ms + params.slot_ms
    draft = make_block(parent_header, body, proposer_key, bytes(32), ts, pow_bits=0)
    effects = apply_block(params, state, draft)
    assert isinstance(effects, BlockEffects), f"body does not apply: {effects!r}"
    block = make_block(parent_header, body, proposer_key, effects.state_root, ts)
    final = apply_block(params, state, block)
    assert isinstance(final, BlockEffects)
    assert final.state_root == effects.state_root
    return block, final


def tx_block(
    params: ChainParams, state: StateView, parent_header: Header, txs: Sequence[Tx], proposer_key: SecretKey
) -> tuple[Block, BlockEffects]:
    return next_block(params, state, parent_header, TxBody(tuple(txs)), proposer_key)


def mine_data_unit(
    params: ChainParams, author: SecretKey, n_examples: int, *, salt: bytes = b"", byte_size: int = 1000
) -> DataUnit:
    unit = DataUnit(
        chain_id=params.chain_id,
        author=author.pubkey,
        blob_hash=BlobHash(H(b"data" + author.pubkey + salt)),
        n_examples=n_examples,
        byte_size=byte_size,
        format=DataFormat.JSONL_TEXT,
        task=0,
        created_ms=TimestampMs(GENESIS_TIME_MS),
        pow_nonce=0,
    )
    return unit.mined(params)


def mine_learning_unit(
    params: ChainParams, author: SecretKey, base_version_id: Hash32, n_examples: int, *, salt: bytes = b""
) -> LearningUnit:
    unit = LearningUnit(
        chain_id=params.chain_id,
        author=author.pubkey,
        base_version_id=base_version_id,
        adapter_blob_hash=BlobHash(H(b"adapter" + author.pubkey + salt)),
        n_examples=n_examples,
        train_loss_micro=Micro(2_000_000),
        dp_epsilon_micro=0,
        encryption=Encryption.PLAINTEXT,
        byte_size=4096,
        created_ms=TimestampMs(GENESIS_TIME_MS),
        pow_nonce=0,
    )
    return unit.mined(params)


class MemChain:
    """A chain in memory: genesis state, then blocks applied with `add`, rolled back with `rollback`.

    Uses the real transition and undo records (no store). `proposer` defaults to "validator0".
    Every `add` asserts that the change of the total supply equals what the block's reward records
    say was minted or burned (set `check_supply = False` for huge states).
    """

    def __init__(self, genesis: Genesis, keys: dict[str, SecretKey]) -> None:
        self.genesis = genesis
        self.params = genesis.params
        self.keys = keys
        self.state: MemoryState = genesis_memory_state(genesis)
        self.blocks: list[Block] = [genesis_block(genesis)]
        self.effects: list[BlockEffects] = []
        self.check_supply = True

    @property
    def tip(self) -> Header:
        return self.blocks[-1].header

    @property
    def height(self) -> int:
        return self.tip.height

    def add(self, body: Body | None = None, proposer: str = "validator0") -> tuple[Block, BlockEffects]:
        """Apply the next block (an empty body of the right kind by default)."""
        if body is None:
            body = empty_body(self.height + 1, self.state.model_version().version_id)
        block, effects = next_block(self.params, self.state, self.tip, body, self.keys[proposer])
        before = supply(self.state) if self.check_supply else 0
        self.state.apply(effects.writes, Height(block.header.height))
        if self.check_supply:  # every change of the supply is explained by the reward records
            assert supply(self.state) - before == minted(effects), effects.rewards
            check_stake_invariants(self.state)
        self.blocks.append(block)
        self.effects.append(effects)
        return block, effects

    def skip_to(self, kind: BlockKind, proposer: str = "validator0") -> None:
        """Add empty blocks until the next height has `kind`."""
        while kind_for_height(self.height + 1) != kind:
            self.add(proposer=proposer)

    def add_txs(self, txs: Sequence[Tx], proposer: str = "validator0") -> tuple[Block, BlockEffects]:
        """Fill with empty DATA/VERSION blocks up to the next TX height, then apply a TX block."""
        self.skip_to(BlockKind.TX, proposer)
        return self.add(TxBody(tuple(txs)), proposer)

    def try_txs(self, txs: Sequence[Tx], proposer: str = "validator0") -> BlockEffects | BlockError:
        """The outcome of a TX block with `txs` on the tip (empty blocks are added up to a TX height)."""
        self.skip_to(BlockKind.TX, proposer)
        block = make_block(
            self.tip,
            TxBody(tuple(txs)),
            self.keys[proposer],
            bytes(32),
            self.tip.timestamp_ms + 1,
            pow_bits=0,
        )
        return apply_block_detailed(self.params, self.state, block)

    def rollback(self) -> Block:
        block = self.blocks.pop()
        effects = self.effects.pop()
        self.state.apply(effects.undo, Height(block.header.height - 1))
        return block

    def account(self, name: str) -> AccountId:
        return account_id(self.keys[name].pubkey)

    def nonce(self, name: str) -> int:
        return self.state.account(self.account(name)).nonce

    def balance(self, name: str) -> int:
        return self.state.account(self.account(name)).balance

    def tx(self, name: str, payload: Payload, *, fee: int | None = None, nonce: int | None = None) -> Tx:
        """A signed tx from `name` with its next nonce and the minimum fee by default."""
        return make_tx(
            self.keys[name],
            self.params.chain_id,
            self.nonce(name) if nonce is None else nonce,
            self.params.min_fee if fee is None else fee,
            payload,
        )


NOT_MINTED = {RewardReason.TX_FEES, RewardReason.UNBONDED}  # moves of existing coins


def minted(effects: BlockEffects) -> int:
    """Coins created (or burned, negative) by a block according to its reward records: every change
    of the total supply must be explained by them (`rewards explain`, PROTOCOL §5.1, §8)."""
    fees_paid = sum(r.amount for r in effects.rewards if r.reason == RewardReason.TX_FEES)
    return sum(r.amount for r in effects.rewards if r.reason not in NOT_MINTED) - (effects.fees - fees_paid)


def supply(state: MemoryState) -> int:
    """Balances + bonded stake + unbonding stake."""
    total: int = sum(state.account(AccountId(k[1:])).balance for k, _ in state.items(keys.ACCOUNT))
    for _, raw in state.items(keys.STAKE):
        s = load(StakeRecord, raw)
        total += s.amount + sum(e.amount for e in s.unbonding)
    return total


def check_stake_invariants(state: MemoryState) -> None:
    """Each validator's `stake_total` is the sum of its bonded stakes; every unbonding entry has
    exactly one release-index key and vice versa; no empty stake record is kept."""
    releases = set()
    for _, raw in state.items(keys.STAKE):
        s = load(StakeRecord, raw)
        assert s.amount > 0 or s.unbonding, s
        releases |= {keys.release_key(e.release_height, s.validator, s.owner) for e in s.unbonding}
    assert releases == {k for k, _ in state.items(keys.RELEASE)}
    for v in state.validators():
        assert v.stake_total == sum(s.amount for s in state.stakes_of(v.pubkey)), v
