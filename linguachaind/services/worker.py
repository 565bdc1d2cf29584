"""The node's one training worker, started on first use and shared by the services that need it
(the rounds service's scoring now, the trainer service's training next; ARCHITECTURE §4 step 4-5).

Owns: `LazyWorker`, a trio service holding the nursery the `TrainingSupervisor` runs in, and `get()`,
which starts the supervisor the first time and returns it once the worker's handshake passed, with
the chain's LoRA layout built from the worker's modules. Nodes that never score or train never
start a worker, so never load torch. Must not: send jobs (callers do) or decide what to train.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from trio_typing import TaskStatus

from chain.lora import LoraLayout, lora_layout
from chain.params import ChainParams
from training.supervisor import TrainingStatistics, TrainingSupervisor


class LazyWorker:
    """`run` it as a service; `await get()` from any task of the node."""

    def __init__(self, params: ChainParams, factory: Callable[[], TrainingSupervisor]) -> None:
        self.params = params
        self._factory = factory
        self._nursery: trio.Nursery | None = None
        self._supervisor: TrainingSupervisor | None = None
        self._layout: LoraLayout | None = None
        self._lock = trio.Lock()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()  # the supervisor runs in this nursery once started

    async def get(self) -> tuple[TrainingSupervisor, LoraLayout]:
        """The ready supervisor and the layout of its base model (starts the worker on first use;
        raises `training.supervisor.JobFailed` when the worker cannot start)."""
        async with self._lock:
            if self._supervisor is None:
                assert self._nursery is not None, "LazyWorker.run is not running"
                supervisor = self._factory()
                await self._nursery.start(supervisor.run)
                self._supervisor = supervisor
        ready = await self._supervisor.wait_ready()
        if self._layout is None:
            modules = [(m.name, m.in_features, m.out_features) for m in ready.modules]
            self._layout = lora_layout(modules, self.params)
        return self._supervisor, self._layout

    @property
    def layout(self) -> LoraLayout | None:
        return self._layout

    def statistics(self) -> TrainingStatistics | None:
        """The supervisor's statistics, or None before the worker was first needed."""
        return self._supervisor.statistics() if self._supervisor is not None else None
