"""glue.BlobFetches: concurrent fetches of one blob hash share one download (the race that wrote one
partial file twice and stopped a devnet node); other hashes are not held up; a failed or cancelled
download frees its hash for the next caller."""

from __future__ import annotations

from collections.abc import Sequence

import trio
import trio.testing

from chain.errors import ErrorCode
from chain.types import BlobHash
from linguachaind.glue import BlobFetches

A, B = BlobHash(bytes(32)), BlobHash(bytes([1]) * 32)


class _Downloads:
    def __init__(self, result: ErrorCode | None = None) -> None:
        self.calls: list[bytes] = []
        self.release = trio.Event()
        self.result = result

    async def fetch(self, blob_hash: BlobHash, peers: Sequence[str] | None) -> ErrorCode | None:
        self.calls.append(bytes(blob_hash))
        await self.release.wait()
        return self.result


async def test_same_hash_is_downloaded_once_and_both_get_the_result() -> None:
    downloads = _Downloads(ErrorCode.BAD_UNIT)
    fetches = BlobFetches(downloads.fetch)
    results: list[ErrorCode | None] = []

    async def one(peers: Sequence[str] | None) -> None:
        results.append(await fetches.fetch(A, peers))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, ["peer"])
        nursery.start_soon(one, None)
        await trio.testing.wait_all_tasks_blocked()
        assert downloads.calls == [bytes(A)]
        downloads.release.set()
    assert results == [ErrorCode.BAD_UNIT, ErrorCode.BAD_UNIT]


async def test_other_hashes_run_in_parallel_and_a_finished_hash_can_be_fetched_again() -> None:
    downloads = _Downloads()
    fetches = BlobFetches(downloads.fetch)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetches.fetch, A, None)
        nursery.start_soon(fetches.fetch, B, None)
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(downloads.calls) == sorted([bytes(A), bytes(B)])
        downloads.release.set()
    assert await fetches.fetch(A, None) is None
    assert downloads.calls.count(bytes(A)) == 2


async def test_a_cancelled_download_frees_the_hash_and_wakes_the_waiter() -> None:
    downloads = _Downloads()
    fetches = BlobFetches(downloads.fetch)
    waited: list[ErrorCode | None] = []
    first = trio.CancelScope()

    async def first_caller() -> None:
        with first:
            await fetches.fetch(A, None)

    async def waiter() -> None:
        waited.append(await fetches.fetch(A, None))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first_caller)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        first.cancel()
    assert waited == [ErrorCode.BLOB_MISSING]  # the download it waited for never finished
    assert downloads.calls == [bytes(A)]
    downloads.release.set()
    assert await fetches.fetch(A, None) is None
