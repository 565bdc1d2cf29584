"""The small Protocols the consensus services get their collaborators through.

Owns: `Clock` (milliseconds and sleeping until a time), `WallClock`, `Network` (what the services
hand to the p2p layer), `TxPublisher` (gossip of a tx the node created itself), `MempoolLike`
(what the chain service and producer call on the mempool), `ChainWatcher` (what the chain service
shows the evidence reporter).
Must not: implement p2p or the mempool, or hold test doubles (tests/support/doubles.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import trio

from chain.block import Block
from chain.errors import ErrorCode
from chain.header import Attestation, Header
from chain.state.model import StateReader
from chain.tx import Tx
from chain.vdfmsg import VdfProof

if TYPE_CHECKING:  # chain_service imports this module
    from linguachaind.services.chain_service import AddBlockResult


class Clock(Protocol):
    def now_ms(self) -> int:
        """Current time in Unix milliseconds."""
        ...

    async def sleep_until_ms(self, timestamp_ms: int) -> None:
        """Return once `now_ms() >= timestamp_ms` (at once if it already is)."""
        ...


class WallClock:
    """The system clock. `offset_ms` lets devnet's `setmocktime` shift it."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.offset_ms

    async def sleep_until_ms(self, timestamp_ms: int) -> None:
        while (left := timestamp_ms - self.now_ms()) > 0:  # noqa: ASYNC110 - the wall clock has no event
            await trio.sleep(left / 1000)


class Network(Protocol):
    """What the consensus services publish; the daemon adapts the p2p gossip layer to it."""

    async def publish_block(self, block: Block) -> None: ...

    async def publish_attestation(self, att: Attestation) -> None: ...

    async def publish_vdf(self, msg: VdfProof) -> None: ...


class TxPublisher(Protocol):
    """Gossip of a tx this node admitted (`services.submit.TxSubmitter` publishes through it)."""

    async def publish_tx(self, raw: bytes) -> None: ...


class MempoolLike(Protocol):
    """The part of `mempool.Mempool` the chain service and producer use."""

    def on_block_connected(self, block: Block, reader: StateReader) -> None: ...

    def on_block_disconnected(self, block: Block, reader: StateReader) -> None: ...

    def tx_template(
        self, max_bytes: int, max_count: int, *, accept: Callable[[Tx], bool] | None = None
    ) -> list[Tx]: ...


class ChainWatcher(Protocol):
    """What the chain service shows an observer (the evidence reporter, PROTOCOL §5.3). Called
    synchronously inside `import_block` / `on_attestation`: must be quick and must not import."""

    def saw_header(self, header: Header, code: AddBlockResult | ErrorCode | None) -> None:
        """Every block handed to `import_block`, as soon as it was validated: None once stored (on the
        best chain or beside it), else why not (`chain_service.ImportResult`)."""
        ...

    def saw_attestation(self, att: Attestation, verified: bool) -> None:
        """A vote: `verified` when it passed `check_attestation` (signature and eligibility) and
        entered the pool; False for one kept until its block arrives (signature not checked)."""
        ...
