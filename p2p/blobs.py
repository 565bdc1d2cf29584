"""Downloading content-addressed blobs from several peers at once (PROTOCOL §7.3 `/blob/1`).

Owns: `BlobFetcher.fetch`: agree on a manifest (size and per-chunk hashes) with the peers that have
the blob, fetch the 1 MiB chunks in parallel from all of them, check each chunk against its hash as
it arrives (a bad chunk scores its sender down, drops it as a source and is refetched from another
peer), resume from what a previous attempt left in the partial file (a failed attempt that verified no
chunk leaves none behind), and finally hand the file to
`BlobStore.put_verified`, which checks the whole-blob hash before the file gets its final name.
A blob whose units declare sizes (`BlobStore.expected_sizes`) is fetched only from peers whose
manifest has one of them: another size is BLOB_SIZE_MISMATCH before a byte is downloaded.
Must not: write anything under a final blob name itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from chain.errors import ErrorCode
from chain.types import BlobHash, Hash32
from p2p import framing
from p2p.interfaces import BlobStore
from p2p.messages import blob as blobmsg
from p2p.protocols import blob_protocol
from p2p.scoring import Offence

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FetchResult:
    error: ErrorCode | None
    chunks_fetched: int
    chunks_resumed: int
    bad_chunks: int
    per_peer: dict[str, int]


def _expected_chunks(size: int) -> int:
    return max(1, -(-size // blobmsg.CHUNK_SIZE))


def _check_existing(path: Path, hashes: Sequence[Hash32], size: int) -> set[int]:
    """Indices of chunks already in a partial file from an earlier attempt (resume)."""
    done: set[int] = set()
    try:
        with path.open("rb") as f:
            for i, want in enumerate(hashes):
                f.seek(i * blobmsg.CHUNK_SIZE)
                piece = f.read(min(blobmsg.CHUNK_SIZE, size - i * blobmsg.CHUNK_SIZE))
                if hashlib.blake2b(piece, digest_size=32).digest() == want:
                    done.add(i)
    except OSError:
        return set()
    return done


def _prepare(path: Path, size: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, size)
    return fd


def _verify_and_write(fd: int, data: bytes, want: bytes, offset: int) -> bool:
    if hashlib.blake2b(data, digest_size=32).digest() != want:
        return False
    os.pwrite(fd, data, offset)
    return True


class BlobFetcher:
    def __init__(
        self,
        host: Any,
        chain_id: str,
        store: BlobStore,
        penalise: Any,
        *,
        streams_per_peer: int = 4,
        timeout_s: float = 15.0,
    ) -> None:
        self.host, self.store, self.penalise = host, store, penalise
        self.protocol = blob_protocol(chain_id)
        self.streams_per_peer = streams_per_peer
        self.timeout_s = timeout_s

    async def _manifest(
        self, peers: Sequence[Any], blob_hash: BlobHash, sizes: frozenset[int]
    ) -> tuple[Any, list[Any]] | ErrorCode:
        """The manifest most peers agree on and those peers; BLOB_MISSING when none answers,
        BLOB_SIZE_MISMATCH when `sizes` (declared by units) are known and no answer has one."""
        answers: dict[Any, blobmsg.BlobManifest] = {}

        async def ask(peer: Any) -> None:
            reply = await framing.request(
                self.host,
                peer,
                self.protocol,
                blobmsg.GetBlobManifest(blob_hash),
                blobmsg.BlobManifest,
                timeout_s=self.timeout_s,
            )
            if isinstance(reply, blobmsg.BlobManifest):
                if reply.blob_hash == blob_hash and len(reply.chunk_hashes) == _expected_chunks(reply.size):
                    answers[peer] = reply
                else:
                    self.penalise(str(peer), Offence.MALFORMED)
            elif reply in (ErrorCode.MALFORMED, ErrorCode.BAD_MESSAGE, ErrorCode.TOO_LARGE):
                self.penalise(str(peer), Offence.MALFORMED)

        async with trio.open_nursery() as nursery:
            for peer in peers:
                nursery.start_soon(ask, peer)
        if not answers:
            return ErrorCode.BLOB_MISSING
        if sizes:
            answers = {p: m for p, m in answers.items() if m.size in sizes}
            if not answers:
                log.info("blob %s: no peer offers a size its units declare", blob_hash.hex()[:12])
                return ErrorCode.BLOB_SIZE_MISMATCH
        votes = Counter((m.size, m.chunk_hashes) for m in answers.values())
        (size, hashes), _ = votes.most_common(1)[0]
        sources = [p for p, m in answers.items() if (m.size, m.chunk_hashes) == (size, hashes)]
        return answers[sources[0]], sources

    async def fetch(self, blob_hash: BlobHash, peers: Sequence[Any]) -> FetchResult:
        """Download `blob_hash` from `peers` into the store. Never raises (except cancellation)."""
        if self.store.has(blob_hash):
            return FetchResult(None, 0, 0, 0, {})
        found = await self._manifest(peers, blob_hash, self.store.expected_sizes(blob_hash))
        if isinstance(found, ErrorCode):
            return FetchResult(found, 0, 0, 0, {})
        manifest, sources = found
        path = self.store.partial_path(blob_hash)
        done = await trio.to_thread.run_sync(_check_existing, path, manifest.chunk_hashes, manifest.size)
        resumed = len(done)
        pending = deque(i for i in range(len(manifest.chunk_hashes)) if i not in done)
        fd = await trio.to_thread.run_sync(_prepare, path, manifest.size)
        per_peer: Counter[str] = Counter()
        bad = 0
        in_progress = 0
        changed = trio.Event()
        dropped: set[Any] = set()

        def poke() -> None:
            nonlocal changed
            changed.set()
            changed = trio.Event()

        async def worker(peer: Any) -> None:
            nonlocal bad, in_progress
            failures = 0
            while peer not in dropped:
                if not pending:
                    if in_progress == 0:
                        return
                    await changed.wait()
                    continue
                index = pending.popleft()
                in_progress += 1
                try:
                    reply = await framing.request(
                        self.host,
                        peer,
                        self.protocol,
                        blobmsg.GetBlobChunk(blob_hash, index),
                        blobmsg.BlobChunk,
                        timeout_s=self.timeout_s,
                    )
                    ok = False
                    if isinstance(reply, blobmsg.BlobChunk) and reply.index == index:
                        ok = await trio.to_thread.run_sync(
                            _verify_and_write,
                            fd,
                            reply.data,
                            manifest.chunk_hashes[index],
                            index * blobmsg.CHUNK_SIZE,
                        )
                        if not ok:
                            bad += 1
                            log.info("bad chunk %d of %s from %s", index, blob_hash.hex()[:12], peer)
                            self.penalise(str(peer), Offence.BAD_BLOB)
                            dropped.add(peer)
                    elif isinstance(reply, ErrorCode):
                        failures += 1
                        if reply is ErrorCode.TIMEOUT:
                            self.penalise(str(peer), Offence.TIMEOUT)
                        elif reply.is_permanent:
                            self.penalise(str(peer), Offence.MALFORMED)
                    if ok:
                        per_peer[str(peer)] += 1
                    else:
                        pending.appendleft(index)
                        if failures >= 3:
                            dropped.add(peer)
                finally:
                    in_progress -= 1
                    poke()

        try:
            async with trio.open_nursery() as nursery:
                for peer in sources:
                    for _ in range(self.streams_per_peer):
                        nursery.start_soon(worker, peer)
        finally:
            await trio.to_thread.run_sync(os.close, fd)
        fetched = sum(per_peer.values())
        if pending:
            if fetched == 0 and resumed == 0:  # no verified chunk to resume from: keep nothing
                await trio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))
            return FetchResult(ErrorCode.BLOB_MISSING, fetched, resumed, bad, dict(per_peer))
        err = await self.store.put_verified(blob_hash, path)  # a refused file is removed there
        if err is ErrorCode.BLOB_HASH_MISMATCH:
            # Every chunk matched a manifest that does not hash to the blob: the manifest lied.
            log.warning("blob %s: assembled file does not match its hash", blob_hash.hex()[:12])
            for peer in sources:
                self.penalise(str(peer), Offence.BAD_BLOB)
        return FetchResult(err, fetched, resumed, bad, dict(per_peer))
