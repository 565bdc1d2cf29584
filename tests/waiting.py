"""Waiting by predicate with a deadline (STYLE.md §12), for tests whose state lives in another task
or process and has no event to wait on. p2p tests use `p2p.testing.wait_for`, the same idea."""

from __future__ import annotations

from collections.abc import Callable

import trio


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 20.0, poll_s: float = 0.01) -> None:
    """Return once `predicate()` holds; `trio.TooSlowError` after `timeout_s`."""
    with trio.fail_after(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polled state has no event (child process, other task)
            await trio.sleep(poll_s)
