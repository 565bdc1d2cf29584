"""Waking a background service between its looks at the chain: a chain change, a poke or a poll
timeout, whichever comes first.

Owns: `Poke` (a wake-up another component sets, re-armed when a waiter wakes) and
`wait_change_or_poke`, the one wait the rounds service and the trainer share. Must not: decide what a
service does once it wakes, or hold any state of the chain.
"""

from __future__ import annotations

from typing import Protocol

import trio


class ChainChanges(Protocol):
    """What a waiting service needs of the chain service: its change counter."""

    @property
    def version(self) -> int: ...

    async def wait_change(self, seen_version: int) -> int: ...


class Poke:
    """A wake-up: `set` wakes whoever waits now (or the next waiter); each `wait` re-arms it."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


async def wait_change_or_poke(chain: ChainChanges, seen: int, poke: Poke, timeout_s: float) -> None:
    """Return once the chain's version differs from `seen`, `poke` is set, or `timeout_s` passed
    (blob arrivals and similar have no event: the service looks again)."""
    with trio.move_on_after(timeout_s):
        async with trio.open_nursery() as nursery:

            async def changed() -> None:
                await chain.wait_change(seen)
                nursery.cancel_scope.cancel()

            async def poked() -> None:
                await poke.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(changed)
            nursery.start_soon(poked)
