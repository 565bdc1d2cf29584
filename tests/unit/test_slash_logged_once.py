"""One double-proposal evidence is logged as one slash (issue 15 finding: the state rule logged it
each time it ran: mempool admission, the producer's template, assembly, import). The chain service
logs `validator_slashed` once per connected block that applies it. Real store, state, mempool,
signatures (the evidence service's test net, tests/unit/test_services_evidence.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from chain.block import Block
from chain.consensus.slashing import evidence_key, slash_amounts
from chain.evidence import EvidenceKind
from chain.params import DEVNET
from chain.types import TimestampMs
from linguachaind.services.chain_service import AddBlockResult
from tests.support.chainbuilders import VALIDATOR_STAKE
from tests.unit.test_services_evidence import Net, close, grow, open_net, reporting, resigned


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = open_net(tmp_path, ("alice", "bob", "validator0", "validator1"))
    yield n
    close(n)


async def test_a_double_proposal_is_logged_as_one_slash(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    chain, cheat = net.chain, net.cheat
    a = cheat.propose(chain, chain.tip_header())
    b = Block(resigned(a.header, cheat.key, timestamp_ms=TimestampMs(a.header.timestamp_ms + 1)), a.body)
    caplog.set_level(logging.INFO)
    async with reporting(net):
        assert chain.import_block(a) is AddBlockResult.NEW_TIP
        assert chain.import_block(b) in (AddBlockResult.NEW_TIP, AddBlockResult.SIDE_BLOCK)
        assert len(net.reporter.submitted) == 1
        grow(net, 3)  # the evidence tx goes into the TX block at height 4
    slashed = [r.getMessage() for r in caplog.records if "validator_slashed" in r.getMessage()]
    total, share = slash_amounts(DEVNET, EvidenceKind.DOUBLE_PROPOSAL, VALIDATOR_STAKE)
    key = evidence_key(EvidenceKind.DOUBLE_PROPOSAL, cheat.key.pubkey, 1)
    assert len(slashed) == 1, slashed
    assert f"height=4 evidence={key.hex()[:16]} burned={total} to_reporter={share}" in slashed[0]
    assert not [r for r in caplog.records if "slashed validator" in r.getMessage()]  # the old line
