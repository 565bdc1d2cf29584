"""Process-wide logging (STYLE.md §10): one `configure_logging()` per process.

Owns: the line format (UTC microsecond timestamps, level, logger, message), the `debug.log` handler
in the datadir (rotated by size: `LOG_MAX_BYTES`, `LOG_BACKUPS` old files), the optional stderr
handler, and per-module levels from `LINGUACHAIN_DEBUG` ("p2p=DEBUG,chain=INFO"). Must not: decide
what is logged (each module does, through `logging.getLogger(__name__)`).

Fixed-shape event lines that functional tests grep are built by `event()`: `EVENT key=value ...`.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import time
from pathlib import Path
from typing import Final

FORMAT: Final = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"
LOG_MAX_BYTES: Final = 50 * 2**20  # debug.log rotates at 50 MiB ...
LOG_BACKUPS: Final = 5  # ... keeping debug.log.1 to debug.log.5 (300 MiB at most)


class UTCFormatter(logging.Formatter):
    """ISO-8601 UTC timestamps with microseconds, so logs of several nodes sort and merge."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        t = time.gmtime(record.created)
        micros = int((record.created - int(record.created)) * 1_000_000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{micros:06d}Z"


def parse_module_levels(spec: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, level = item.partition("=")
        out[name.strip()] = logging.getLevelName(level.strip().upper())
    return out


def configure_logging(
    *,
    level: str = "INFO",
    debug_log: Path | None = None,
    stderr: bool = True,
    module_levels: str = "",
    max_bytes: int = LOG_MAX_BYTES,
    backups: int = LOG_BACKUPS,
) -> None:
    """Replace the root logger's handlers: `debug_log` (append; rotated at `max_bytes` into
    `debug.log.1` .. `debug.log.<backups>`, the oldest dropped) and/or stderr, one format."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    formatter = UTCFormatter(FORMAT)
    if debug_log is not None:
        debug_log.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(
            debug_log, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        fh.setFormatter(formatter)
        root.addHandler(fh)
    if stderr:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(formatter)
        root.addHandler(sh)
    root.setLevel(level.upper())
    for name, lvl in parse_module_levels(module_levels).items():
        logging.getLogger(name).setLevel(lvl)
    # Libraries that are chatty at INFO stay at WARNING unless asked for.
    levels = parse_module_levels(module_levels)
    for noisy in ("multiaddr", "urllib3", "asyncio"):
        if noisy not in levels:
            logging.getLogger(noisy).setLevel(logging.WARNING)
    _module_levels.clear()
    _module_levels.update(levels)


_module_levels: dict[str, int] = {}


def adopt_library_logger(name: str, default_level: int = logging.CRITICAL) -> None:
    """Route a library that set up its own logging at import (py-libp2p: no handler, no propagation,
    so its records reached stderr bare through `logging.lastResort`) through our handlers and format.

    Its routine errors (a dial to a stopped peer) are noise for an operator: `default_level` unless
    `LINGUACHAIN_DEBUG` names the library (e.g. "libp2p=WARNING")."""
    lib = logging.getLogger(name)
    for handler in list(lib.handlers):
        lib.removeHandler(handler)
    lib.propagate = True
    lib.setLevel(_module_levels.get(name, default_level))


def event(kind: str, /, **fields: object) -> str:
    """A fixed-shape event line, e.g. `event("block", height=3)` -> 'EVENT block height=3'."""
    parts = " ".join(f"{k}={v}" for k, v in fields.items())
    return f"EVENT {kind} {parts}".rstrip()
