"""chain.consensus is pure (ARCHITECTURE.md §3, STYLE.md §1): importing all of it loads no I/O,
networking, ML or VDF library, and no module reads the clock."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import chain.consensus

FORBIDDEN = ("trio", "plyvel", "libp2p", "torch", "vdf", "chiavdf", "chain.store")
CODE = f"""
import sys, pkgutil, importlib, chain.consensus
before = set(sys.modules)
for m in pkgutil.iter_modules(chain.consensus.__path__):
    importlib.import_module("chain.consensus." + m.name)
loaded = set(sys.modules) - before
bad = sorted(n for n in loaded if n.split(".")[0] in {FORBIDDEN!r} or n.startswith("chain.store"))
print(",".join(bad))
"""


def test_consensus_imports_nothing_impure() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


def test_consensus_sources_do_not_read_the_clock() -> None:
    root = pathlib.Path(chain.consensus.__file__).parent
    for path in root.glob("*.py"):
        text = path.read_text()
        for needle in ("import time", "from time", "datetime", "time.time(", "monotonic("):
            assert needle not in text, f"{path.name} mentions {needle!r}"
