"""ARCHITECTURE.md's module table is generated from the module docstrings and must stay current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_module_map_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "module_map.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_module_has_a_docstring() -> None:
    table = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "module_map.py")], capture_output=True, text=True, check=True
    ).stdout
    missing = [line for line in table.splitlines() if "(no docstring)" in line or "(does not parse)" in line]
    assert not missing, "\n".join(missing)
