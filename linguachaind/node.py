"""The node: every component, started in one order and stopped in the reverse (ARCHITECTURE.md §1).

Owns: the start order, which reads top to bottom in `_start_all`: datadir lock and PID file ->
genesis and validator key -> chain store -> blob store and DATA blocks -> mempool -> tx submitter
-> rounds service -> (validators) evidence reporter -> chain service (given the reporter as its
watcher) -> RPC server -> VDF service -> p2p (with `glue.NodeApi` handling every inbound message;
its syncer gated, when no checkpoint is given, by the checkpoint fetched from the bootstrap peers) ->
blob fetch, training worker, rounds -> tx publishing -> vote re-announcement -> chain retries and
VDF -> (validators) attester, producer, the evidence reporter's loop -> (train_data) trainer ->
mempool expiry.
Every component gets what it uses at construction, built before it, or, for a service's background
loop, as an argument of its `run` (ARCHITECTURE.md "Start order"); nothing is set afterwards.
And the stop order (each service cancelled and awaited in reverse, then stores closed in reverse),
the PID, port and cookie files, signal handling (SIGINT/SIGTERM -> ordered stop), the mock clock
of devnet, and the `RpcContext` the RPC methods read. Must not: implement any rule or protocol
(components do) or hold a `dict[str, Any]` of settings (everything comes from the frozen `NodeConfig`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio-typing's stubs (pulled in by libp2p) shadow trio's own

from chain.codec import encode
from chain.crypto import SecretKey
from chain.errors import ErrorCode
from chain.genesis import Genesis, load_genesis
from chain.lora import LoraConfig, LoraLayout
from chain.params import ChainParams
from chain.state.model import Checkpoint
from chain.store.blockstore import BlockStore
from chain.types import BlobHash, BlockHash, Height
from linguachaind import __version__
from linguachaind.config import NodeConfig, parse_checkpoint
from linguachaind.datadir import (
    DatadirLock,
    Layout,
    ensure_dirs,
    load_or_create_seed,
    load_validator_key,
    remove_cookie,
    write_cookie,
)
from linguachaind.glue import BlobFetches, NodeApi, Outbound
from linguachaind.logsetup import adopt_library_logger, event
from linguachaind.metrics import NodeMetrics
from linguachaind.parts import Parts
from linguachaind.rpc.http import HttpServer
from linguachaind.rpc.methods import RpcContext, build_methods
from linguachaind.rpc.server import Credentials, RpcDispatcher
from linguachaind.services.attester import Attester
from linguachaind.services.chain_service import ChainService
from linguachaind.services.datablocks import DataBlocks
from linguachaind.services.evidence import EvidenceReporter
from linguachaind.services.interfaces import WallClock
from linguachaind.services.producer import Producer, agreed_final
from linguachaind.services.rounds import RoundsService
from linguachaind.services.submit import TxSubmitter
from linguachaind.services.trainer import Adversary, Trainer, TrainerSettings, TrainingProgress, sender_nonce
from linguachaind.services.vdf_service import VdfService
from linguachaind.services.worker import LazyWorker
from linguachaind.slashing_protection import SlashingProtection
from mempool.config import MempoolConfig
from mempool.mempool import Mempool
from p2p.blobstore import FileBlobStore
from p2p.checkpoint import TooFewPeers, fetch_checkpoint
from p2p.gossip import GossipConfig
from p2p.host import HostConfig
from p2p.messages.gossip import GossipKind
from p2p.service import P2PConfig, P2PService
from training.base_model import BaseModelError, lora_layout_of, resolve_base_model
from training.supervisor import TrainingSupervisor, WorkerConfig
from vdf.prover import VdfProver

log = logging.getLogger(__name__)

STOP_TIMEOUT_S: Final = 15.0
MEMPOOL_EXPIRY_INTERVAL_S: Final = 60.0
STATUS_GRACE_S: Final = 10.0  # a validator with bootstrap peers waits this long for a first status
ServiceFn = Callable[..., Awaitable[None]]


def _set_mock_time(clock: WallClock, timestamp_ms: int) -> None:
    """Devnet `setmocktime`: the clock jumps to `timestamp_ms` and keeps ticking; 0 = real time."""
    clock.offset_ms = timestamp_ms - int(time.time() * 1000) if timestamp_ms else 0


@dataclass
class _Running:
    name: str
    done: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


class Node:
    """One linguachaind. `await Node(config).run()` until `request_stop()` or a signal."""

    def __init__(self, config: NodeConfig, *, handle_signals: bool = True) -> None:
        self.config = config
        self.layout = Layout(config.datadir)
        self.clock = WallClock()
        self.metrics = NodeMetrics()
        self._handle_signals = handle_signals
        self._stop = trio.Event()
        self._signalled = False  # a SIGINT/SIGTERM asked for the stop
        self._running: list[_Running] = []
        self._closers: list[tuple[str, Callable[[], None]]] = []
        self.rpc_port: int | None = None
        self.ctx: RpcContext | None = None
        self.genesis: Genesis | None = None
        self.base_dir: Path | None = None  # the checked base model directory (None: not here)
        self.validator_key: SecretKey | None = None
        # Weak subjectivity (PROTOCOL §5.3): the checkpoint given at start, or the one adopted from the
        # configured peers by `_fetch_checkpoint`, which hands the same one to the chain service.
        self.checkpoint: Checkpoint | None = None
        self.parts = Parts()  # the components, one name each, filled in start order
        self.progress = TrainingProgress()  # the worker's training progress, which the trainer shows
        self.metrics.watch(self.parts)  # tip time, gossip, sync, mempool counters at scrape time

    # -- lifecycle -----------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, *, task_status: TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Start everything, `task_status.started(rpc_port)`, run until stopped, stop in reverse order."""
        with self._signals_stop_node():
            await self._run_locked(task_status)

    async def _run_locked(self, task_status: TaskStatus[int]) -> None:
        lock = DatadirLock(self.layout)
        lock.acquire()  # DatadirLockedError propagates: main prints it as one line
        try:
            ensure_dirs(self.layout)
            self.layout.pid.write_text(f"{os.getpid()}\n")
            async with trio.open_nursery() as nursery:
                try:
                    await self._start_all(nursery)
                    log.info(
                        "%s",
                        event(
                            "started",
                            version=__version__,
                            network=self.config.network,
                            rpc_port=self.rpc_port,
                            datadir=self.config.datadir,
                        ),
                    )
                    assert self.rpc_port is not None
                    task_status.started(self.rpc_port)
                    await self._stop.wait()
                    log.info("%s", event("stopping"))
                finally:
                    with trio.CancelScope(shield=True):
                        await self._stop_all()
                    nursery.cancel_scope.cancel()
        finally:
            self._close_stores()
            remove_cookie(self.layout)
            with contextlib.suppress(FileNotFoundError):
                self.layout.rpc_port_file.unlink()
            with contextlib.suppress(FileNotFoundError):
                self.layout.pid.unlink()
            lock.release()
            log.info("%s", event("stopped"))

    @contextlib.contextmanager
    def _signals_stop_node(self) -> Iterator[None]:
        """SIGINT/SIGTERM -> ordered stop, for the whole run, store closing and file removal included.

        The first signal requests the stop. Later ones are logged and ignored: a terminal's Ctrl-C
        and a supervisor's SIGTERM (scripts/devnet, systemd) often both arrive, and the second one
        used to kill the node in the middle of its shutdown (leaving .cookie, .rpcport and the pid
        file, stores unclosed). SIGKILL is the way to force. After the stop, signals are ignored
        until the process exits."""
        if not self._handle_signals:
            yield
            return
        token = trio.lowlevel.current_trio_token()

        def on_signal(signum: int, frame: object) -> None:
            name = signal.Signals(signum).name
            if self._signalled:
                log.warning("received %s while stopping: the ordered stop continues (SIGKILL forces)", name)
                return
            self._signalled = True
            log.info("received %s, stopping", name)
            token.run_sync_soon(self.request_stop)

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, on_signal)
        try:
            yield
        finally:
            # Stopped: a late signal must not turn the clean exit (code 0) into death by signal while
            # the interpreter shuts down. This process is a daemon that ends now; SIGKILL still works.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)

    async def start_service(self, nursery: trio.Nursery, name: str, fn: ServiceFn) -> Any:
        """Start `fn(task_status=...)` in its own cancel scope; stopped in reverse order of starting."""
        running = _Running(name)

        async def runner(*, task_status: TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                with running.scope:
                    await fn(task_status=task_status)
                if not running.scope.cancelled_caught and not self._stop.is_set():
                    log.error("service %s returned on its own; stopping the node", name)
                    self.request_stop()
            except Exception:
                log.exception("service %s crashed; stopping the node", name)
                self.request_stop()
                raise
            finally:
                running.done.set()

        value = await nursery.start(runner)
        self._running.append(running)
        log.info("%s", event("service_started", name=name))
        return value

    async def _stop_all(self) -> None:
        for running in reversed(self._running):
            running.scope.cancel()
            with trio.move_on_after(STOP_TIMEOUT_S) as scope:
                await running.done.wait()
            if scope.cancelled_caught:
                log.error("service %s did not stop within %.0f s", running.name, STOP_TIMEOUT_S)
            else:
                log.info("%s", event("service_stopped", name=running.name))
        self._running.clear()

    def add_closer(self, name: str, close: Callable[[], None]) -> None:
        """Register a store to flush/close after every service stopped (closed in reverse order)."""
        self._closers.append((name, close))

    def _close_stores(self) -> None:
        for name, close in reversed(self._closers):
            try:
                close()
                log.info("%s", event("store_closed", name=name))
            except Exception:
                log.exception("closing %s failed", name)
        self._closers.clear()

    # -- start order ---------------------------------------------------------------------------

    async def _start_all(self, nursery: trio.Nursery) -> None:
        """Everything, in order; each step sees only what the steps above it started."""
        config = self.config
        log.info("config: %s", config.redacted())
        genesis = self.genesis = load_genesis(config.genesis_path)
        key = self.validator_key = load_validator_key(self.layout) if config.validator else None
        self.ctx = RpcContext(
            config=config,
            genesis=genesis,
            genesis_hash=bytes(genesis.id),  # the store refines it once open
            request_stop=self.request_stop,
            parts=self.parts,
            now_ms=self.clock.now_ms,
            validator_pubkey=key.pubkey if key is not None else None,
            unit_key=key,
            set_mock_time=(lambda ts: _set_mock_time(self.clock, ts)) if config.allow_test_rpcs else None,
        )
        # genesis_file_id: the genesis *document*; chain_opened's genesis_hash is the genesis *block*
        # (what getnodeinfo reports and what nodes compare): two hashes, two names.
        log.info("%s", event("genesis", chain_id=genesis.params.chain_id, genesis_file_id=genesis.id.hex()))
        store = self._open_chain_store(genesis)
        data = self._open_blobs(store)
        mempool = self._open_mempool(store, data)
        txs = self.parts.txs = TxSubmitter(mempool, self.clock)  # admits now, publishes once p2p runs
        checkpoint = self.checkpoint = given_checkpoint(config)
        rounds = self._open_rounds(store, data)
        reporter = self._open_reporter(store, key, mempool, txs, rounds)  # validators only
        chain = self.parts.chain = ChainService(
            store,
            self.clock,
            mempool=mempool,
            checkpoint=checkpoint,
            learning_check=rounds.check_block,
            scores_of=rounds.scores_of,  # FALSE_SCORE evidence is checked against this node's scores
            watchers=(reporter,) if reporter is not None else (),
        )
        await self._start_rpc(nursery)  # answers WARMING_UP for the parts below until they run
        computes = config.validator or config.timelord
        prover = functools.partial(VdfProver, observe=self.metrics.observe_vdf)  # prove times: /metrics
        vdf = self.parts.vdf = VdfService(
            store.params, compute=computes, headers=chain, prover_factory=prover
        )
        api = NodeApi(store, chain, mempool, vdf, self.clock.now_ms, fetch_unit_blob=data.fetch_unit_blob)
        gate = trio.Event() if self._fetches_checkpoint(store, checkpoint) else None
        p2p = await self._start_p2p(nursery, api, data.blobs, gate)
        if gate is not None:  # the syncer waits for the checkpoint the configured peers agree on
            await self.start_service(
                nursery, "checkpoint", functools.partial(self._fetch_checkpoint, chain, p2p, gate)
            )
        await self._start_blob_fetch(nursery, data, rounds, chain, p2p)
        outbound = Outbound(p2p)  # what the services publish: encode, then p2p
        await self.start_service(nursery, "tx-submit", functools.partial(txs.run, outbound))
        await self.start_service(nursery, "vote-reannounce", functools.partial(reannounce_votes, p2p, chain))
        await self.start_service(nursery, "chain", chain.run)  # retries early blocks and orphans
        follow = chain if (config.validator or config.timelord) else None
        await self.start_service(nursery, "vdf", functools.partial(vdf.run, tip=follow, network=outbound))
        if key is not None:
            await self._start_validator(nursery, key, chain, vdf, mempool, outbound, p2p)
        unit_key = SecretKey(load_or_create_seed(config.train_key_file)) if config.train_key_file else key
        if unit_key is not None and config.train_data is not None:
            await self._start_trainer(nursery, unit_key, chain, data, mempool, txs, p2p)
        await self.start_service(nursery, "mempool-expiry", functools.partial(expire, mempool, self.clock))
        self.ctx.warming_up = False

    def _open_chain_store(self, genesis: Genesis) -> BlockStore:
        """The block store, creating the genesis block on first start."""
        assert self.ctx is not None
        store = self.parts.store = BlockStore.open(self.layout.chain, genesis)
        self.add_closer("chain", store.close)
        self.ctx.genesis_hash = bytes(store.genesis_hash)
        tip_hash, tip_height = store.tip
        log.info(
            "%s",
            event(
                "chain_opened",
                height=tip_height,
                best=tip_hash.hex()[:16],
                final=store.final_height,
                genesis_hash=bytes(store.genesis_hash).hex(),
            ),
        )
        self.metrics.gauge("height", "height of the best block", lambda: float(store.tip[1]))
        self.metrics.gauge(
            "final_height", "height of the last final block", lambda: float(store.final_height)
        )
        return store

    def _open_mempool(self, store: BlockStore, data: DataBlocks) -> Mempool:
        """The mempool on its own LevelDB, re-validated against the tip; a unit is admitted only
        once its blob is held and is the unit's (PROTOCOL §3.3, §3.4)."""
        reader, now = store.reader(), self.clock.now_ms()
        pool = self.parts.mempool = Mempool.open(
            self.layout.mempool,
            store.params,
            MempoolConfig(),
            reader=reader,
            now_ms=now,
            unit_check=data.unit_blob_problem,
        )
        self.add_closer("mempool", pool.close)
        log.info("%s", event("mempool_opened", size=len(pool)))
        self.metrics.gauge("mempool_size", "txs in the mempool", lambda: float(len(pool)))
        return pool

    def _open_blobs(self, store: BlockStore) -> DataBlocks:
        """The blob store and the DATA-block work over it (the mempool's unit admission, the
        chain service's DATA-body check). Learning-unit blobs are checked against the LoRA layout
        read from the base model's safetensors headers, from the start (no worker needed)."""
        assert self.genesis is not None
        self.base_dir = base_model_dir(self.genesis)
        layout = base_layout(self.base_dir, store.params) if self.base_dir is not None else None
        blobs = self.parts.blobs = FileBlobStore(self.layout.blobs)
        data = self.parts.data = DataBlocks(
            store.params, store, blobs, layout, unit_blob_fetch_s=self.config.unit_blob_fetch_s
        )
        return data

    def _open_rounds(self, store: BlockStore, data: DataBlocks) -> RoundsService:
        """The rounds service (VERSION results; the chain service's import check of DATA and
        VERSION bodies) over the shared training worker, which starts on first use (None without the
        base model)."""
        assert self.genesis is not None
        factory = None
        if self.base_dir is not None:
            genesis_hash = bytes(store.genesis_hash)
            factory = worker_factory(self.genesis, self.base_dir, genesis_hash, self.config, self.progress)
        worker = self.parts.worker = LazyWorker(store.params, factory) if factory is not None else None
        rounds = self.parts.rounds = RoundsService(store, data, worker, final_floor=self._checkpoint_height)
        return rounds

    def _open_reporter(
        self,
        store: BlockStore,
        key: SecretKey | None,
        mempool: Mempool,
        txs: TxSubmitter,
        rounds: RoundsService,
    ) -> EvidenceReporter | None:
        """A validator's evidence reporter (PROTOCOL §5.3), paid to `key`'s account: built before the
        chain service, which shows it every header and vote from its first import on; its loop
        (`run(chain)`) starts with the attester and producer."""
        if key is None:
            return None
        reporter = self.parts.evidence = EvidenceReporter(
            store, key, mempool, txs, false_scores=rounds.false_scores
        )
        return reporter

    def _checkpoint_height(self) -> int:
        """The height of the node's weak-subjectivity checkpoint (given, or adopted from the
        configured peers), 0 without one: the rounds service does not re-score VERSION blocks at or
        below it (PROTOCOL §6.5, blocks already final)."""
        return int(self.checkpoint.height) if self.checkpoint is not None else 0

    async def _start_blob_fetch(
        self,
        nursery: trio.Nursery,
        data: DataBlocks,
        rounds: RoundsService,
        chain: ChainService,
        p2p: P2PService,
    ) -> None:
        """Blobs a check found missing (units of a DATA block, test sets) and gossiped units' blobs
        are fetched from peers through p2p (one download per hash at a time); then the training
        worker and the rounds service's background computation, which follows the chain service."""

        async def fetch_blob(blob_hash: BlobHash, peers: Sequence[str] | None) -> ErrorCode | None:
            return (await p2p.fetch_blob(blob_hash, peers)).error

        await self.start_service(
            nursery, "blob-fetch", functools.partial(data.run, BlobFetches(fetch_blob).fetch)
        )
        if self.parts.worker is not None:  # the training worker process starts on first use
            await self.start_service(nursery, "training-worker", self.parts.worker.run)
        await self.start_service(nursery, "rounds", functools.partial(rounds.run, chain))

    async def _start_rpc(self, nursery: trio.Nursery) -> None:
        assert self.ctx is not None
        creds = [Credentials("__cookie__", write_cookie(self.layout))]
        if self.config.rpc_user is not None and self.config.rpc_password is not None:
            creds.append(Credentials(self.config.rpc_user, self.config.rpc_password))
        dispatcher = RpcDispatcher(
            build_methods(self.ctx),
            creds,
            metrics=self.metrics.render,
            observe=self.metrics.observe_rpc,
            allow_devnet_only=self.config.allow_test_rpcs,
        )
        server = HttpServer(
            dispatcher.handle,
            dispatcher.too_large,
            host=self.config.rpc_bind,
            port=self.config.rpc_port,
            max_body=self.config.rpc_max_request_bytes,
            read_timeout_s=self.config.rpc_read_timeout_s,
        )
        self.rpc_port = await self.start_service(nursery, "rpc", server.run)
        self.layout.rpc_port_file.write_text(f"{self.rpc_port}\n")
        self.metrics.gauge("up", "1 while the node runs", lambda: 1.0)

    def _fetches_checkpoint(self, store: BlockStore, given: Checkpoint | None) -> bool:
        """Weak subjectivity from peers (PROTOCOL §5.3): only without a given checkpoint, with
        bootstrap peers configured and `checkpoint_peers` > 0, and while the datadir holds no final
        block above the genesis (a node with one already trusts its own history)."""
        config = self.config
        return (
            given is None
            and bool(config.bootstrap)
            and config.checkpoint_peers > 0
            and store.final_height == 0
        )

    async def _fetch_checkpoint(
        self,
        chain: ChainService,
        p2p: P2PService,
        gate: trio.Event,
        *,
        task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Ask the bootstrap peers for their final block (p2p.checkpoint's rule), adopt it, then let
        the syncer start. Too few answers: the syncer stays held and the peers are asked again;
        a disagreement (`CheckpointRefused`, a `ConfigError`) stops the node with the reason (exit
        code 1): the operator gives `--checkpoint HEIGHT:HASH` or fixes the peers."""
        task_status.started()
        config = self.config
        while True:
            try:
                got = await fetch_checkpoint(
                    p2p.host,
                    chain.params.chain_id,
                    config.bootstrap,
                    p2p.peers_mgr.finals,
                    min_peers=min(config.checkpoint_peers, len(config.bootstrap)),
                    wait_s=config.checkpoint_wait_s,
                )
                break
            except TooFewPeers as exc:  # down, unreachable or syncing themselves: ask again
                log.warning("%s", event("checkpoint_waiting", reason=str(exc)))
                await trio.sleep(min(config.checkpoint_wait_s, 5.0))
        if got is None:
            log.info("%s", event("checkpoint_not_needed", reason="no configured peer has a final block yet"))
        else:
            adopted = Checkpoint(*got)
            chain.adopt_checkpoint(adopted)  # raises (stopping the node) when it conflicts
            self.checkpoint = adopted
            log.info("%s", event("checkpoint_adopted", height=got[0], hash=got[1].hex(), source="peers"))
        gate.set()
        p2p.syncer.poke()
        await trio.sleep_forever()

    async def _start_p2p(
        self,
        nursery: trio.Nursery,
        api: NodeApi,
        blobs: FileBlobStore,
        gate: trio.Event | None = None,
    ) -> P2PService:
        """The libp2p host, gossip, sync and blob protocols; `api` handles what arrives; the syncer
        waits for `gate` when one is given."""
        adopt_library_logger("libp2p")
        config = self.config
        p2p_config = P2PConfig(
            keys_dir=self.layout.keys,
            host=HostConfig(listen_addrs=config.listen, enable_mdns=config.mdns),
            bootstrap=config.bootstrap,
            gossip=GossipConfig(validation_timeout_s=config.gossip_validation_timeout_s),
        )
        p2p = self.parts.p2p = P2PService(p2p_config, api.chain.params, api, api, api, blobs, sync_gate=gate)
        await self.start_service(nursery, "p2p", p2p.run)
        self.metrics.gauge("peers", "connected peers", lambda: float(len(p2p.peers())))
        return p2p

    async def _start_validator(
        self,
        nursery: trio.Nursery,
        key: SecretKey,
        chain: ChainService,
        vdf: VdfService,
        mempool: Mempool,
        outbound: Outbound,
        p2p: P2PService,
    ) -> None:
        """Attester, producer (held back while the node syncs) and the evidence reporter's loop (the
        reporter itself was built before the chain service, as its watcher)."""
        parts = self.parts
        protection = SlashingProtection.open(self.layout.slashing_protection, key.pubkey)
        self.add_closer("slashing_protection", protection.close)

        started = time.monotonic()

        def synced() -> bool:
            # A (re)started validator with peers to ask waits for a first status from one (at most
            # STATUS_GRACE_S): before it, it cannot know how far behind it is, and a block on its
            # stale tip would land at a height the others finalised long ago (issue 15 finding 2)
            heard = bool(p2p.peers_mgr.finals()) or not self.config.bootstrap
            return (heard or time.monotonic() - started > STATUS_GRACE_S) and not p2p.sync_status().syncing

        rounds = parts.rounds
        score_check = rounds.may_attest if rounds is not None else None  # its VDF-assigned batches
        attester = parts.attester = Attester(chain, key, protection, outbound, score_check=score_check)
        producer = parts.producer = Producer(
            chain,
            vdf,
            key,
            protection,
            self.clock,
            outbound,
            mempool=mempool,
            synced=synced,
            data_blocks=parts.data,
            versions=parts.rounds,
            # held back while its chain lacks the final block its peers agree on (catching up)
            peer_final=lambda: agreed_final(list(p2p.peers_mgr.finals().values())),
        )
        await self.start_service(nursery, "attester", attester.run)
        await self.start_service(nursery, "producer", producer.run)
        if parts.evidence is not None:
            await self.start_service(nursery, "evidence", functools.partial(parts.evidence.run, chain))
        log.info("%s", event("validator_started", pubkey=key.pubkey.hex()[:16]))

    async def _start_trainer(
        self,
        nursery: trio.Nursery,
        key: SecretKey,
        chain: ChainService,
        data: DataBlocks,
        mempool: Mempool,
        txs: TxSubmitter,
        p2p: P2PService,
    ) -> None:
        """The trainer (config `train_data`): trains on each new final version and announces units
        signed and paid by `key` (`train_key_file`, else the validator key)."""
        config = self.config
        if self.parts.worker is None:
            log.warning("%s", event("trainer_not_started", reason="the base model is not available here"))
            return
        assert config.train_data is not None
        settings = TrainerSettings(
            config.train_data,
            config.train_steps,
            config.train_batch_size,
            config.train_lr,
            config.train_dp_epsilon,
            Adversary(config.train_adversary) if config.train_adversary else None,
        )
        trainer = self.parts.trainer = Trainer(
            settings,
            chain,
            data,
            self.parts.worker,
            key,
            txs.submit_tx,
            functools.partial(sender_nonce, chain, mempool.next_nonce, key),
            now_ms=self.clock.now_ms,
            workdir=self.layout.root / "training",
            synced=functools.partial(caught_up, p2p, chain),
            progress=self.progress,
        )
        await self.start_service(nursery, "trainer", trainer.run)


# -- small node tasks ------------------------------------------------------------------------------


def given_checkpoint(config: NodeConfig) -> Checkpoint | None:
    """The weak-subjectivity checkpoint of `--checkpoint HEIGHT:HASH` (PROTOCOL §5.3; checked by
    `NodeConfig.validate`), or None."""
    if not config.checkpoint:
        return None
    height, digest = parse_checkpoint(config.checkpoint)
    return Checkpoint(Height(height), BlockHash(digest))


def base_model_dir(genesis: Genesis) -> Path | None:
    """The genesis base model's checked directory (the shipped lc-tiny by default); None (logged) when
    the base model is not available here."""
    base = genesis.base_model
    try:
        return resolve_base_model(base.name, expected_hash=bytes(base.weights_hash))
    except BaseModelError as e:
        log.warning("%s", event("no_base_model", reason=str(e)))
        return None


def base_layout(model_dir: Path, params: ChainParams) -> LoraLayout | None:
    """The chain's LoRA layout over the base, from its safetensors headers (the same layout the
    worker reports at its handshake); None (logged) when the headers do not give it, and then the
    mempool checks learning-unit blobs by size until the worker has started."""
    try:
        return lora_layout_of(model_dir, LoraConfig.from_params(params))
    except BaseModelError as e:
        log.warning("%s", event("no_base_layout", reason=str(e)))
        return None


def worker_factory(
    genesis: Genesis,
    model_dir: Path,
    genesis_hash: bytes,
    config: NodeConfig,
    on_progress: TrainingProgress | None = None,
) -> Callable[[], TrainingSupervisor]:
    """The training worker of the genesis base model in `model_dir`, for the rounds service to start
    on first use."""
    base = genesis.base_model
    worker = WorkerConfig(
        model_dir,
        genesis_hash,
        LoraConfig.from_params(genesis.params),
        weights_hash=bytes(base.weights_hash),
        device=config.device,
        threads=config.train_threads,
    )
    return functools.partial(TrainingSupervisor, worker, on_progress=on_progress)


def caught_up(p2p: P2PService, chain: ChainService, margin: int = 3) -> bool:
    """Not syncing, and within `margin` blocks of the best height a peer reports (a node that just
    started is not syncing yet before its syncer heard from its peers)."""
    stats = p2p.sync_status()
    return not stats.syncing and chain.height >= stats.target_height - margin


async def reannounce_votes(
    p2p: P2PService, chain: ChainService, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Each new peer is sent the votes we hold for unfinalised blocks: the ones gossiped while it was
    apart never reach it otherwise (libp2p drops a re-publish of anything it saw in the last 120 s),
    and fork choice weighs them (PROTOCOL §4.4)."""

    async def send(peer_id: str) -> None:
        votes = [encode(att) for att in chain.unfinalised_votes()]
        if not votes:
            return
        try:
            sent = await p2p.reannounce(peer_id, GossipKind.ATTESTATION, votes)
        except Exception:
            log.warning("re-sending votes to %s failed", peer_id, exc_info=True)
            return
        log.debug("re-sent %d of %d unfinalised votes to %s", sent, len(votes), peer_id)

    events = p2p.open_events()
    task_status.started()
    async with trio.open_nursery() as nursery:
        async for peer_event in events:
            if peer_event.connected:
                nursery.start_soon(send, peer_event.peer_id)


async def expire(
    pool: Mempool, clock: WallClock, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Drop expired mempool items once a minute."""
    task_status.started()
    while True:
        await trio.sleep(MEMPOOL_EXPIRY_INTERVAL_S)
        dropped = pool.expire(clock.now_ms())
        if dropped:
            log.info("%s", event("mempool_expired", count=dropped))
