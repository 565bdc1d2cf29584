"""Root pytest configuration shared by every test tier (STYLE.md §12).

Owns: the session random seed (logged in the header, the summary and every failure report,
reusable with `LC_TEST_SEED=<n>`; it also seeds hypothesis unless `--hypothesis-seed` is given),
the per-test `seed`/`rng` fixtures and the seeding of the global `random` module, the hypothesis
profiles (`ci` by default, `dev`, `thorough`; pick with `HYPOTHESIS_PROFILE`), the test tiers by
directory (`tests/unit/`: pure, in one process, no network; `tests/integration/`: child processes,
loopback networks, in-process nodes; `tests/functional/`: real `linguachaind` processes; each test
gets its tier's marker, so `-m unit` selects the fast tier), and the reaping of child processes left
alive at session end. Shared helpers live in `tests/support/`. Must not: hold fixtures of one area
(put those in the area's own conftest.py) or import project packages (a broken package must not
break collection of every test).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import secrets
import sys
from collections.abc import Generator, Iterator

import psutil
import pytest
from hypothesis import HealthCheck, settings

log = logging.getLogger("tests")

SEED_ENV = "LC_TEST_SEED"
SESSION_SEED = int(os.environ.get(SEED_ENV) or secrets.randbits(32))

# -- hypothesis profiles ---------------------------------------------------------------------
# ci: the default run stays fast on a 2-core box; dev/thorough look harder (HYPOTHESIS_PROFILE=...).
settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    print_blob=True,
    derandomize=False,  # hypothesis derandomizes under CI=true; we seed from the logged session seed
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=200, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=2_000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis draws from the session seed too, unless --hypothesis-seed is given."""
    if getattr(config.option, "hypothesis_seed", None) is None:
        config.option.hypothesis_seed = str(SESSION_SEED)


def derive_seed(nodeid: str) -> int:
    """The seed of one test: stable for a given session seed and test id."""
    digest = hashlib.blake2b(f"{SESSION_SEED}:{nodeid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def pytest_report_header() -> str:
    return f"LinguaChain test seed: {SESSION_SEED} (reproduce with {SEED_ENV}={SESSION_SEED})"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The seed again at the end, where it is seen even with -q."""
    terminalreporter.write_line(
        f"LinguaChain test seed: {SESSION_SEED} (reproduce with {SEED_ENV}={SESSION_SEED})"
    )


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """This test's seed (derived from the session seed and the test id; logged on failure)."""
    return derive_seed(request.node.nodeid)


@pytest.fixture
def rng(seed: int) -> random.Random:
    """A private `random.Random` seeded with this test's seed."""
    return random.Random(seed)


@pytest.fixture(autouse=True)
def _seed_global_random(request: pytest.FixtureRequest) -> Iterator[None]:
    """Seed the global `random` module (and numpy's, if loaded) so plain `random.*` calls replay."""
    s = derive_seed(request.node.nodeid)
    state = random.getstate()
    random.seed(s)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(s % 2**32)
    yield
    random.setstate(state)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        report.sections.append(
            (
                "LinguaChain seed",
                f"session seed {SESSION_SEED} (rerun with {SEED_ENV}={SESSION_SEED}); "
                f"this test's seed {derive_seed(item.nodeid)}",
            )
        )
    return report


# -- tiers -----------------------------------------------------------------------------------

TIERS = ("unit", "integration", "functional")
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the tier of the directory it lives in (`tests/<tier>/...`)."""
    for item in items:
        rel = os.path.relpath(str(item.path), TESTS_DIR)
        tier = rel.split(os.sep, 1)[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


# -- child processes -------------------------------------------------------------------------

REAP_GRACE_S = 5.0


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Terminate (then kill) every descendant process a test left running, and say which."""
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    if not children:
        return
    for child in children:
        with contextlib.suppress(psutil.Error):  # it may have exited meanwhile
            log.warning("reaping leftover child process %d (%s)", child.pid, " ".join(child.cmdline()[:4]))
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=REAP_GRACE_S)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=REAP_GRACE_S)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_line(f"reaped {len(children)} leftover child process(es)", yellow=True)
