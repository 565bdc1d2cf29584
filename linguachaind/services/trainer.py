"""The trainer service (PROTOCOL §3.4, §6.3, ARCHITECTURE §4 step 5): a node with training data
trains on each new final global version and announces the update as a learning unit.

Owns: following the final state's model version; fetching that version's adapter by hash (a late
joiner gets it from peers through `DataBlocks.want`) and checking it with `check_update_blob`
against the state's adapter hash; one `Train` job on the node's shared worker (`LazyWorker`); the
update blob into the blob store (after the devnet-only adversary transform, if one is set); the
mined, signed `LEARNING_UNIT` tx submitted through the one `submit_tx` (mempool, then gossip); the
start/stop switch of the `starttraining`/`stoptraining` RPCs; progress and `statistics()` for
`gettraininginfo` and /metrics. Must not: decide which units a version aggregates (the rules and
the rounds service do), write the chain, or train while the node is still syncing.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import trio

if TYPE_CHECKING:
    from trio_typing import TaskStatus

from chain.codec import encode
from chain.crypto import SecretKey, account_id
from chain.errors import ErrorCode
from chain.hashing import H
from chain.lora import INT32_MAX, INT32_MIN, Int32Array, LoraLayout, check_update_blob, update_blob
from chain.params import ChainParams
from chain.state.model import ModelVersion
from chain.tx import make_tx
from chain.types import AccountId, BlobHash, ChainId, Micro, TimestampMs, TxId
from chain.units import Encryption, LearningUnit
from linguachaind.logsetup import event
from linguachaind.services.chain_service import ChainService
from linguachaind.services.datablocks import DataBlocks
from linguachaind.services.wakeup import Poke, wait_change_or_poke
from linguachaind.services.worker import LazyWorker
from training import protocol as wp
from training.supervisor import JobFailed

log = logging.getLogger(__name__)

POLL_S: Final = 1.0  # looks again for a fetched adapter even when the chain did not move
RETRY_S: Final = 10.0  # after a failed job, before training on the same version again
DP_DELTA: Final = 1e-5


class Adversary(Enum):
    """Devnet experiments only (`--adversary`): how a dishonest trainer distorts its update."""

    SIGN_FLIP = "sign-flip"
    SCALE = "scale"
    NOISE = "noise"


ADVERSARY_SCALE: Final = 10  # `scale`: the update times ten (saturating in int32)


@dataclass(frozen=True, slots=True)
class TrainerSettings:
    """The node's `[training]` settings (linguachaind.config), as the trainer uses them."""

    data: Path
    steps: int
    batch_size: int
    lr: float
    dp_epsilon: float = 0.0  # 0: no differential privacy
    adversary: Adversary | None = None


@dataclass(frozen=True, slots=True)
class LastUnit:
    unit_id: str
    tx_id: str
    base_version: int
    blob_hash: str
    n_examples: int
    train_loss_micro: int
    dp_epsilon_micro: int
    seconds: float
    outcome: str  # "submitted" or the mempool's error code


@dataclass(frozen=True, slots=True)
class TrainerStatistics:
    enabled: bool
    state: str  # disabled | waiting_for_sync | starting_worker | waiting_for_adapter | training |
    # submitting | idle
    data: str
    trained_version: int  # the version of the last update, -1 before the first
    step: int
    total_steps: int
    loss_micro: int
    tokens_per_s: float
    units_submitted: int
    units_refused: int
    jobs_failed: int
    last_unit: LastUnit | None
    last_error: str
    adversary: str


class TrainingProgress:
    """The training worker's progress events: the supervisor's `on_progress` (given when the shared
    worker is built, before the trainer), kept for the trainer's `statistics()` and logged every 10
    steps. Only `Train` jobs send them."""

    def __init__(self) -> None:
        self.latest = wp.Progress(0, 0, Micro(0), 0)

    def __call__(self, job_id: int, progress: wp.Progress) -> None:
        self.latest = progress
        if progress.step == progress.total_steps or progress.step % 10 == 0:
            log.info(
                "%s",
                event(
                    "training_progress",
                    step=progress.step,
                    total=progress.total_steps,
                    loss=progress.loss_micro / 1e6,
                    tokens_per_s=round(progress.tokens_per_s_milli / 1000),
                ),
            )

    def restart(self, total_steps: int) -> None:
        """A new training job of `total_steps` starts."""
        self.latest = wp.Progress(0, total_steps, Micro(0), 0)


class _NotYet(Exception):
    """The adapter of the version to train from is not here yet (its fetch is queued)."""


class Trainer:
    """`run` it as a service on a node with `train_data`; `await nursery.start(trainer.run)`."""

    def __init__(
        self,
        settings: TrainerSettings,
        chain: ChainService,
        data: DataBlocks,
        worker: LazyWorker,
        key: SecretKey,
        submit: Callable[[bytes], TxId | ErrorCode],
        next_nonce: Callable[[], int],
        *,
        now_ms: Callable[[], int],
        workdir: Path,
        synced: Callable[[], bool] = lambda: True,
        progress: TrainingProgress | None = None,
    ) -> None:
        """`progress`: the worker's progress events, the record its supervisor was built with."""
        self.settings = settings
        self.chain = chain
        self.params: ChainParams = chain.params
        self.data = data
        self.worker = worker
        self.key = key
        self._submit = submit
        self._next_nonce = next_nonce
        self._now_ms = now_ms
        self.workdir = workdir
        self._synced = synced
        self.enabled = True
        self._poke = Poke()
        self._job_scope: trio.CancelScope | None = None
        self._state = "idle"
        self._trained_on: bytes | None = None  # version id of the last finished attempt
        self._trained_version = -1
        self.progress = progress if progress is not None else TrainingProgress()
        self._submitted = self._refused = self._failed = 0
        self._last_unit: LastUnit | None = None
        self._last_error = ""
        self._dp_noise_milli = 0

    # -- the switch (RPC starttraining / stoptraining) ------------------------------------------------

    def start(self) -> None:
        self.enabled = True
        self._poke.set()

    def stop(self) -> None:
        """Stop training: the job in flight is cancelled (the worker stops between two steps)."""
        self.enabled = False
        if self._job_scope is not None:
            self._job_scope.cancel()
        self._poke.set()

    # -- the loop ---------------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.settings.dp_epsilon > 0:
            sigma = await trio.to_thread.run_sync(noise_for_epsilon, self.settings.dp_epsilon, DP_DELTA)
            self._dp_noise_milli = max(1, round(sigma * 1000))
        task_status.started()
        log.info("%s", event("trainer_started", data=self.settings.data, steps=self.settings.steps))
        while True:
            target = self._target()
            if target is not None:
                await self._attempt(target)
                continue
            await wait_change_or_poke(self.chain, self.chain.version, self._poke, POLL_S)

    def _target(self) -> ModelVersion | None:
        """The final global version when it is one we have not trained on yet (and we may train)."""
        if not self.enabled:
            self._state = "disabled"
            return None
        if not self._synced():
            self._state = "waiting_for_sync"
            return None
        state = self.chain.state(self.chain.final_hash)
        if state is None:
            return None
        version = state.model_version()
        if bytes(version.version_id) == self._trained_on:
            if self._state not in ("waiting_for_adapter",):
                self._state = "idle"
            return None
        return version

    async def _attempt(self, version: ModelVersion) -> None:
        """Train on `version` once; a missing adapter waits (fetch queued), a failed job retries later."""
        if self.worker.layout is None:
            self._state = "starting_worker"
            try:
                await self._layout()
            except JobFailed as e:
                await self._failed_job(version, e)
            return  # the worker took a while to start: look at the final version again
        try:
            adapter = self._adapter_path(version, await self._layout())
        except _NotYet as e:
            self._state = "waiting_for_adapter"
            self._last_error = str(e)
            with trio.move_on_after(POLL_S):
                await self._poke.wait()
            return
        except JobFailed as e:
            await self._failed_job(version, e)
            return
        with trio.CancelScope() as scope:
            self._job_scope = scope
            try:
                await self._train_and_submit(version, adapter)
            except JobFailed as e:
                await self._failed_job(version, e)
            finally:
                self._job_scope = None
        if scope.cancelled_caught:
            log.info("%s", event("training_stopped", version=version.version))

    async def _failed_job(self, version: ModelVersion, e: JobFailed) -> None:
        self._failed += 1
        self._last_error = f"{e.code.name}: {e.message}"
        log.warning("training on version %d failed: %s (retrying in %.0f s)", version.version, e, RETRY_S)
        self._state = "idle"
        with trio.move_on_after(RETRY_S):
            await self._poke.wait()

    async def _layout(self) -> LoraLayout:
        _, layout = await self.worker.get()
        if self.data.layout is not None and self.data.layout != layout:  # header vs handshake
            log.warning("worker LoRA layout differs from the base weights' headers; using the worker's")
        self.data.layout = layout  # learning-unit blobs are checked against it from now on
        return layout

    def _adapter_path(self, version: ModelVersion, layout: LoraLayout) -> str:
        """The adapter file of `version` ("" for version 0), checked against the state's hash."""
        if version.version == 0:
            return ""
        blob_hash = version.adapter_blob_hash
        blob = self.data.blobs.read(blob_hash)
        if blob is None:
            self.data.want(blob_hash)
            raise _NotYet(f"fetching the adapter of version {version.version} ({blob_hash.hex()[:16]})")
        if bytes(H(blob)) != bytes(blob_hash) or isinstance(check_update_blob(blob, layout), ErrorCode):
            raise _NotYet(f"the stored adapter of version {version.version} does not check out")
        return str(self.data.blobs.path(blob_hash))

    async def _train_and_submit(self, version: ModelVersion, adapter: str) -> None:
        supervisor, layout = await self.worker.get()
        s = self.settings
        out = self.workdir / f"update-{version.version}.blob"
        seed = int.from_bytes(H(bytes(version.version_id) + bytes(self.key.pubkey))[:8], "big") >> 1
        request = wp.Train(
            data_path=str(s.data),
            adapter_path=adapter,
            out_path=str(out),
            steps=s.steps,
            epochs=1,
            batch_size=s.batch_size,
            lr_nano=wp.nano(s.lr),
            seed=seed,
            clip_norm_micro=self.params.clip_norm_micro,
            dp_noise_milli=self._dp_noise_milli,
            dp_delta_nano=wp.nano(DP_DELTA) if self._dp_noise_milli else 0,
        )
        self._state = "training"
        self.progress.restart(s.steps)
        start = time.monotonic()
        log.info("%s", event("training_started", version=version.version, steps=s.steps))
        result = await supervisor.train(request)
        self._state = "submitting"
        blob = await trio.Path(out).read_bytes()
        if s.adversary is not None:
            blob = distort(blob, layout, s.adversary)
        blob_hash = await self.data.blobs.put_bytes(blob)
        with trio.CancelScope(shield=True):  # a stop after the job finished still announces it
            await self._submit_unit(version, result, blob_hash, len(blob), time.monotonic() - start)
        out.unlink(missing_ok=True)

    async def _submit_unit(
        self, version: ModelVersion, result: wp.TrainResult, blob_hash: BlobHash, size: int, seconds: float
    ) -> None:
        unit = LearningUnit(
            chain_id=ChainId(self.params.chain_id),
            author=self.key.pubkey,
            base_version_id=version.version_id,
            adapter_blob_hash=blob_hash,
            n_examples=result.n_examples,
            train_loss_micro=result.train_loss_micro,
            dp_epsilon_micro=result.dp_epsilon_micro,
            encryption=Encryption.PLAINTEXT,
            byte_size=size,
            created_ms=TimestampMs(self._now_ms()),
            pow_nonce=0,
        )
        unit = await trio.to_thread.run_sync(unit.mined, self.params)
        tx = make_tx(self.key, self.params.chain_id, self._next_nonce(), self.params.min_fee, unit)
        outcome = self._submit(encode(tx))
        if isinstance(outcome, ErrorCode):
            self._refused += 1
            self._last_error = f"learning unit refused: {outcome.name}"
            tx_id, said = "", outcome.name
        else:
            self._submitted += 1
            tx_id, said = outcome.hex(), "submitted"
        self._trained_on = bytes(version.version_id)
        self._trained_version = int(version.version)
        self._last_unit = LastUnit(
            unit.id.hex(),
            tx_id,
            int(version.version),
            blob_hash.hex(),
            result.n_examples,
            result.train_loss_micro,
            result.dp_epsilon_micro,
            round(seconds, 3),
            said,
        )
        self._state = "idle"
        log.info(
            "%s",
            event(
                "learning_unit",
                version=version.version,
                unit=unit.id.hex()[:16],
                loss=result.train_loss_micro / 1e6,
                seconds=round(seconds, 1),
                outcome=self._last_unit.outcome,
            ),
        )

    def statistics(self) -> TrainerStatistics:
        p = self.progress.latest
        return TrainerStatistics(
            enabled=self.enabled,
            state=self._state,
            data=str(self.settings.data),
            trained_version=self._trained_version,
            step=p.step,
            total_steps=p.total_steps,
            loss_micro=p.loss_micro,
            tokens_per_s=p.tokens_per_s_milli / 1000,
            units_submitted=self._submitted,
            units_refused=self._refused,
            jobs_failed=self._failed,
            last_unit=self._last_unit,
            last_error=self._last_error,
            adversary=self.settings.adversary.value if self.settings.adversary is not None else "",
        )


def sender_nonce(chain: ChainService, next_pending: Callable[[AccountId], int], key: SecretKey) -> int:
    """The nonce of this key's next tx: the tip state's nonce or past the pending ones."""
    sender = account_id(key.pubkey)
    return max(int(chain.reader().account(sender).nonce), next_pending(sender))


def distort(blob: bytes, layout: LoraLayout, adversary: Adversary) -> bytes:
    """The devnet adversary's update: the honest one sign-flipped, scaled or replaced by noise of the
    same norm (int32 fixed point, saturating). Refused outside devnet by the config."""
    update = check_update_blob(blob, layout)
    if isinstance(update, ErrorCode):
        return blob
    tensors = update.as_dict()
    out: dict[str, Int32Array] = {}
    rng = np.random.default_rng(int.from_bytes(H(blob)[:8], "big"))
    for name, t in tensors.items():
        values = t.astype(np.int64)
        if adversary is Adversary.SIGN_FLIP:
            values = -values
        elif adversary is Adversary.SCALE:
            values = values * ADVERSARY_SCALE
        else:
            scale = math.sqrt(float(np.mean(values.astype(np.float64) ** 2))) or 1.0
            values = np.rint(rng.normal(0.0, scale * 3, size=values.shape)).astype(np.int64)
        out[name] = np.clip(values, INT32_MIN, INT32_MAX).astype(np.int32)
    return update_blob(out)


def noise_for_epsilon(epsilon: float, delta: float) -> float:
    """The smallest noise multiplier (to 1 %) whose one release is (epsilon, delta)-DP, by bisection
    over the accountant the worker declares epsilon with (dp-accounting's RDP accountant for one
    Gaussian mechanism, as `training.worker.update.dp_epsilon`, which this process may not import)."""
    import dp_accounting  # only nodes that ask for DP pay for the import

    def dp_epsilon(sigma: float, delta: float) -> float:
        accountant = dp_accounting.rdp.RdpAccountant()
        accountant.compose(dp_accounting.GaussianDpEvent(sigma), 1)
        return float(accountant.get_epsilon(delta))

    low, high = 0.05, 1.0
    while dp_epsilon(high, delta) > epsilon:
        high *= 2
        if high > 1e4:
            raise ValueError(f"no noise multiplier reaches epsilon {epsilon}")
    while high - low > 0.01 * high:
        mid = (low + high) / 2
        low, high = (mid, high) if dp_epsilon(mid, delta) > epsilon else (low, mid)
    return high
