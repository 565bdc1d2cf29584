"""The producer's own block is not signature-checked twice (issue 11 item 7), and a received block
still is, every tx once: real store, state, mempool, chain services and the real VDF; the real
`Tx.signature_valid` runs under a counter."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from chain.block import Block, TxBody, body_root
from chain.crypto import account_id
from chain.errors import ErrorCode
from chain.params import DEVNET
from chain.store.blockstore import BlockStore
from chain.tx import Transfer, Tx, make_tx
from chain.types import ZERO_SIGNATURE, Amount
from linguachaind.services.chain_service import AddBlockResult, ChainService
from mempool import DEFAULT_CONFIG, Mempool
from tests.support.chainbuilders import GENESIS_TIME_MS, dev_genesis
from tests.support.doubles import FakeClock
from tests.support.services_support import Validator, vdf_for

N_TXS = 6


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The ids of the txs whose signature was verified, in order (the real check runs)."""
    calls: list[bytes] = []
    real = Tx.signature_valid

    def counted(tx: Tx) -> bool:
        calls.append(tx.id)
        return real(tx)

    monkeypatch.setattr(Tx, "signature_valid", counted)
    return calls


def test_own_block_skips_signature_checks_a_received_one_checks_each_once(
    tmp_path: Path, verified: list[bytes]
) -> None:
    genesis, keys = dev_genesis(1, funded=("alice", "bob"))
    clock = FakeClock(GENESIS_TIME_MS + 100_000)
    ours, theirs = (BlockStore.open(tmp_path / name, genesis) for name in ("ours", "theirs"))
    pool = Mempool.open(tmp_path / "pool", DEVNET, DEFAULT_CONFIG, ours.reader(), clock.now_ms())
    chain, peer = ChainService(ours, clock, mempool=pool), ChainService(theirs, clock)
    leader = Validator(tmp_path, "v0", keys["validator0"], chain, clock, mempool=pool)
    bob = account_id(keys["bob"].pubkey)
    txs = [make_tx(keys["alice"], DEVNET.chain_id, n, 1_000, Transfer(bob, Amount(1))) for n in range(N_TXS)]
    try:
        for tx in txs:
            assert pool.add(tx, clock.now_ms()) == tx.id
        assert verified == [tx.id for tx in txs]  # admission: each signature checked once
        verified.clear()

        parent = chain.tip_header()
        output, proof = vdf_for(parent)
        duty = leader.duty(chain, parent)
        built = leader.producer._build(parent, duty, output, proof)  # what Producer._work_on imports
        assert built is not None
        assert built[1] is not None
        block, effects = built
        assert isinstance(block.body, TxBody)
        assert len(block.body.txs) == N_TXS
        assert chain.import_block(block, effects=effects) is AddBlockResult.NEW_TIP
        assert verified == []  # assembled and imported: no signature verified again

        assert peer.import_block(block) is AddBlockResult.NEW_TIP  # received: body rules check each
        assert sorted(verified) == sorted(tx.id for tx in txs)
    finally:
        leader.protection.close()
        pool.close()
        ours.close()
        theirs.close()


def test_a_received_block_with_a_bad_tx_signature_is_refused(tmp_path: Path, verified: list[bytes]) -> None:
    """The flag is the chain service's own-block path only: a block with a forged tx signature,
    properly mined and signed by an eligible proposer, is refused on import."""
    genesis, keys = dev_genesis(1, funded=("alice", "bob"))
    clock = FakeClock(GENESIS_TIME_MS + 100_000)
    store = BlockStore.open(tmp_path / "chain", genesis)
    chain = ChainService(store, clock)
    key = keys["validator0"]
    leader = Validator(tmp_path, "v0", key, chain, clock)
    bob = account_id(keys["bob"].pubkey)
    good = make_tx(keys["alice"], DEVNET.chain_id, 0, 1_000, Transfer(bob, Amount(1)))
    other = make_tx(keys["alice"], DEVNET.chain_id, 0, 1_000, Transfer(bob, Amount(2)))
    forged = dataclasses.replace(good, signature=other.signature)  # alice never signed this one
    try:
        honest = leader.propose(chain, chain.tip_header())
        body = TxBody((forged,))
        header = dataclasses.replace(honest.header, body_root=body_root(body), signature=ZERO_SIGNATURE)
        block = Block(header.mined(DEVNET.pow_bits_header).signed(key), body)
        assert chain.import_block(block) is ErrorCode.INVALID_TX_IN_BLOCK
        assert forged.id in verified
        assert chain.height == 0
    finally:
        leader.protection.close()
        store.close()
