"""JSONL training and test data: parse and check a data file, naming the file and line of a fault.

Owns: `Example`, `parse_examples` (bytes, e.g. a data-unit blob of PROTOCOL §3.3) and `read_examples`
(a local file), and `DataFileError`. One example per line, either `{"text": str}` (loss on the whole
text) or `{"prompt": str, "completion": str}` (loss on the completion only). Must not: import torch
or a tokenizer (callers that know one pass `count_tokens`), or accept a file partly: one bad line
rejects the whole file with an error that names it, so nothing is trained on a silently shortened set.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from chain.errors import LinguaChainError

MAX_FILE_BYTES: Final = 256 * 1024 * 1024
_TEXT_KEYS: Final = frozenset({"text"})
_PAIR_KEYS: Final = frozenset({"prompt", "completion"})


class DataFileError(LinguaChainError):
    """Raised when a data file is not valid JSONL examples; says which file and line, and why."""

    def __init__(self, name: str, line: int, reason: str) -> None:
        self.name, self.line, self.reason = name, line, reason
        where = f"{name}:{line}" if line else name
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True, slots=True)
class Example:
    """One example. A `text` example has `prompt == ""` and its text in `completion`."""

    kind: Literal["text", "pair"]
    prompt: str
    completion: str
    line: int  # 1-based line in its file

    @property
    def full_text(self) -> str:
        return self.prompt + self.completion


def utf8_length(text: str) -> int:
    """Tokens of a byte-level tokenizer without special tokens: the UTF-8 length."""
    return len(text.encode("utf-8"))


def read_examples(
    path: str | Path,
    *,
    max_tokens: int | None = None,
    count_tokens: Callable[[str], int] = utf8_length,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> list[Example]:
    """The examples of a local JSONL file; `DataFileError` naming the file (and line) otherwise."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            raise DataFileError(str(path), 0, f"{size} bytes is over the limit of {max_file_bytes}")
        data = path.read_bytes()
    except OSError as exc:
        raise DataFileError(str(path), 0, f"cannot read: {exc.strerror or exc}") from None
    return parse_examples(data, str(path), max_tokens=max_tokens, count_tokens=count_tokens)


def parse_examples(
    data: bytes,
    name: str,
    *,
    max_tokens: int | None = None,
    count_tokens: Callable[[str], int] = utf8_length,
) -> list[Example]:
    """The examples in JSONL `data` (called `name` in errors). A final newline is allowed; an empty
    file, a blank line, a line that is not UTF-8 or not JSON, a missing, extra or non-string field,
    an empty text and an example longer than `max_tokens` (by `count_tokens`) are not."""
    if not data.strip():
        raise DataFileError(name, 0, "the file holds no examples")
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    out: list[Example] = []
    for number, raw in enumerate(lines, start=1):
        example = _parse_line(raw, name, number)
        if max_tokens is not None:
            n = count_tokens(example.full_text)
            if n > max_tokens:
                reason = f"the example is {n} tokens, over the context of {max_tokens}"
                raise DataFileError(name, number, reason)
        out.append(example)
    return out


def _parse_line(raw: bytes, name: str, number: int) -> Example:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFileError(name, number, f"not UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise DataFileError(name, number, "a blank line (one JSON object per line)")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DataFileError(name, number, f"not JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise DataFileError(name, number, f"a JSON {type(doc).__name__}, expected an object")
    keys = frozenset(doc)
    if keys not in (_TEXT_KEYS, _PAIR_KEYS):
        raise DataFileError(
            name, number, f"fields {sorted(keys)}; expected exactly ['text'] or ['completion', 'prompt']"
        )
    for key in sorted(keys):
        if not isinstance(doc[key], str):
            found = type(doc[key]).__name__
            raise DataFileError(name, number, f"field {key!r} is {found}, expected a string")
    if keys == _TEXT_KEYS:
        if not doc["text"]:
            raise DataFileError(name, number, "empty text")
        return Example("text", "", doc["text"], number)
    if not doc["completion"]:
        raise DataFileError(name, number, "empty completion")
    return Example("pair", doc["prompt"], doc["completion"], number)
