"""The DATA block's test-set selection (PROTOCOL §6.4, chain.consensus.data_selection, chain.examples).

Owns: a pinned selection and report for fixed inputs, one test per drop reason, order independence,
the cap, the active test set window, the DATA body check and the shared line parser.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.block import DataBody, QualityReport
from chain.consensus.data_selection import (
    NUM_PERM,
    SelectionError,
    active_test_set,
    check_data_body,
    check_data_body_stateless,
    choose_units,
    data_body,
    exact_key,
    input_limits,
    jsonl_bytes,
    select_test_set,
    signature,
    unit_problem,
)
from chain.errors import ErrorCode
from chain.examples import Example, normalise, parse_line, split_lines
from chain.hashing import H
from chain.params import DEVNET
from chain.types import ZERO_HASH, BlobHash, ChainId, PubKey, TimestampMs
from chain.units import DataFormat, DataUnit

SENTENCES = [
    "The river carried the last of the autumn leaves past the old mill.",
    "A compiler turns source text into instructions a machine can run.",
    "She counted the stars until the sky grew pale over the harbour.",
    "Every prime above two is odd, but not every odd number is prime.",
    "The library closes at nine, so the students gathered their notes early.",
    "Bread rises because yeast releases gas that the dough traps in bubbles.",
    "In winter the lake froze so thick that carts could cross it safely.",
    "A hash function maps data of any size to a fixed number of bits.",
]


def _line(doc: object) -> bytes:
    return json.dumps(doc).encode()


def _unit(
    lines: list[bytes], fmt: DataFormat = DataFormat.JSONL_TEXT, author: int = 1
) -> tuple[DataUnit, bytes]:
    blob = b"\n".join(lines) + b"\n"
    unit = DataUnit(
        chain_id=ChainId("lc-devnet"),
        author=PubKey(bytes([author]) * 32),
        blob_hash=BlobHash(H(blob)),
        n_examples=len(lines),
        byte_size=len(blob),
        format=fmt,
        task=0,
        created_ms=TimestampMs(1_700_000_000_000),
        pow_nonce=0,
    )
    return unit, blob


def _fixture() -> list[tuple[DataUnit, bytes]]:
    text = [_line({"text": s}) for s in SENTENCES[:6]]
    text += [
        _line(
            {"text": "  THE RIVER carried the last of the autumn leaves   past the old mill.  "}
        ),  # exact dup
        _line({"text": "The river carried the last of the autumn leaves past the old mil."}),  # near dup
        b"{not json",  # malformed
        _line({"txt": "wrong key"}),  # malformed
        _line({"text": ""}),  # malformed (empty)
        _line({"prompt": "q", "completion": "a pair in a text unit"}),  # malformed (kind)
        _line({"text": "short"}),  # outlier: under min_example_bytes
        _line({"text": "x" * 5000}),  # outlier: over max_example_bytes
    ]
    pairs = [
        _line({"prompt": "Q: What freezes in winter? A:", "completion": " The lake."}),
        _line({"prompt": "Q: What does a compiler do? A:", "completion": " It translates source text."}),
        _line(
            {"prompt": "Q: What does a compiler do? A:", "completion": " It translates source text."}
        ),  # dup
        _line({"text": SENTENCES[6]}),  # malformed (kind)
    ]
    third = [_line({"text": s}) for s in SENTENCES[6:]] + [_line({"text": SENTENCES[0]})]  # a cross-unit dup
    return [_unit(text), _unit(pairs, DataFormat.JSONL_PROMPT_COMPLETION, 2), _unit(third, author=3)]


def test_fixed_inputs_give_the_pinned_selection_and_report() -> None:
    units = _fixture()
    sel = select_test_set(DEVNET, units)
    r = sel.report
    assert (r.n_units, r.n_examples_in) == (3, 21)
    assert r.n_malformed == 5
    assert r.n_exact_duplicates == 3  # case/whitespace variant, repeated pair, cross-unit repeat
    assert r.n_outliers == 2
    assert r.n_near_duplicates == 1
    assert r.n_selected == 21 - 5 - 3 - 2 - 1 == 10
    assert r.test_set_hash == H(jsonl_bytes(sel.examples))
    assert sorted(e.completion for e in sel.examples if e.kind == "text") == sorted(SENTENCES)
    assert [uid for uid, _ in sel.accepted] == sorted(u.id for u, _ in units)
    # golden: any change to parsing, normalisation, MinHash or ordering changes these
    authors = {u.id: u.author[0] for u, _ in units}
    assert [(authors[uid], n) for uid, n in sel.accepted] == GOLDEN_ACCEPTED
    assert r.test_set_hash.hex() == GOLDEN_TEST_SET_HASH


GOLDEN_TEST_SET_HASH = "19ed09335b65ec077d0d696295ff3e8bdd2639d71bc9a092e175b463f2db61d8"
GOLDEN_ACCEPTED = [(3, 3), (2, 2), (1, 5)]  # (author byte, accepted examples) in unit-id order


def test_any_unit_order_gives_the_same_selection() -> None:
    units = _fixture()
    assert select_test_set(DEVNET, units) == select_test_set(DEVNET, list(reversed(units)))


def test_each_drop_reason_is_counted_alone() -> None:
    base = [_line({"text": s}) for s in SENTENCES]
    clean = select_test_set(DEVNET, [_unit(base)]).report
    assert (clean.n_malformed, clean.n_exact_duplicates, clean.n_near_duplicates, clean.n_outliers) == (
        0,
        0,
        0,
        0,
    )
    cases = {
        "n_malformed": b'{"text": 5}',
        "n_exact_duplicates": _line({"text": SENTENCES[3].upper()}),
        "n_near_duplicates": _line({"text": SENTENCES[3].replace("prime.", "primes.")}),
        "n_outliers": _line({"text": "y" * 4097}),
    }
    for field, extra in cases.items():
        report = select_test_set(DEVNET, [_unit([*base, extra])]).report
        counts = {f: getattr(report, f) for f in cases}
        assert counts == {f: int(f == field) for f in cases}, field
        assert report.n_selected == len(SENTENCES)


def test_relative_length_outliers_use_the_median() -> None:
    lines = [_line({"text": s}) for s in SENTENCES] + [_line({"text": "z" * 8 * 70})]  # > 8 x median
    report = select_test_set(DEVNET, [_unit(lines)]).report
    assert report.n_outliers == 1


def test_near_duplicates_need_the_threshold() -> None:
    a = normalise(SENTENCES[0])
    close = normalise(SENTENCES[0].replace("mill", "mills"))
    far = normalise(SENTENCES[1])
    need = -(-DEVNET.near_duplicate_permille * NUM_PERM // 1000)
    assert int(np.count_nonzero(signature(a) == signature(close))) >= need
    assert int(np.count_nonzero(signature(a) == signature(far))) < need // 4


def test_minhash_signature_is_pinned() -> None:
    """The signature must be bit-identical on every machine: pinned values of datasketch 2's
    affine32 scheme with seed 1 and SHA-1 (a library change that alters them fails here)."""
    sig = signature("the quick brown fox")
    assert sig.dtype == np.uint32
    assert sig.shape == (NUM_PERM,)
    assert sig[:4].tolist() == GOLDEN_SIGNATURE
    from datasketch import MinHash  # type: ignore[import-untyped]

    plain = MinHash(num_perm=NUM_PERM, seed=1, scheme="affine32")  # no cached permutations
    plain.update_batch(sorted({"the quick brown fox"[i : i + 5].encode() for i in range(15)}))
    assert plain.hashvalues.tolist() == sig.tolist()


GOLDEN_SIGNATURE = [113674572, 21068073, 1956469, 119216817]


def test_the_cap_keeps_the_lowest_hashes() -> None:
    params = dataclasses.replace(DEVNET, max_test_examples=3)
    lines = [_line({"text": s}) for s in SENTENCES]
    sel = select_test_set(params, [_unit(lines)])
    assert sel.report.n_selected == 3
    everything = select_test_set(DEVNET, [_unit(lines)]).examples
    assert sel.examples == tuple(sorted(everything, key=lambda e: H(e.canonical_line()))[:3])
    assert sum(n for _, n in sel.accepted) == 3


def test_examples_in_the_active_set_count_as_exact_duplicates() -> None:
    lines = [_line({"text": s}) for s in SENTENCES]
    active = frozenset({exact_key(Example("text", "", SENTENCES[0]))})
    report = select_test_set(DEVNET, [_unit(lines)], active).report
    assert report.n_exact_duplicates == 1
    assert report.n_selected == len(SENTENCES) - 1


def test_exact_keys_do_not_collide_across_field_boundaries() -> None:
    assert exact_key(Example("pair", "x\x00y", "z")) != exact_key(Example("pair", "x", "y\x00z"))
    assert exact_key(Example("pair", "", "abc")) != exact_key(Example("text", "", "abc"))
    assert exact_key(Example("text", "", "A  b")) == exact_key(Example("text", "", "a b"))


def test_a_unit_whose_blob_disagrees_is_refused() -> None:
    unit, blob = _unit([_line({"text": s}) for s in SENTENCES])
    assert unit_problem(DEVNET, unit, blob) is None
    with pytest.raises(SelectionError, match="blob hash"):
        select_test_set(DEVNET, [(unit, blob + b"x")])
    lying = dataclasses.replace(unit, n_examples=3)
    assert "declares 3 examples" in (unit_problem(DEVNET, lying, blob) or "")
    with pytest.raises(SelectionError, match="listed twice"):
        select_test_set(DEVNET, [(unit, blob), (unit, blob)])


def test_a_block_selects_bounded_input_and_the_proposer_fits_it() -> None:
    params = dataclasses.replace(DEVNET, max_test_examples=2)  # at most 16 examples in
    lines = [_line({"text": f"{SENTENCES[i % 8]} ({i})"}) for i in range(10)]
    a, b = _unit(lines, author=1), _unit(lines[:7], author=2)
    with pytest.raises(SelectionError, match="17 examples selected, at most 16"):
        select_test_set(params, [a, b])
    broken = (dataclasses.replace(b[0], n_examples=6), b[1])
    assert choose_units(params, [broken, a, a, b]) == [a]
    small = _unit(lines[:6], author=3)
    assert choose_units(params, [a, b, small]) == [a, small]
    assert input_limits(params) == (16, 16 * (params.max_example_bytes + 64))


def test_the_active_test_set_is_a_window_of_the_newest_selections() -> None:
    ex = [Example("text", "", f"example number {i}") for i in range(10)]
    newest, older, oldest = ex[:3], ex[3:7], ex[7:]
    assert active_test_set([newest, older, oldest], 5) == tuple(ex[:5])
    assert active_test_set([newest, older, oldest], 100) == tuple(ex)
    assert active_test_set([], 5) == ()


def test_data_body_check_reruns_the_selection() -> None:
    units = _fixture()
    sel = select_test_set(DEVNET, units)
    ids = tuple(sorted(u.id for u, _ in units))
    body = data_body(sel)
    assert body == DataBody(ids, sel.report, tuple(n for _, n in sel.accepted))
    assert check_data_body(DEVNET, body, units) is None
    wrong = dataclasses.replace(sel.report, n_near_duplicates=0)
    assert check_data_body(DEVNET, dataclasses.replace(body, report=wrong), units) == ErrorCode.BAD_BODY
    assert check_data_body(DEVNET, dataclasses.replace(body, unit_ids=ids[::-1]), units) == ErrorCode.BAD_BODY
    assert (
        check_data_body(DEVNET, DataBody(ids[:2], sel.report, body.accepted[:2]), units) == ErrorCode.BAD_BODY
    )
    tampered = [(u, b if i else b + b"\n") for i, (u, b) in enumerate(units)]
    assert check_data_body(DEVNET, body, tampered) == ErrorCode.BAD_BODY


def test_data_body_check_recomputes_the_accepted_counts() -> None:
    """PROTOCOL §5.1: the data pool is split by accepted examples, so a proposer must not move
    accepted examples between units (the sum, which the stateless rules check, is unchanged)."""
    units = _fixture()
    body = data_body(select_test_set(DEVNET, units))
    a, b, c = body.accepted
    assert a > 0  # the pinned fixture: every unit has selected examples
    moved = dataclasses.replace(body, accepted=(a - 1, b + 1, c))
    assert check_data_body_stateless(DEVNET, moved) is None
    assert check_data_body(DEVNET, moved, units) == ErrorCode.BAD_BODY


def test_stateless_data_rules() -> None:
    units = _fixture()
    sel = select_test_set(DEVNET, units)
    ids = tuple(sorted(u.id for u, _ in units))
    counts = tuple(n for _, n in sel.accepted)
    assert check_data_body_stateless(DEVNET, DataBody(ids, sel.report, counts)) is None
    empty = select_test_set(DEVNET, [_unit([b"{"])]).report
    assert empty.test_set_hash == ZERO_HASH
    assert check_data_body_stateless(DEVNET, DataBody((_unit([b"{"])[0].id,), empty, (0,))) is None
    # the empty DATA body the producer makes today is the selection of no units
    nothing = select_test_set(DEVNET, [])
    assert nothing.report == QualityReport(0, 0, 0, 0, 0, 0, 0, ZERO_HASH)
    assert check_data_body(DEVNET, DataBody((), nothing.report), []) is None
    r = sel.report
    bad = [
        DataBody(ids[::-1], r, counts),
        DataBody(ids[:2], r, counts[:2]),  # n_units disagrees
        DataBody(ids, r),  # no accepted counts
        DataBody(ids, r, counts[:2]),  # one count missing
        DataBody(ids, r, (counts[0] + 1, *counts[1:])),  # counts add up to more than selected
        DataBody(ids, dataclasses.replace(r, n_malformed=r.n_malformed + 1), counts),  # more out than in
        DataBody(
            ids, dataclasses.replace(r, n_examples_in=10_000, n_malformed=9_990), counts
        ),  # over the limit
        DataBody(
            ids, dataclasses.replace(r, n_selected=DEVNET.max_test_examples + 1, n_examples_in=500), counts
        ),
        DataBody(ids, dataclasses.replace(r, n_selected=0), (0, 0, 0)),  # no examples but a test-set hash
    ]
    for body in bad:
        assert check_data_body_stateless(DEVNET, body) == ErrorCode.BAD_BODY, body.report


@given(st.lists(st.text(min_size=0, max_size=60), min_size=1, max_size=30), st.integers(4, 40))
def test_counts_always_add_up(texts: list[str], cap: int) -> None:
    params = dataclasses.replace(DEVNET, max_test_examples=cap)
    lines = [_line({"text": t}) for t in texts]
    sel = select_test_set(params, [_unit(lines)])
    r = sel.report
    dropped = r.n_malformed + r.n_exact_duplicates + r.n_near_duplicates + r.n_outliers
    assert r.n_examples_in == len(texts)
    assert r.n_selected == min(cap, len(texts) - dropped)
    assert sum(n for _, n in sel.accepted) == r.n_selected


# -- the shared line parser ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"   ", "blank line"),
        (b"[1, 2]", "a JSON list"),
        (b'{"text": "a", "text": "b"}', "appears twice"),
        (b'{"text": "a", "id": 1}', "expected exactly"),
        (b'{"prompt": "a"}', "expected exactly"),
        (b'{"text": 1}', "field 'text' is int"),
        (b'{"text": "\\ud800"}', "lone surrogate"),
        (b'{"text": ""}', "empty text"),
        (b'{"prompt": "p", "completion": ""}', "empty completion"),
        (b"nope", "not JSON"),
    ],
)
def test_parse_line_names_what_is_wrong(raw: bytes, reason: str) -> None:
    result = parse_line(raw)
    assert isinstance(result, str)
    assert reason in result


def test_parse_line_and_canonical_form() -> None:
    pair = parse_line(b'{"prompt": "Q?", "completion": " A\\u00e9"}')
    assert pair == Example("pair", "Q?", " A\u00e9")
    assert isinstance(pair, Example)
    assert pair.canonical_line() == '{"completion":" Aé","prompt":"Q?"}'.encode()
    assert pair.n_bytes() == 2 + 4
    assert parse_line(b'{"text": "hi there"}') == Example("text", "", "hi there")
    assert split_lines(b"a\nb\n") == [b"a", b"b"]
    assert split_lines(b"a\n\nb") == [b"a", b"", b"b"]
    assert normalise("  Stra\u00dfe\tIST  ") == "strasse ist"
