"""The learning records of the state (chain.state.learning): version history, the version index and
the DATA blocks' test sets are written by the transition and rolled back by its undo record."""

from __future__ import annotations

import pytest

from chain.block import DataBody, QualityReport
from chain.hashing import H
from chain.header import BlockKind
from chain.state import learning
from chain.state.view import MemoryState
from chain.types import BlobHash, Hash32, Height
from tests.support.chainbuilders import (
    MemChain,
    dev_genesis,
    mine_data_unit,
    mine_learning_unit,
    version_body,
)


@pytest.fixture
def chain() -> MemChain:
    return MemChain(*dev_genesis(funded=("alice", "bob")))


def test_every_version_block_enters_the_history_and_improving_ones_the_index(chain: MemChain) -> None:
    p = chain.params
    base = chain.state.model_version()
    unit = mine_learning_unit(p, chain.keys["alice"], base.version_id, 5)
    chain.add_txs([chain.tx("alice", unit)])
    chain.add()  # DATA
    adapter = BlobHash(H(b"adapter-1"))
    chain.add(version_body(3, base.version_id, [(unit.id, 7)], adapter, 1_900_000, 2_000_000))
    chain.skip_to(BlockKind.VERSION)
    chain.add()  # a no-op
    history = learning.version_history(chain.state)
    assert [(e.version, e.height, e.noop, e.n_units) for e in history] == [(1, 3, False, 1), (1, 6, True, 0)]
    first = history[0]
    assert (first.adapter_hash, first.score, first.previous_score) == (adapter, 1_900_000, 2_000_000)
    assert history[1].adapter_hash == adapter  # a no-op keeps the adapter
    assert learning.version_by_number(chain.state, 1) == first
    assert learning.version_by_number(chain.state, 2) is None
    current = chain.state.model_version()
    assert learning.version_number(chain.state, current.version_id, 2) == 1
    assert learning.version_number(chain.state, bytes(32), 2) == 0
    assert learning.version_number(chain.state, H(b"unknown"), 2) is None


def test_undo_record_removes_the_version_entries(chain: MemChain) -> None:
    p = chain.params
    base = chain.state.model_version()
    unit = mine_learning_unit(p, chain.keys["alice"], base.version_id, 5)
    chain.add_txs([chain.tx("alice", unit)])
    chain.add()
    before: MemoryState = chain.state.copy()
    root = before.state_root
    body = version_body(3, base.version_id, [(unit.id, 7)], BlobHash(H(b"a")), 1, 2)
    _, effects = chain.add(body)
    assert learning.version_history(chain.state)
    chain.state.apply(effects.undo, Height(2))
    assert chain.state.data == before.data
    assert chain.state.state_root == root
    assert learning.version_history(chain.state) == []


def test_data_blocks_with_a_selection_record_their_test_set_newest_first(chain: MemChain) -> None:
    p = chain.params
    units = [mine_data_unit(p, chain.keys["alice"], 4), mine_data_unit(p, chain.keys["bob"], 4)]
    chain.add_txs([chain.tx("alice", units[0]), chain.tx("bob", units[1])])
    hashes = []
    for i, unit in enumerate(units):
        chain.skip_to(BlockKind.DATA)
        test_set = Hash32(H(b"set-%d" % i))
        hashes.append(test_set)
        _, effects = chain.add(
            DataBody((unit.id,), QualityReport(1, 4, 0, 0, 0, 0, 4 - i, test_set), (4 - i,))
        )
    chain.skip_to(BlockKind.DATA)
    chain.add()  # an empty selection records nothing
    recent = learning.recent_test_sets(chain.state, chain.height, 100)
    assert [(e.test_set_hash, e.n_selected) for e in recent] == [(hashes[1], 3), (hashes[0], 4)]
    assert [e.test_set_hash for e in learning.recent_test_sets(chain.state, chain.height, 3)] == [hashes[1]]
    assert learning.recent_test_sets(chain.state, recent[1].height, 100) == [recent[1]]
    chain.state.apply(effects.undo, Height(effects.height - 1))
    assert len(learning.recent_test_sets(chain.state, 10**9, 100)) == 1
