"""The bucketed `state_root` (PROTOCOL §3.5): incremental == from scratch, writes then their undo
return the previous root, the root depends on every key and value but not on write order; and
`StateOverlay` reads, merged prefix iteration and undo agree with a plain dict."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chain.params import DEVNET
from chain.state.root import StateHasher
from chain.state.view import MemoryState, StateOverlay
from chain.types import Height

keys_ = st.binary(min_size=1, max_size=6)
states = st.dictionaries(keys_, st.binary(max_size=8), max_size=40)
writes_ = st.dictionaries(keys_, st.none() | st.binary(max_size=8), max_size=20)


@given(states, writes_)
def test_incremental_root_equals_recomputation_and_undo_restores(
    state: dict[bytes, bytes], writes: dict[bytes, bytes | None]
) -> None:
    hasher = StateHasher(state.items())
    before = hasher.root
    expected = dict(state)
    for k, v in writes.items():
        if v is None:
            expected.pop(k, None)
        else:
            expected[k] = v
    predicted = hasher.root_after(writes)
    assert hasher.root == before  # root_after does not change the hasher
    assert hasher.apply(writes) == predicted == StateHasher(expected.items()).root
    assert len(hasher) == len(expected)
    undo = {k: state.get(k) for k in writes}
    assert hasher.apply(undo) == before


@given(states)
def test_root_is_order_independent_and_sensitive_to_values(state: dict[bytes, bytes]) -> None:
    root = StateHasher(state.items()).root
    assert StateHasher(reversed(list(state.items()))).root == root
    for k, v in list(state.items())[:3]:
        assert StateHasher({**state, k: v + b"x"}.items()).root != root
        assert StateHasher({kk: vv for kk, vv in state.items() if kk != k}.items()).root != root


def test_empty_state_root_is_stable() -> None:
    assert StateHasher().root == StateHasher([]).root
    assert StateHasher().root_after({b"k": None}) == StateHasher().root
    assert StateHasher().root_after({b"k": b""}) != StateHasher().root


@given(states, writes_, writes_, st.binary(max_size=2))
def test_overlay_reads_and_prefix_iteration_match_a_dict(
    state: dict[bytes, bytes], w1: dict[bytes, bytes | None], w2: dict[bytes, bytes | None], prefix: bytes
) -> None:
    base = MemoryState(DEVNET, Height(0), state)
    outer = StateOverlay(base)
    outer.writes.update(w1)
    inner = outer.child()
    inner.writes.update(w2)
    model = dict(state)
    for w in (w1, w2):
        for k, v in w.items():
            if v is None:
                model.pop(k, None)
            else:
                model[k] = v
    assert list(inner.items(prefix)) == sorted((k, v) for k, v in model.items() if k.startswith(prefix))
    assert all(inner.get(k) == model.get(k) for k in {*state, *w1, *w2})
    assert inner.state_root == StateHasher(model.items()).root
    outer.merge(inner)
    assert outer.state_root == inner.state_root
    undo = outer.undo()
    assert base.apply(outer.writes, Height(1)) == StateHasher(model.items()).root
    assert base.apply(undo, Height(0)) == StateHasher(state.items()).root


def test_state_root_golden_vectors() -> None:
    """Pins the root definition (a consensus rule): changing it must break this test on purpose."""
    assert StateHasher().root.hex() == "132d0e13d99bf98fc25097bd77ec61fff5230b6eef9587f8fd0e654b5c821156"
    two = StateHasher([(b"a", b"1"), (b"b", b"2")]).root
    assert two.hex() == "15393209b1bb7af4ab8ec782a8e7dc9c2921ab58b1a6f1f411c1802030185a6b"
