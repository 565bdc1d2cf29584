"""The VDF service: computes the wanted VDF in the prover process, drops it when the wish changes,
and takes a gossiped proof instead of computing (PROTOCOL §4.2 timelord role)."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import trio
import trio.testing

import vdf
from chain.errors import ErrorCode
from chain.hashing import H
from chain.params import DEVNET
from chain.store.blockstore import BlockStore
from linguachaind.services.chain_service import ChainService
from linguachaind.services.vdf_service import VdfService
from tests.support.chainbuilders import GENESIS_TIME_MS, dev_genesis
from tests.support.doubles import FakeClock, NullNetwork
from tests.support.waiting import wait_until

SLOW = dataclasses.replace(DEVNET, vdf_discriminant_bits=1024, vdf_iterations=10**9)  # hours: never finishes


async def test_computes_publishes_and_caches() -> None:
    network = NullNetwork()
    service = VdfService(DEVNET)
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(service.run, network=network))
        with trio.fail_after(20):
            out = await service.get(H(b"parent"))
        assert await service.get(H(b"parent")) == out  # cached, not computed twice
        nursery.cancel_scope.cancel()
    challenge = service.challenge_for(H(b"parent"))
    assert vdf.verify(challenge, DEVNET.vdf_discriminant_bits, DEVNET.vdf_iterations, *out)
    assert service.computed == 1
    assert [m.challenge for m in network.vdfs] == [challenge]
    assert vdf.check_vdf_proof(DEVNET, network.vdfs[0]) is None


async def test_a_new_wish_kills_the_running_computation() -> None:
    provers: list[vdf.VdfProver] = []

    def factory() -> vdf.VdfProver:
        provers.append(vdf.VdfProver())
        return provers[-1]

    service = VdfService(SLOW, prover_factory=factory)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        service.want(H(b"a"))
        await wait_until(lambda: provers[0].statistics().busy)
        service.want(H(b"b"))
        await wait_until(lambda: provers[0].statistics().cancelled == 1)
        await wait_until(lambda: provers[0].statistics().busy)  # now on the new wish
        nursery.cancel_scope.cancel()
    assert provers[0].statistics().cancelled == 2
    assert provers[0].pid is None  # the child was killed on exit


async def test_a_gossiped_proof_is_used_instead_of_computing() -> None:
    service = VdfService(DEVNET, compute=False)
    prev = H(b"gossiped parent")
    challenge = service.challenge_for(prev)
    msg = vdf.make_vdf_proof(DEVNET, challenge, *vdf.prove(challenge, DEVNET.vdf_discriminant_bits, 2000))
    result: list[tuple[bytes, bytes]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)

        async def getter() -> None:
            result.append(await service.get(prev))

        nursery.start_soon(getter)
        await trio.testing.wait_all_tasks_blocked()
        assert not result
        assert service.on_gossip(dataclasses.replace(msg, output=bytes(100))) is ErrorCode.BAD_VDF
        assert service.on_gossip(msg) is None
        assert service.on_gossip(msg) is ErrorCode.ALREADY_KNOWN
        with trio.fail_after(5):
            while not result:
                await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert result == [(msg.output, msg.proof)]
    assert (service.computed, service.received) == (0, 1)


async def test_timelord_mode_follows_the_chain_tip(tmp_path: Path) -> None:
    genesis, _ = dev_genesis(1)
    store = BlockStore.open(tmp_path / "chain", genesis)
    try:
        chain = ChainService(store, FakeClock(GENESIS_TIME_MS))
        service = VdfService(DEVNET)
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(service.run, tip=chain, network=NullNetwork()))
            await wait_until(lambda: service.lookup(chain.tip_hash()) is not None)
            nursery.cancel_scope.cancel()
        assert service.computed == 1
    finally:
        store.close()
