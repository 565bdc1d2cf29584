"""training.datafile: JSONL examples parse, and every bad file names its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from training.datafile import DataFileError, Example, parse_examples, read_examples


def test_reads_text_and_pair_examples(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "hello"}\n{"prompt": "2+2=", "completion": "4"}\n', encoding="utf-8")
    assert read_examples(path) == [
        Example("text", "", "hello", 1),
        Example("pair", "2+2=", "4", 2),
    ]


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        (b"", 0, "no examples"),
        (b"\n\n", 0, "no examples"),
        (b'{"text": "a"}\n\xff\xfe\n', 2, "not UTF-8"),
        (b'{"text": "a"}\n{"text": \n', 2, "not JSON"),
        (b'{"text": "a"}\n\n{"text": "b"}\n', 2, "blank line"),
        (b'["text"]\n', 1, "expected an object"),
        (b'{"prompt": "a"}\n', 1, "expected exactly"),
        (b'{"text": "a", "lang": "en"}\n', 1, "expected exactly"),
        (b'{"text": 5}\n', 1, "'text' is int"),
        (b'{"prompt": "a", "completion": null}\n', 1, "'completion' is NoneType"),
        (b'{"text": ""}\n', 1, "empty text"),
        (b'{"prompt": "a", "completion": ""}\n', 1, "empty completion"),
    ],
)
def test_a_bad_file_names_file_and_line(tmp_path: Path, content: bytes, line: int, reason: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataFileError, match=reason) as info:
        read_examples(path)
    assert info.value.line == line
    assert str(path) in str(info.value)


def test_an_example_longer_than_the_context_is_refused() -> None:
    data = b'{"text": "short"}\n{"prompt": "abc", "completion": "\xc3\xa9t\xc3\xa9"}\n'
    assert len(parse_examples(data, "d", max_tokens=8)) == 2  # 3 + 5 UTF-8 bytes
    with pytest.raises(DataFileError, match="over the context of 7") as info:
        parse_examples(data, "d", max_tokens=7)
    assert info.value.line == 2
    words = parse_examples(data, "d", max_tokens=2, count_tokens=lambda s: len(s.split()))
    assert len(words) == 2


def test_a_missing_or_oversized_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="cannot read"):
        read_examples(tmp_path / "absent.jsonl")
    path = tmp_path / "big.jsonl"
    path.write_text('{"text": "x"}\n' * 10)
    with pytest.raises(DataFileError, match="over the limit"):
        read_examples(path, max_file_bytes=20)


@given(st.binary(max_size=200))
def test_garbage_is_an_error_never_a_crash(garbage: bytes) -> None:
    try:
        examples = parse_examples(garbage, "g")
    except DataFileError:
        return
    assert all(isinstance(e, Example) for e in examples)
