"""The one way a tx made or received inside this node reaches the network: `submit_tx(raw)`.

Owns: `TxSubmitter`: admit the encoded tx to the mempool (every check happens there, once), then
queue it for gossip; `run(network)` (a trio service) publishes the queue. Built with the mempool,
before the chain service and the network (the evidence reporter submits through it from its first
import on); what is admitted before `run` starts waits in the queue. The RPC's `sendrawtransaction`, the
evidence reporter's SLASH_EVIDENCE txs and (later) unit announcements all call `submit_tx`.
Must not: check txs itself (the mempool does), or fail a caller because gossip failed (the tx stays
in the mempool, and is logged).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, Protocol

import trio

if TYPE_CHECKING:  # trio-stubs in this venv hide trio.TaskStatus from mypy
    from trio_typing import TaskStatus

from chain.errors import ErrorCode
from chain.types import TxId
from linguachaind.services.interfaces import Clock, TxPublisher

log = logging.getLogger(__name__)

MAX_OUTBOX: Final = 1024  # admitted txs waiting to be published


class Admits(Protocol):
    """The part of `mempool.Mempool` the submitter uses."""

    def add_raw(self, raw: bytes, now_ms: int) -> TxId | ErrorCode: ...


class TxSubmitter:
    """Admit, then publish. Synchronous admission: the caller learns the mempool's verdict at once
    (the evidence reporter sequences its nonces on it) and never waits for the network."""

    def __init__(self, mempool: Admits, clock: Clock) -> None:
        self._mempool = mempool
        self._clock = clock
        self._send, self._outbox = trio.open_memory_channel[bytes](MAX_OUTBOX)
        self.published = 0

    def submit_tx(self, raw: bytes) -> TxId | ErrorCode:
        """The tx id once the mempool accepted it (on disk) and it is queued for gossip, else why not."""
        result = self._mempool.add_raw(raw, self._clock.now_ms())
        if isinstance(result, ErrorCode):
            return result
        try:
            self._send.send_nowait(raw)
        except trio.WouldBlock:
            log.warning("tx %s not published: outbox full (it is in the mempool)", result.hex()[:16])
        return result

    async def run(
        self, network: TxPublisher, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Publish every admitted tx on `network` (the node's `glue.Outbound`), oldest first."""
        task_status.started()
        async for raw in self._outbox:
            try:
                await network.publish_tx(raw)
            except Exception:
                log.warning("publishing a tx failed; it stays in the mempool", exc_info=True)
                continue
            self.published += 1
