"""Test doubles of the consensus services' collaborators (linguachaind.services.interfaces).

Owns: `FakeClock` (time moves only when told) and `NullNetwork` (records what was published).
Must not: be imported by the project's packages (tests and benchmarks only).
"""

from __future__ import annotations

import trio

from chain.block import Block
from chain.header import Attestation
from chain.vdfmsg import VdfProof


class FakeClock:
    """A clock for tests: `now_ms` changes only through `advance`/`set`; sleepers wake when reached."""

    def __init__(self, start_ms: int) -> None:
        self._now = start_ms
        self._changed = trio.Event()

    def now_ms(self) -> int:
        return self._now

    def set(self, timestamp_ms: int) -> None:
        self._now = max(self._now, timestamp_ms)
        self._changed.set()
        self._changed = trio.Event()

    def advance(self, ms: int) -> None:
        self.set(self._now + ms)

    async def sleep_until_ms(self, timestamp_ms: int) -> None:
        while self._now < timestamp_ms:
            await self._changed.wait()


class NullNetwork:
    """A network that records what was published (single-node tests)."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.attestations: list[Attestation] = []
        self.vdfs: list[VdfProof] = []
        self.txs: list[bytes] = []

    async def publish_block(self, block: Block) -> None:
        self.blocks.append(block)

    async def publish_attestation(self, att: Attestation) -> None:
        self.attestations.append(att)

    async def publish_vdf(self, msg: VdfProof) -> None:
        self.vdfs.append(msg)

    async def publish_tx(self, raw: bytes) -> None:
        self.txs.append(raw)
