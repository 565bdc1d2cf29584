"""Unit registration and the DATA / VERSION block coinbase (PROTOCOL §3.3, §3.4, §5.1, §6.5)."""

from __future__ import annotations

import dataclasses

import pytest

from chain.block import Exclusion
from chain.codec import encode
from chain.errors import ErrorCode
from chain.hashing import H
from chain.header import BlockKind
from chain.state.model import RewardReason, UnitKind
from chain.state.transition import BlockEffects, BlockError, apply_block
from chain.tx import Transfer
from chain.types import COIN, ZERO_HASH, Amount, BlobHash, ChainId, UnitId
from tests.support.chainbuilders import (
    MemChain,
    data_body,
    dev_genesis,
    make_block,
    mine_data_unit,
    mine_learning_unit,
    version_body,
)


@pytest.fixture
def chain() -> MemChain:
    return MemChain(*dev_genesis(funded=("alice", "bob", "carol")))


def failed(outcome: BlockEffects | BlockError) -> ErrorCode | None:
    assert isinstance(outcome, BlockError)
    return outcome.inner


def test_unit_txs_check_author_chain_pow_and_register_once(chain: MemChain) -> None:
    p = chain.params
    unit = mine_data_unit(p, chain.keys["alice"], 10)
    assert failed(chain.try_txs([chain.tx("bob", unit)])) == ErrorCode.BAD_UNIT  # author != sender
    other_chain = dataclasses.replace(unit, chain_id=ChainId("lc-testnet-1")).mined(p)
    assert failed(chain.try_txs([chain.tx("alice", other_chain)])) == ErrorCode.WRONG_CHAIN
    nonce = next(n for n in range(1000) if not dataclasses.replace(unit, pow_nonce=n).pow_valid(p))
    no_pow = dataclasses.replace(unit, pow_nonce=nonce)
    assert failed(chain.try_txs([chain.tx("alice", no_pow)])) == ErrorCode.BAD_POW
    block, _ = chain.add_txs([chain.tx("alice", unit)])
    record = chain.state.unit(unit.id)
    assert record is not None
    assert (record.kind, record.author, record.n_examples, record.height) == (
        UnitKind.DATA,
        unit.author,
        10,
        block.header.height,
    )
    assert failed(chain.try_txs([chain.tx("alice", unit)])) == ErrorCode.BAD_UNIT


def test_data_block_pays_proposer_and_authors_by_accepted_examples(chain: MemChain) -> None:
    """PROTOCOL §5.1: the data pool is split by accepted examples (the body's counts, which import
    recomputes), not by the examples a unit declares: bob declares twice alice's examples but
    only a third of his are accepted."""
    p = chain.params
    a = mine_data_unit(p, chain.keys["alice"], 10)
    b = mine_data_unit(p, chain.keys["bob"], 20)
    chain.add_txs([chain.tx("alice", a), chain.tx("bob", b)])
    alice, bob, staker = chain.balance("alice"), chain.balance("bob"), chain.balance("staker0")
    assert chain.height + 1 == 2  # the DATA block of round 0
    ids, accepted = zip(*sorted([(a.id, 9), (b.id, 6)], key=lambda x: bytes(x[0])), strict=True)
    block, effects = chain.add(data_body(ids, accepted))
    assert chain.balance("alice") - alice == p.reward_data_pool * 9 // 15
    assert chain.balance("bob") - bob == p.reward_data_pool * 6 // 15
    assert chain.balance("staker0") - staker == p.reward_data_proposer
    reasons = sorted((r.reason, r.ref) for r in effects.rewards)
    assert reasons == sorted(
        [
            (RewardReason.DATA_PROPOSER, block.hash),
            (RewardReason.DATA_CONTRIBUTOR, a.id),
            (RewardReason.DATA_CONTRIBUTOR, b.id),
        ]
    )
    assert chain.state.unit(a.id).used_height == block.header.height  # type: ignore[union-attr]


def test_data_block_refuses_unknown_used_or_learning_units(chain: MemChain) -> None:
    p = chain.params
    a = mine_data_unit(p, chain.keys["alice"], 10)
    learn = mine_learning_unit(p, chain.keys["bob"], ZERO_HASH, 5)
    chain.add_txs([chain.tx("alice", a), chain.tx("bob", learn)])
    key = chain.keys["validator0"]
    ts = chain.tip.timestamp_ms + 1
    for ids in ([UnitId(H(b"nope"))], [learn.id], [a.id, a.id]):
        block = make_block(chain.tip, data_body(ids), key, bytes(32), ts, pow_bits=0)
        assert apply_block(p, chain.state, block) == ErrorCode.BAD_BODY
    chain.add(data_body([a.id]))
    chain.add()  # VERSION
    chain.skip_to(BlockKind.DATA)
    block = make_block(chain.tip, data_body([a.id]), key, bytes(32), chain.tip.timestamp_ms + 1, pow_bits=0)
    assert apply_block(p, chain.state, block) == ErrorCode.BAD_BODY  # already rewarded


def test_a_data_unit_with_no_accepted_example_earns_nothing() -> None:
    """All of bob's examples were dropped (duplicates, say): no share of the pool, no reputation,
    and the unit is used up all the same."""
    c = MemChain(*dev_genesis(n_validators=2))
    p = c.params
    c.add_txs([c.tx("alice", Transfer(c.account("validator1"), Amount(COIN)))])
    dropped = mine_data_unit(p, c.keys["validator1"], 5)
    kept = mine_data_unit(p, c.keys["alice"], 5)
    c.add_txs([c.tx("validator1", dropped), c.tx("alice", kept)])
    author = c.keys["validator1"].pubkey
    before, balance = c.state.validator(author).reputation, c.balance("validator1")  # type: ignore[union-attr]
    ids, accepted = zip(*sorted([(dropped.id, 0), (kept.id, 5)], key=lambda x: bytes(x[0])), strict=True)
    c.skip_to(BlockKind.DATA)
    short = make_block(c.tip, data_body(ids, accepted[:1]), c.keys["validator0"], bytes(32), 0, pow_bits=0)
    assert apply_block(p, c.state, short) == ErrorCode.BAD_BODY  # one count per unit
    block, effects = c.add(data_body(ids, accepted))
    assert c.balance("validator1") == balance
    assert c.state.validator(author).reputation == before  # type: ignore[union-attr]
    assert [bytes(r.ref) for r in effects.rewards if r.reason == RewardReason.DATA_CONTRIBUTOR] == [kept.id]
    assert c.state.unit(dropped.id).used_height == block.header.height  # type: ignore[union-attr]


def test_version_block_moves_reputation_for_included_and_excluded_units() -> None:
    """PROTOCOL §5.2: + for a unit included, - for a unit the rule rejected (an outlier), nothing
    for a stale one; excluded units are used up (judged once); the undo record restores it all."""
    c = MemChain(*dev_genesis(n_validators=4))
    p = c.params
    names = ["validator1", "validator2", "validator3"]
    c.add_txs(
        [
            c.tx("alice", Transfer(c.account(n), Amount(COIN)), nonce=c.nonce("alice") + i)
            for i, n in enumerate(names)
        ]
    )
    base = c.state.model_version().version_id
    good, bad, old = (mine_learning_unit(p, c.keys[n], base, 5) for n in names)
    c.add_txs([c.tx("validator1", good), c.tx("validator2", bad), c.tx("validator3", old)])
    c.skip_to(BlockKind.VERSION)
    reps = {n: c.state.validator(c.keys[n].pubkey).reputation for n in names}  # type: ignore[union-attr]
    out = sorted([(bad.id, Exclusion.NORM_OUTLIER), (old.id, Exclusion.STALE)], key=lambda x: bytes(x[0]))
    body = version_body(
        c.height + 1, base, [(good.id, 5)], BlobHash(H(b"adapter")), 1_900_000, 2_000_000, out
    )
    block, effects = c.add(body)
    after = {n: c.state.validator(c.keys[n].pubkey).reputation for n in names}  # type: ignore[union-attr]
    assert after == {
        "validator1": reps["validator1"] + p.reputation_unit_bonus,
        "validator2": reps["validator2"] - p.reputation_unit_penalty,
        "validator3": reps["validator3"],
    }
    for unit in (good, bad, old):
        assert c.state.unit(unit.id).used_height == block.header.height  # type: ignore[union-attr]
    assert [bytes(r.ref) for r in effects.rewards if r.reason == RewardReason.LEARNING_CONTRIBUTOR] == [
        good.id
    ]
    c.rollback()
    assert {n: c.state.validator(c.keys[n].pubkey).reputation for n in names} == reps  # type: ignore[union-attr]
    assert c.state.unit(bad.id).used_height == 0  # type: ignore[union-attr]
    key = c.keys["validator0"]
    twice = version_body(
        c.height + 1, base, [(good.id, 5)], BlobHash(H(b"a")), 1, 2, [(good.id, Exclusion.MALFORMED)]
    )
    unknown = version_body(
        c.height + 1, base, [(good.id, 5)], BlobHash(H(b"a")), 1, 2, [(UnitId(H(b"?")), Exclusion.MALFORMED)]
    )
    for wrong in (twice, unknown):
        draft = make_block(c.tip, wrong, key, bytes(32), c.tip.timestamp_ms + 1, pow_bits=0)
        assert apply_block(p, c.state, draft) == ErrorCode.BAD_BODY


def test_version_block_pays_learners_only_when_the_score_improves(chain: MemChain) -> None:
    p = chain.params
    base = chain.state.model_version()
    la = mine_learning_unit(p, chain.keys["alice"], base.version_id, 5)
    lb = mine_learning_unit(p, chain.keys["bob"], base.version_id, 5)
    lc = mine_learning_unit(p, chain.keys["carol"], base.version_id, 5)
    chain.add_txs([chain.tx("alice", la), chain.tx("bob", lb), chain.tx("carol", lc)])
    chain.add()  # DATA
    alice, bob = chain.balance("alice"), chain.balance("bob")
    adapter = BlobHash(H(b"adapter-1"))
    body = version_body(3, base.version_id, [(la.id, 1), (lb.id, 3)], adapter, 1_900_000, 2_000_000)
    _, effects = chain.add(body)
    assert chain.balance("alice") - alice == p.reward_learning_pool // 4
    assert chain.balance("bob") - bob == p.reward_learning_pool * 3 // 4
    model = chain.state.model_version()
    assert (model.version, model.version_id, model.adapter_blob_hash, model.score, model.height) == (
        base.version + 1,
        H(encode(body)),
        adapter,
        1_900_000,
        3,
    )
    assert {r.reason for r in effects.rewards} == {
        RewardReason.VERSION_PROPOSER,
        RewardReason.LEARNING_CONTRIBUTOR,
    }
    # next round: a body on the old base version -> BAD_BODY; a worse score pays nobody
    chain.skip_to(BlockKind.VERSION)
    stale = version_body(chain.height + 1, base.version_id, [(lc.id, 1)], adapter, 1, 2)
    key = chain.keys["validator0"]
    draft = make_block(chain.tip, stale, key, bytes(32), chain.tip.timestamp_ms + 1, pow_bits=0)
    assert apply_block(p, chain.state, draft) == ErrorCode.BAD_BODY
    carol = chain.balance("carol")
    worse = version_body(chain.height + 1, model.version_id, [(lc.id, 1)], adapter, 2_100_000, 1_900_000)
    _, effects = chain.add(worse)
    assert chain.balance("carol") == carol
    assert {r.reason for r in effects.rewards} == {RewardReason.VERSION_PROPOSER}
    assert chain.state.model_version().version == base.version + 2


def test_noop_version_block_pays_proposer_only_and_keeps_the_model(chain: MemChain) -> None:
    chain.skip_to(BlockKind.VERSION)
    model = chain.state.model_version()
    staker = chain.balance("staker0")
    _, effects = chain.add()
    assert chain.state.model_version() == model
    assert [r.reason for r in effects.rewards] == [RewardReason.VERSION_PROPOSER]
    assert chain.balance("staker0") - staker == chain.params.reward_version_proposer


def test_a_validator_key_that_authors_an_included_unit_gains_reputation() -> None:
    c = MemChain(*dev_genesis(n_validators=2))
    p = c.params
    author = c.keys["validator1"]
    c.add_txs([c.tx("alice", Transfer(c.account("validator1"), Amount(COIN)))])
    unit = mine_data_unit(p, author, 3)
    c.add_txs([c.tx("validator1", unit)])
    before = c.state.validator(author.pubkey).reputation  # type: ignore[union-attr]
    c.add(data_body([unit.id]))  # proposed by validator0
    assert c.state.validator(author.pubkey).reputation == before + p.reputation_unit_bonus  # type: ignore[union-attr]


def test_reputation_gain_per_block_is_capped() -> None:
    """Finding 4 (issue 10): 100 self-authored units in one DATA block raised the proposer's
    reputation 1005 -> 1500; now one block adds at most `max_reputation_gain_per_block`."""
    c = MemChain(*dev_genesis(n_validators=2))
    p = c.params
    author = c.keys["validator1"]
    c.add_txs([c.tx("alice", Transfer(c.account("validator1"), Amount(COIN)))])
    units = [mine_data_unit(p, author, 3, salt=bytes([i])) for i in range(20)]
    first = c.nonce("validator1")
    c.add_txs([c.tx("validator1", u, nonce=first + i) for i, u in enumerate(units)])
    before = c.state.validator(author.pubkey).reputation  # type: ignore[union-attr]
    assert 20 * p.reputation_unit_bonus > p.max_reputation_gain_per_block
    c.add(data_body([u.id for u in units]))  # the transition alone (validation refuses it today)
    after = c.state.validator(author.pubkey).reputation  # type: ignore[union-attr]
    assert after == before + p.max_reputation_gain_per_block


def test_units_need_examples_a_blob_and_a_bounded_size_in_consensus(chain: MemChain) -> None:
    """Finding 9 (issue 10): `n_examples > 0`, `byte_size > 0` and the learning-unit size limit are
    consensus rules (apply_tx), not only mempool policy (PROTOCOL §3.4)."""
    p = chain.params
    alice = chain.keys["alice"]
    no_examples = mine_data_unit(p, alice, 0)
    assert failed(chain.try_txs([chain.tx("alice", no_examples)])) == ErrorCode.BAD_UNIT
    empty_blob = mine_data_unit(p, alice, 5, byte_size=0)
    assert failed(chain.try_txs([chain.tx("alice", empty_blob)])) == ErrorCode.BAD_UNIT
    base = chain.state.model_version().version_id
    learning = mine_learning_unit(p, alice, base, 0)
    assert failed(chain.try_txs([chain.tx("alice", learning)])) == ErrorCode.BAD_UNIT
    small = dataclasses.replace(p, max_learning_unit_bytes=1024)
    big = dataclasses.replace(mine_learning_unit(p, alice, base, 5), byte_size=2048).mined(small)
    small_chain = MemChain(*dev_genesis(params=small))
    assert failed(small_chain.try_txs([small_chain.tx("alice", big)])) == ErrorCode.BLOB_TOO_LARGE
    ok = mine_learning_unit(p, alice, base, 5)
    assert isinstance(chain.try_txs([chain.tx("alice", ok)]), BlockEffects)


def test_reporter_share_is_capped_at_half() -> None:
    """Finding 9: a reporter share above 50% would make self-reporting pay."""
    from chain.errors import ConfigError
    from chain.params import DEVNET

    with pytest.raises(ConfigError, match="self-reporting"):
        DEVNET.with_overrides({"slash_reporter_share_permille": 501})
    assert DEVNET.with_overrides({"slash_reporter_share_permille": 500}).slash_reporter_share_permille == 500
