"""The one predicate wait of the in-process tests (STYLE.md §12): for state that lives in another
task or process and has no event to wait on.

Owns: `wait_until`. It is `p2p.testing.wait_for` (the public testing module's loop, which p2p tests
and benchmarks call directly) with the defaults tests want. Functional tests, which drive processes
synchronously, use `tests.functional.framework.wait_until`. Must not: sleep a fixed time.
"""

from __future__ import annotations

from collections.abc import Callable

from p2p.testing import wait_for


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 20.0, poll_s: float = 0.01) -> None:
    """Return once `predicate()` holds; `trio.TooSlowError` after `timeout_s`."""
    await wait_for(predicate, timeout_s, poll_s)
