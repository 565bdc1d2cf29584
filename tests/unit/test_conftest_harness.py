"""The root conftest's promises (STYLE.md §12): a logged, reusable seed; children reaped at exit.

Owns: running a tiny pytest session in a subprocess with a copy of tests/conftest.py and checking
its header, its failure report and that a child process left running is gone afterwards.
Must not: depend on any project package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil

from tests.functional.framework import wait_until

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

INNER_TESTS = """
import random
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings, strategies as st


def test_spawns_a_child_and_leaves_it(tmp_path_factory):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    Path(__file__).with_name("child.pid").write_text(str(child.pid))


def test_seeded(seed, rng):
    Path(__file__).with_name("seed.txt").write_text(f"{seed} {rng.random()} {random.random()}")


def test_fails():
    assert False


@given(st.binary(min_size=8, max_size=8))
@settings(max_examples=5, database=None)
def test_hypothesis_draw(n):
    with open(Path(__file__).with_name("hypothesis.txt"), "a") as f:
        f.write(n.hex() + " ")
"""


def _run(tmp_path: Path, seed: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LC_TEST_SEED=seed, HYPOTHESIS_PROFILE="ci")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _setup(tmp_path: Path) -> None:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)


def test_seed_is_logged_reused_and_children_are_reaped(tmp_path: Path) -> None:
    _setup(tmp_path)
    result = _run(tmp_path, "12345")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out  # test_fails fails, the others pass
    assert "3 passed" in out
    assert "LinguaChain test seed: 12345 (reproduce with LC_TEST_SEED=12345)" in out
    assert "session seed 12345 (rerun with LC_TEST_SEED=12345)" in out  # printed with the failure
    assert "reaped 1 leftover child process(es)" in out
    pid = int((tmp_path / "child.pid").read_text())

    def gone() -> bool:
        try:
            return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return True

    wait_until(
        gone,
        timeout=10,
        interval=0.05,
        what=f"child {pid} gone after the session",
    )
    first = (tmp_path / "seed.txt").read_text()
    drawn = (tmp_path / "hypothesis.txt").read_text()
    (tmp_path / "hypothesis.txt").unlink()
    _run(tmp_path, "12345")
    assert (tmp_path / "seed.txt").read_text() == first  # same seed, same values
    assert (tmp_path / "hypothesis.txt").read_text() == drawn  # hypothesis included
    (tmp_path / "hypothesis.txt").unlink()
    _run(tmp_path, "54321")
    assert (tmp_path / "seed.txt").read_text() != first
    assert (tmp_path / "hypothesis.txt").read_text() != drawn
