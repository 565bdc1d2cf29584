"""The VDF service: the proof of time for the next height, computed or received (PROTOCOL §4.2).

Owns: the wanted challenge (the child of the current tip: it depends on the tip's VRF seed, so no
VDF can be computed before its parent block exists), a `vdf.VdfProver` child process computing
it (cancelled at once when the tip moves or a valid proof arrives by gossip), a bounded cache of
valid proofs by challenge, and publishing what it computed (timelord role: one proof serves every
node). Must not: validate blocks, compute ranks (the producer does), or import chiavdf (vdf does).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

import trio

if TYPE_CHECKING:  # trio-stubs in this venv hide trio.TaskStatus from mypy
    from trio_typing import TaskStatus

import vdf
from chain.consensus.election import challenge_for_child, vdf_challenge
from chain.errors import ErrorCode
from chain.header import Header
from chain.params import ChainParams
from chain.types import BlockHash
from chain.vdfmsg import VdfProof
from linguachaind.logsetup import event
from linguachaind.services.interfaces import Network

log = logging.getLogger(__name__)

MAX_CACHED: Final = 256


class HeaderLookup(Protocol):
    """Known headers (the chain service has this shape)."""

    def header(self, block_hash: BlockHash) -> Header | None: ...


class TipSource(Protocol):
    """What the service follows to know which VDF is wanted (the chain service has this shape)."""

    @property
    def version(self) -> int: ...

    async def wait_change(self, seen_version: int) -> int: ...

    def tip_hash(self) -> bytes: ...


class VdfService:
    """Provides `(output, proof)` for the child of a block. Start with `nursery.start(service.run)`.

    `compute=False` (a node that is neither validator nor timelord) only waits for gossiped proofs."""

    def __init__(
        self,
        params: ChainParams,
        *,
        compute: bool = True,
        prover_factory: Callable[[], vdf.VdfProver] = vdf.VdfProver,
        headers: HeaderLookup | None = None,
    ) -> None:
        self.params = params
        self._headers = headers
        self._compute = compute
        self._prover_factory = prover_factory
        self._known: OrderedDict[bytes, tuple[bytes, bytes]] = OrderedDict()
        self._arrived: dict[bytes, trio.Event] = {}
        self._target: bytes | None = None
        self._target_changed = trio.Event()
        self._work_scope: trio.CancelScope | None = None
        self.computed = 0
        self.received = 0

    def challenge_for(self, prev_hash: bytes) -> bytes:
        """The challenge of the child of `prev_hash`: it chains from the parent's seed (its proposer's
        VRF output), its VDF output and the height (§4.2), so it exists only once the parent does and
        the parent's header is looked up. Without a lookup (the service's own unit tests) or for an
        unknown parent it is derived from the hash alone, which no valid block uses."""
        parent = self._headers.header(BlockHash(prev_hash)) if self._headers is not None else None
        if parent is None:
            return vdf_challenge(self.params.chain_id, prev_hash, prev_hash, 0)
        return challenge_for_child(self.params.chain_id, parent)

    # -- inputs --------------------------------------------------------------------------------

    def want(self, prev_hash: bytes) -> bytes:
        """Ask for the VDF of the child of `prev_hash` (the previous wish is dropped); its challenge."""
        challenge = self.challenge_for(prev_hash)
        if challenge != self._target:
            self._target = challenge
            if self._work_scope is not None:
                self._work_scope.cancel()  # kills the prover child now
            self._target_changed.set()
            self._target_changed = trio.Event()
        return challenge

    def on_gossip(self, msg: VdfProof) -> ErrorCode | None:
        """A proof from the network: verified (cached) and kept; None if valid and new."""
        if msg.challenge in self._known:
            return ErrorCode.ALREADY_KNOWN
        code = vdf.check_vdf_proof(self.params, msg)
        if code is not None:
            return code
        self.received += 1
        self._add(msg.challenge, msg.output, msg.proof)
        return None

    def _add(self, challenge: bytes, output: bytes, proof: bytes) -> None:
        self._known[challenge] = (output, proof)
        while len(self._known) > MAX_CACHED:
            self._known.popitem(last=False)
        arrived = self._arrived.pop(challenge, None)
        if arrived is not None:
            arrived.set()
        if challenge == self._target and self._work_scope is not None:
            self._work_scope.cancel()  # someone else was faster: stop our computation

    # -- outputs -------------------------------------------------------------------------------

    def lookup(self, prev_hash: bytes) -> tuple[bytes, bytes] | None:
        return self._known.get(self.challenge_for(prev_hash))

    async def get(self, prev_hash: bytes) -> tuple[bytes, bytes]:
        """(output, proof) for the child of `prev_hash`: cached, gossiped, or computed now."""
        challenge = self.want(prev_hash)
        while (found := self._known.get(challenge)) is None:
            await self._arrived.setdefault(challenge, trio.Event()).wait()
        return found

    # -- the service ---------------------------------------------------------------------------

    async def run(
        self,
        *,
        tip: TipSource | None = None,
        network: Network | None = None,
        task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Compute wanted VDFs in a child process and publish each on `network`; with `tip`, also
        want the child of every new tip (timelord mode: computing before a producer asks)."""
        async with self._prover_factory() as prover, trio.open_nursery() as nursery:
            if tip is not None:
                nursery.start_soon(self._follow, tip)
            task_status.started()
            while True:
                target = self._target
                if target is None or target in self._known or not self._compute:
                    await self._target_changed.wait()
                    continue
                await self._prove(prover, target, network)

    async def _follow(self, tip: TipSource) -> None:
        seen = -1
        while True:
            self.want(tip.tip_hash())
            seen = await tip.wait_change(seen)

    async def _prove(self, prover: vdf.VdfProver, target: bytes, network: Network | None) -> None:
        bits, iterations = self.params.vdf_discriminant_bits, self.params.vdf_iterations
        with trio.CancelScope() as scope:
            self._work_scope = scope
            try:
                output, proof = await prover.prove(target, bits, iterations)
            except vdf.VdfError:
                log.exception("VDF prover failed; retrying in 1 s")
                await trio.sleep(1)
                return
            finally:
                self._work_scope = None
        if scope.cancelled_caught:
            return
        self.computed += 1
        log.info("%s", event("vdf_computed", challenge=target.hex()[:16], iterations=iterations))
        self._add(target, output, proof)
        if network is not None:
            await network.publish_vdf(vdf.make_vdf_proof(self.params, target, output, proof))
