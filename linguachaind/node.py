"""The node: wiring of every component in one trio nursery (ARCHITECTURE.md §1).

Owns: the start order (lock -> genesis -> chain store -> mempool + chain service -> RPC -> p2p -> VDF,
attester, producer), the stop
order (the reverse: each service cancelled and awaited, then stores flushed and closed), the PID file,
the cookie, signal handling (SIGINT/SIGTERM -> ordered stop), the mock clock of devnet, and the
`RpcContext` that the RPC methods read. Must not: implement any rule or protocol (components do) or
hold a `dict[str, Any]` of settings (everything comes from the frozen `NodeConfig`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio-typing's stubs (pulled in by libp2p) shadow trio's own

    from chain.store.blockstore import BlockStore
    from linguachaind.adapters import PoolAdapter
    from linguachaind.glue import P2PNetwork
    from linguachaind.services.attester import Attester
    from linguachaind.services.chain_service import ChainService
    from linguachaind.services.producer import Producer
    from linguachaind.services.vdf_service import VdfService
    from mempool.mempool import Mempool
    from p2p.service import P2PService

from chain.crypto import SecretKey
from chain.genesis import Genesis, load_genesis
from linguachaind import __version__, wiring
from linguachaind.config import NodeConfig
from linguachaind.datadir import (
    DatadirLock,
    Layout,
    ensure_dirs,
    load_validator_key,
    remove_cookie,
    write_cookie,
)
from linguachaind.logsetup import event
from linguachaind.metrics import NodeMetrics
from linguachaind.rpc.http import HttpServer
from linguachaind.rpc.methods import RpcContext, build_methods
from linguachaind.rpc.server import Credentials, RpcDispatcher
from linguachaind.services.interfaces import WallClock

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 15.0
ServiceFn = Callable[..., Awaitable[None]]


def _set_mock_time(clock: WallClock, timestamp_ms: int) -> None:
    """Devnet `setmocktime`: the clock jumps to `timestamp_ms` and keeps ticking; 0 = real time."""
    clock.offset_ms = timestamp_ms - int(time.time() * 1000) if timestamp_ms else 0


@dataclass
class Parts:
    """The node's components once started (None before). Typed, so wiring mistakes fail mypy."""

    store: BlockStore | None = None
    mempool: Mempool | None = None
    mempool_rpc: PoolAdapter | None = None
    chain: ChainService | None = None
    network: P2PNetwork | None = None
    vdf: VdfService | None = None
    p2p: P2PService | None = None
    attester: Attester | None = None
    producer: Producer | None = None


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
        self._running: list[_Running] = []
        self._closers: list[tuple[str, Callable[[], None]]] = []
        self.rpc_port: int | None = None
        self.ctx: RpcContext | None = None
        self.genesis: Genesis | None = None
        self.validator_key: SecretKey | None = None
        self.parts = Parts()  # the wired components, filled in start order

    # -- lifecycle -----------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, *, task_status: TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Start everything, `task_status.started(rpc_port)`, run until stopped, stop in reverse order."""
        lock = DatadirLock(self.layout)
        lock.acquire()  # DatadirLockedError propagates: main prints it as one line
        try:
            ensure_dirs(self.layout)
            self.layout.pid.write_text(f"{os.getpid()}\n")
            async with trio.open_nursery() as nursery:
                if self._handle_signals:  # first SIGINT/SIGTERM: ordered stop; a second SIGINT forces
                    nursery.start_soon(self._watch_signals)
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

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("received %s, stopping", signal.Signals(signum).name)
                self.request_stop()
                return

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
        config = self.config
        log.info("config: %s", config.redacted())
        self.genesis = load_genesis(config.genesis_path)
        self.validator_key = load_validator_key(self.layout) if config.validator else None
        genesis_hash = wiring.genesis_hash(self.genesis)
        self.ctx = RpcContext(
            config=config,
            genesis=self.genesis,
            genesis_hash=genesis_hash,
            request_stop=self.request_stop,
            validator_pubkey=self.validator_key.pubkey if self.validator_key else None,
            set_mock_time=(lambda ts: _set_mock_time(self.clock, ts)) if config.allow_test_rpcs else None,
        )
        log.info(
            "%s",
            event("genesis", chain_id=self.genesis.params.chain_id, hash=genesis_hash.hex()[:16]),
        )
        await wiring.open_chain(self)
        await wiring.open_mempool(self)
        await self._start_rpc(nursery)
        await wiring.start_p2p(self, nursery)
        await wiring.start_services(self, nursery)
        self.ctx.warming_up = False

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
