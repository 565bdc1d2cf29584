"""Helpers of the mempool tests, and the child process of the SIGKILL restart test.

Owns: a tiny in-memory `StateReader` that can apply TX blocks (the real state needs a chain to
move; nonces and balances are all the mempool reads), tx builders with real keys and real PoW,
and `python -m tests.support.mempool_support child DATADIR [nosync]` which admits txs forever and
prints each accepted id once `add` returned. Must not: mock signatures, PoW or LevelDB.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from functools import cache
from pathlib import Path

from chain.block import Block, TxBody, body_root
from chain.crypto import SecretKey, account_id
from chain.header import Header, kind_for_height
from chain.params import DEVNET, ChainParams
from chain.state.model import (
    GENESIS_CHECKPOINT,
    GENESIS_MODEL,
    Account,
    Checkpoint,
    ModelVersion,
    StakeRecord,
    ValidatorRecord,
    ValidatorSet,
)
from chain.tx import Transfer, Tx, make_tx
from chain.types import (
    COIN,
    ZERO_HASH,
    AccountId,
    Amount,
    BlobHash,
    BlockHash,
    Hash32,
    Height,
    Micro,
    Nonce,
    PubKey,
    StateRoot,
    TimestampMs,
)
from chain.units import DataFormat, DataUnit, Encryption, LearningUnit
from mempool import Mempool, MempoolConfig
from mempool.policy import tx_cost

PARAMS: ChainParams = DEVNET
SINK = AccountId(b"\x99" * 20)


@cache
def key(i: int) -> SecretKey:
    return SecretKey.from_label(f"mempool-test-{i}")


def acct(i: int) -> AccountId:
    return account_id(key(i).pubkey)


class MemState:
    """An in-memory `StateReader`: accounts only (no stakes, validators or evidence)."""

    def __init__(self, accounts: dict[AccountId, Account], height: int = 0, params: ChainParams = PARAMS):
        self._accounts = dict(accounts)
        self._height = height
        self._params = params

    @classmethod
    def funded(cls, n: int, balance: int = 1_000 * COIN) -> MemState:
        return cls({acct(i): Account(Amount(balance), Nonce(0)) for i in range(n)})

    @property
    def params(self) -> ChainParams:
        return self._params

    @property
    def height(self) -> Height:
        return Height(self._height)

    def account(self, account: AccountId) -> Account:
        return self._accounts.get(account, Account())

    def stake(self, owner: AccountId, validator: PubKey) -> StakeRecord | None:
        return None

    def validator(self, pubkey: PubKey) -> ValidatorRecord | None:
        return None

    def validators(self) -> list[ValidatorRecord]:
        return []

    def eligible_stake(self, pubkey: PubKey, at_height: Height) -> Amount:
        return Amount(0)

    def slashable_stake(self, pubkey: PubKey) -> Amount:
        return Amount(0)

    def model_version(self) -> ModelVersion:
        return GENESIS_MODEL

    def evidence_seen(self, key: Hash32) -> bool:
        return False

    def justified(self) -> Checkpoint:
        return GENESIS_CHECKPOINT

    def validator_set(self, which: bytes) -> ValidatorSet | None:
        return None

    def with_account(self, account: AccountId, balance: int, nonce: int) -> MemState:
        accounts = dict(self._accounts)
        accounts[account] = Account(Amount(balance), Nonce(nonce))
        return MemState(accounts, self._height, self._params)

    def apply(self, block: Block) -> MemState:
        """The state after a TX block (nonce, fee and amount moves; asserts validity)."""
        accounts = dict(self._accounts)
        assert isinstance(block.body, TxBody)
        for tx in block.body.txs:
            a = accounts.get(tx.sender_account, Account())
            assert tx.nonce == a.nonce, "block tx out of nonce order"
            assert tx_cost(tx) <= a.balance, "block tx over-spends"
            accounts[tx.sender_account] = Account(Amount(a.balance - tx_cost(tx)), Nonce(a.nonce + 1))
            if isinstance(tx.payload, Transfer):
                to = accounts.get(tx.payload.to, Account())
                accounts[tx.payload.to] = Account(Amount(to.balance + tx.payload.amount), to.nonce)
        return MemState(accounts, block.height, self._params)


def transfer(i: int, nonce: int, fee: int = 10_000, amount: int = 1_000, memo: bytes = b"") -> Tx:
    return make_tx(key(i), PARAMS.chain_id, nonce, fee, Transfer(SINK, Amount(amount), memo))


def data_unit_tx(i: int, nonce: int, fee: int = 10_000, salt: int = 0) -> Tx:
    unit = DataUnit(
        chain_id=PARAMS.chain_id,
        author=key(i).pubkey,
        blob_hash=BlobHash(Hash32(salt.to_bytes(32, "big"))),
        n_examples=10,
        byte_size=1000,
        format=DataFormat.JSONL_TEXT,
        task=0,
        created_ms=TimestampMs(1),
        pow_nonce=0,
    ).mined(PARAMS)
    return make_tx(key(i), PARAMS.chain_id, nonce, fee, unit)


def learning_unit_tx(i: int, nonce: int, fee: int = 10_000, salt: int = 0) -> Tx:
    unit = LearningUnit(
        chain_id=PARAMS.chain_id,
        author=key(i).pubkey,
        base_version_id=ZERO_HASH,
        adapter_blob_hash=BlobHash(Hash32(salt.to_bytes(32, "big"))),
        n_examples=10,
        train_loss_micro=Micro(2_000_000),
        dp_epsilon_micro=0,
        encryption=Encryption.PLAINTEXT,
        byte_size=5000,
        created_ms=TimestampMs(1),
        pow_nonce=0,
    ).mined(PARAMS)
    return make_tx(key(i), PARAMS.chain_id, nonce, fee, unit)


def tx_block(txs: list[Tx], height: int = 1, salt: int = 0) -> Block:
    assert kind_for_height(height).name == "TX"
    body = TxBody(tuple(txs))
    header = Header(
        version=1,
        chain_id=PARAMS.chain_id,
        height=Height(height),
        kind=kind_for_height(height),
        prev_hash=BlockHash(Hash32(salt.to_bytes(32, "big"))),
        timestamp_ms=TimestampMs(1_000 + height),
        proposer=key(10_000).pubkey,
        rank=0,
        vdf_output=b"",
        vdf_proof=b"",
        body_root=body_root(body),
        state_root=StateRoot(ZERO_HASH),
        parent_certificate=(),
    )
    return Block(header, body)


def bad_signature(tx: Tx, flip: int) -> Tx:
    sig = bytearray(tx.signature)
    sig[flip % 64] ^= 1 + (flip // 64) % 255
    return dataclasses.replace(tx, signature=bytes(sig))  # type: ignore[arg-type]


# -- the SIGKILL child ---------------------------------------------------------------------------

CHILD_SENDERS = 20
CHILD_CONFIG = MempoolConfig(max_per_sender=1_000)


def child_main(datadir: str, sync: bool) -> None:
    """Admit valid txs (round-robin over senders) forever; print "sender nonce id" once `add`
    returned (the item is on disk by then)."""
    state = MemState.funded(CHILD_SENDERS)
    config = dataclasses.replace(CHILD_CONFIG, sync_writes=sync)
    mempool = Mempool.open(Path(datadir), PARAMS, config, reader=state, now_ms=1_000)
    nonce = 0
    while True:
        for i in range(CHILD_SENDERS):
            result = mempool.add(transfer(i, nonce), now_ms=int(time.time() * 1000))
            assert isinstance(result, bytes), result
            sys.stdout.write(f"{i} {nonce} {result.hex()}\n")
            sys.stdout.flush()
        nonce += 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child_main(sys.argv[2], sync=sys.argv[3:4] != ["nosync"])
