"""`TxSubmitter.submit_tx`, the one way a tx made or received inside the node is admitted and
published (RPC, evidence reporter): the mempool's verdict at once, gossip afterwards, a failed
publish costs nothing but a log line. Real mempool on LevelDB, real signatures."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from chain.codec import encode
from chain.errors import ErrorCode
from linguachaind.services.submit import TxSubmitter
from mempool import DEFAULT_CONFIG, Mempool
from tests.support.doubles import FakeClock, NullNetwork
from tests.support.mempool_support import PARAMS, MemState, bad_signature, transfer

NOW = 1_700_000_000_000


class FailingNetwork(NullNetwork):
    async def publish_tx(self, raw: bytes) -> None:
        raise OSError("no peers")


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[Mempool]:
    p = Mempool.open(tmp_path / "mempool", PARAMS, DEFAULT_CONFIG, MemState.funded(3), NOW)
    yield p
    p.close()


async def test_admitted_at_once_then_published_in_order(pool: Mempool) -> None:
    network = NullNetwork()
    txs = TxSubmitter(pool, FakeClock(NOW))
    first, second = encode(transfer(0, 0)), encode(transfer(0, 1))
    assert txs.submit_tx(first) == transfer(0, 0).id
    assert txs.submit_tx(second) == transfer(0, 1).id
    assert pool.contains(transfer(0, 0).id)  # in the mempool before anything was published
    assert network.txs == []
    async with trio.open_nursery() as nursery:
        await nursery.start(txs.run, network)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert network.txs == [first, second]
    assert txs.published == 2


async def test_a_refused_tx_is_not_published(pool: Mempool) -> None:
    network = NullNetwork()
    txs = TxSubmitter(pool, FakeClock(NOW))
    forged = encode(bad_signature(transfer(1, 0), 3))
    assert txs.submit_tx(forged) is ErrorCode.BAD_SIGNATURE
    assert txs.submit_tx(b"\x00\xff") is ErrorCode.TRAILING_BYTES  # not one canonical tx
    ok = encode(transfer(1, 0))
    assert txs.submit_tx(ok) == transfer(1, 0).id
    assert txs.submit_tx(ok) is ErrorCode.ALREADY_KNOWN  # the mempool's verdict, unchanged
    async with trio.open_nursery() as nursery:
        await nursery.start(txs.run, network)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert network.txs == [ok]


async def test_a_failed_publish_keeps_the_tx_and_the_publisher(
    pool: Mempool, caplog: pytest.LogCaptureFixture
) -> None:
    txs = TxSubmitter(pool, FakeClock(NOW))
    with caplog.at_level(logging.WARNING, logger="linguachaind.services.submit"):
        async with trio.open_nursery() as nursery:
            await nursery.start(txs.run, FailingNetwork())
            assert txs.submit_tx(encode(transfer(2, 0))) == transfer(2, 0).id
            assert txs.submit_tx(encode(transfer(2, 1))) == transfer(2, 1).id
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert pool.contains(transfer(2, 0).id)
    assert pool.contains(transfer(2, 1).id)
    assert txs.published == 0
    assert len([r for r in caplog.records if "publishing a tx failed" in r.getMessage()]) == 2
