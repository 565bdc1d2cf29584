"""How the CLI prints: JSON for scripts (`--json`), rich tables for humans; LC amounts both ways.

Owns: `parse_lc` / `format_lc` (1 LC = 10^8 base units, 8 decimals, exact `Decimal` arithmetic),
`emit_json`, `table`, `kv`. Must not: call the node. `rich` is imported inside the functions that
draw, so `--help` and `--json` runs do not pay for it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final

COIN: Final = 10**8
MAX_AMOUNT: Final = 2**63 - 1


class AmountError(ValueError):
    """Raised when a text is not a valid LC amount."""


def parse_lc(text: str) -> int:
    """'1.5' -> 150000000 base units; at most 8 decimals, positive, below 2^63."""
    try:
        value = Decimal(text.strip().replace("_", ""))
    except InvalidOperation:
        raise AmountError(f"{text!r} is not an amount in LC (e.g. 1.5)") from None
    if not value.is_finite() or value <= 0:
        raise AmountError(f"amount must be positive, got {text!r}")
    units = value * COIN
    if units != units.to_integral_value():
        raise AmountError(f"{text!r} has more than 8 decimals (1 LC = 10^8 base units)")
    if units > MAX_AMOUNT:
        raise AmountError(f"{text!r} is larger than the largest amount")
    return int(units)


def format_lc(units: int) -> str:
    """150000000 -> '1.50000000 LC'."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), COIN)
    return f"{sign}{whole}.{frac:08d} LC"


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")


def kv(title: str, rows: Sequence[tuple[str, Any]]) -> None:
    """A two-column table of name/value pairs."""
    from rich.table import Table

    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("field", style="bold", no_wrap=True)
    t.add_column("value", no_wrap=True)
    for name, value in rows:
        t.add_row(name, "-" if value is None else str(value))
    _print(t)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, no_wrap=True)
    for r in rows:
        t.add_row(*("-" if v is None else str(v) for v in r))
    _print(t)


def _print(renderable: Any) -> None:
    """Print a table at its natural width: values an operator copies (hashes, keys, addresses) are
    never cut to the terminal's width (or to 80 columns when stdout is a pipe); a terminal narrower
    than the table wraps its lines instead, which keeps every character."""
    from rich.console import Console
    from rich.measure import Measurement

    console = Console(highlight=False)
    natural = Measurement.get(console, console.options.update(width=100_000), renderable).maximum
    if natural > console.width:
        console = Console(highlight=False, width=natural)
    console.print(renderable, crop=False)


def lc_fields(value: dict[str, Any]) -> list[tuple[str, Any]]:
    """Rows of a dict for human output, with amounts (stake, balance, amount, fee fields) in LC."""
    rows: list[tuple[str, Any]] = []
    for key, v in value.items():
        amount = any(word in key for word in ("stake", "balance", "amount", "fee", "unbonding"))
        if amount and isinstance(v, int) and not isinstance(v, bool):
            rows.append((key, format_lc(v)))
        else:
            rows.append((key, v))
    return rows
