"""Serving the request-response protocols: status, sync and blob (PROTOCOL §7.3).

Owns: the stream handlers of `/lc/<chain_id>/{status,sync,blob}/1`, each reading one request with a
deadline, answering within the per-message bounds, and never letting an exception reach libp2p (a
raising handler takes the host down, LIBP2P-NOTES): any failure resets the stream and, where it is the
peer's fault (malformed or oversized frame, silence, a flood of requests), lowers its score.
Must not: decide what a peer's status means (p2p.service does, through `on_status`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from chain.errors import ErrorCode
from chain.types import Height
from p2p import framing
from p2p.interfaces import BlobStore, ChainSource
from p2p.messages import blob as blobmsg
from p2p.messages import sync as syncmsg
from p2p.messages.status import ErrorReply, Status
from p2p.protocols import blob_protocol, status_protocol, sync_protocol
from p2p.scoring import Offence, RateLimiter

log = logging.getLogger(__name__)

Penalise = Callable[[str, Offence], None]
OnStatus = Callable[[Any, Status], Awaitable[ErrorCode | None]]

_OFFENCE = {
    ErrorCode.TIMEOUT: Offence.TIMEOUT,
    ErrorCode.TOO_LARGE: Offence.OVERSIZED,
}


class ReqRespServer:
    def __init__(
        self,
        host: Any,
        chain_id: str,
        chain: ChainSource,
        blobs: BlobStore | None,
        make_status: Callable[[], Status],
        on_status: OnStatus,
        penalise: Penalise,
        *,
        request_rate: float = 200.0,
        request_burst: float = 400.0,
        read_timeout_s: float = framing.READ_TIMEOUT_S,
    ) -> None:
        self.host, self.chain, self.blobs = host, chain, blobs
        self.make_status, self.on_status, self.penalise = make_status, on_status, penalise
        self.limiter = RateLimiter(request_rate, request_burst)
        self.read_timeout_s = read_timeout_s
        self.served: dict[str, int] = {"status": 0, "sync": 0, "blob": 0, "failed": 0}
        self.protocols = {
            status_protocol(chain_id): self._guard("status", self._status),
            sync_protocol(chain_id): self._guard("sync", self._sync),
            blob_protocol(chain_id): self._guard("blob", self._blob),
        }

    def install(self) -> None:
        for protocol, handler in self.protocols.items():
            self.host.set_stream_handler(protocol, handler)

    def _guard(
        self, name: str, handler: Callable[[Any, str], Awaitable[None]]
    ) -> Callable[[Any], Awaitable[None]]:
        async def guarded(stream: Any) -> None:
            try:
                peer = str(stream.muxed_conn.peer_id)
            except Exception:
                peer = "?"
            ok = False
            try:
                if not self.limiter.allow(peer):
                    self.penalise(peer, Offence.FLOOD)
                else:
                    await handler(stream, peer)
                    ok = True
                    self.served[name] += 1
            except trio.Cancelled:
                raise
            except _Abort:
                pass
            except Exception:
                log.exception("%s handler failed for %s", name, peer)
            finally:
                if not ok:
                    self.served["failed"] += 1
                await framing.close_quietly(stream, reset=not ok)

        return guarded

    async def _read(self, stream: Any, peer: str, *expected: type[Any]) -> Any | None:
        req = await framing.read_message(stream, *expected, timeout_s=self.read_timeout_s)
        if isinstance(req, ErrorCode):
            if req is not ErrorCode.STREAM_CLOSED:  # a peer that left is not at fault
                self.penalise(peer, _OFFENCE.get(req, Offence.MALFORMED))
            return None
        return req

    async def _reply(self, stream: Any, peer: str, msg: Any) -> bool:
        err = await framing.write_message(stream, msg)
        if err is not None:
            if err is ErrorCode.TIMEOUT:
                self.penalise(peer, Offence.TIMEOUT)  # the peer stopped reading
            raise _Abort
        return True

    # -- status ---------------------------------------------------------------------------------

    async def _status(self, stream: Any, peer: str) -> None:
        theirs = await self._read(stream, peer, Status)
        if theirs is None:
            raise _Abort
        code = await self.on_status(stream.muxed_conn.peer_id, theirs)
        if code is not None:
            await self._reply(stream, peer, ErrorReply(int(code)))
            raise _Abort
        await self._reply(stream, peer, self.make_status())

    # -- sync -----------------------------------------------------------------------------------

    async def _sync(self, stream: Any, peer: str) -> None:
        req = await self._read(stream, peer, syncmsg.GetHeaders, syncmsg.GetBlocks)
        if req is None:
            raise _Abort
        if isinstance(req, syncmsg.GetHeaders):
            items = self._collect(self.chain.header_at, req.start, min(req.count, syncmsg.MAX_HEADERS))
            await self._reply(stream, peer, syncmsg.Headers(req.start, items))
        else:
            items = self._collect(self.chain.block_at, req.start, min(req.count, syncmsg.MAX_BLOCKS))
            await self._reply(stream, peer, syncmsg.Blocks(req.start, items))

    @staticmethod
    def _collect(get: Callable[[int], bytes | None], start: Height, count: int) -> tuple[bytes, ...]:
        out: list[bytes] = []
        total = 0
        for height in range(start, start + count):
            raw = get(height)
            if raw is None or len(raw) > syncmsg.MAX_ITEM_BYTES:
                break
            if out and total + len(raw) + 8 > syncmsg.MAX_RESPONSE_BYTES:
                break
            out.append(raw)
            total += len(raw) + 8
        return tuple(out)

    # -- blob -----------------------------------------------------------------------------------

    async def _blob(self, stream: Any, peer: str) -> None:
        req = await self._read(stream, peer, blobmsg.GetBlobManifest, blobmsg.GetBlobChunk)
        if req is None:
            raise _Abort
        store = self.blobs
        if store is None or not store.has(req.blob_hash):
            await self._reply(stream, peer, ErrorReply(int(ErrorCode.BLOB_MISSING)))
            return
        if isinstance(req, blobmsg.GetBlobManifest):
            hashes = await store.chunk_hashes(req.blob_hash, blobmsg.CHUNK_SIZE)
            size = store.size(req.blob_hash)
            if hashes is None or size is None or len(hashes) > blobmsg.MAX_CHUNKS:
                await self._reply(stream, peer, ErrorReply(int(ErrorCode.BLOB_MISSING)))
                return
            await self._reply(stream, peer, blobmsg.BlobManifest(req.blob_hash, size, hashes))
            return
        data = await store.get_chunk(req.blob_hash, req.index, blobmsg.CHUNK_SIZE)
        if data is None:
            await self._reply(stream, peer, ErrorReply(int(ErrorCode.BLOB_MISSING)))
            return
        await self._reply(stream, peer, blobmsg.BlobChunk(req.blob_hash, req.index, data))


class _Abort(Exception):
    """Raised inside a handler to end it with a stream reset (already scored)."""
