"""One JSONL example line, parsed the same way everywhere (PROTOCOL §3.3).

Owns: `Example`, `parse_line` (one line -> an example or the reason it is malformed), the canonical
line of an example and its normalised text. Used by the DATA block's selection
(`chain.consensus.data_selection`, which counts malformed lines) and meant for the training worker's
file check too (`training/datafile.py`, which rejects a file at its first malformed line, has its own
copy of the same rules today, without the repeated-key and lone-surrogate checks), so that a line is
valid for one exactly when it is valid for the other. Must not: read files, raise on bad input, or
depend on anything that could differ between machines (locale, dict order, float parsing).

Rules: a line is UTF-8 JSON holding one object with exactly the key `text` or exactly the keys
`prompt` and `completion`, all strings; `text` and `completion` are not empty; no key repeats; no
string holds a lone surrogate (it would have no UTF-8 encoding).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Any, Final, Literal

_TEXT_KEYS: Final = frozenset({"text"})
_PAIR_KEYS: Final = frozenset({"prompt", "completion"})


@dataclass(frozen=True, slots=True)
class Example:
    """One example. A `text` example has `prompt == ""` and its text in `completion`."""

    kind: Literal["text", "pair"]
    prompt: str
    completion: str

    @property
    def full_text(self) -> str:
        return self.prompt + self.completion

    def canonical_line(self) -> bytes:
        """The example as one JSON line with sorted keys and no spaces (what a test set holds)."""
        doc = (
            {"text": self.completion}
            if self.kind == "text"
            else {
                "prompt": self.prompt,
                "completion": self.completion,
            }
        )
        return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def n_bytes(self) -> int:
        """UTF-8 length of prompt and completion: the token count of a byte-level tokenizer."""
        return len(self.prompt.encode("utf-8")) + len(self.completion.encode("utf-8"))


class _Duplicate(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def parse_line(raw: bytes) -> Example | str:
    """The example on one line (without its newline), or why the line is malformed. Never raises."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (byte {exc.start})"
    if not text.strip():
        return "a blank line (one JSON object per line)"
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except _Duplicate as exc:
        return f"the field {exc.args[0]!r} appears twice"
    except (ValueError, RecursionError) as exc:
        return f"not JSON: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    if not isinstance(doc, dict):
        return f"a JSON {type(doc).__name__}, expected an object"
    keys = frozenset(doc)
    if keys not in (_TEXT_KEYS, _PAIR_KEYS):
        return f"fields {sorted(keys)}; expected exactly ['text'] or ['completion', 'prompt']"
    for key in sorted(keys):
        value = doc[key]
        if not isinstance(value, str):
            return f"field {key!r} is {type(value).__name__}, expected a string"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"field {key!r} holds a lone surrogate"
    if keys == _TEXT_KEYS:
        return Example("text", "", doc["text"]) if doc["text"] else "empty text"
    return Example("pair", doc["prompt"], doc["completion"]) if doc["completion"] else "empty completion"


def split_lines(blob: bytes) -> list[bytes]:
    """The lines of a JSONL blob: split on b"\\n"; one final newline ends the last line."""
    lines = blob.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def normalise(text: str) -> str:
    """Text for duplicate detection: NFKC, case-folded, whitespace runs collapsed to one space,
    stripped. Python's unicodedata tables are fixed per Python version (3.11 pins Unicode 14)."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())
