"""The block store (PROTOCOL §3.5, ARCHITECTURE §4): blocks, the main-chain index, the state at the
tip, undo records, reward history, tx index and metadata in one LevelDB, one atomic batch per block.

Owns: the on-disk key layout (below), crash safety (every change of the tip is ONE synced
`LevelDB.write`, so a kill at any moment leaves the store at the block before or after, never a
mix), the schema version check, and the in-memory `StateHasher` of the tip state (rebuilt from
disk at open). Must not: validate blocks or transitions (chain.consensus and chain.state do, then
call `connect_block`); it only refuses calls that would corrupt it (a block that does not extend
the tip, effects computed on another state, rolling back a final block).

Layout (one-byte namespaces; heights are 8-byte big-endian so they sort):
    b"M" + name                    meta: schema, genesis block hash and genesis id, tip (hash ||
                                   height), final height
    b"B" + block hash              encoded Block (main chain and side blocks)
    b"C" + parent hash + hash      child index (fork choice can list a block's known children)
    b"H" + height                  main-chain block hash at height
    b"S" + state key               state value (chain.state.keys); the tip state only
    b"U" + height                  undo record of the main-chain block at height
    b"R" + height                  reward records of the main-chain block at height (not state)
    b"A" + account + height        reward index: the account has records at that height
    b"T" + tx id                   block hash || position of the tx on the main chain
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Final

from chain.block import Block
from chain.codec import decode, encode, from_plain, unpack
from chain.errors import ErrorCode, StoreError
from chain.genesis import Genesis
from chain.header import Header
from chain.state.genesis import genesis_block, genesis_state
from chain.state.model import RewardRecord
from chain.state.root import StateHasher
from chain.state.transition import BlockEffects
from chain.state.view import StateView
from chain.store.leveldb import LevelDB
from chain.types import AccountId, BlockHash, Height, StateRoot, TxId, UnitId

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1

META_SCHEMA: Final = b"Mschema"
META_GENESIS: Final = b"Mgenesis"  # the genesis block hash (the chain's identity)
META_GENESIS_ID: Final = b"Mgenesis-id"  # H(encoded Genesis): compared at open without rebuilding its state
META_TIP: Final = b"Mtip"
META_FINAL: Final = b"Mfinal"
BLOCK: Final = b"B"
CHILD: Final = b"C"
HEIGHT: Final = b"H"
STATE: Final = b"S"
UNDO: Final = b"U"
REWARDS: Final = b"R"
REWARD_INDEX: Final = b"A"
TX: Final = b"T"


def _h8(height: int) -> bytes:
    return height.to_bytes(8, "big")


def pack_undo(block_hash: bytes, undo: Mapping[bytes, bytes | None]) -> bytes:
    """block hash, then per key: u32 key length, key, u8 present, [u32 value length, value]."""
    out = [block_hash]
    for key, value in sorted(undo.items()):
        out.append(struct.pack(">I", len(key)) + key)
        out.append(b"\x00" if value is None else b"\x01" + struct.pack(">I", len(value)) + value)
    return b"".join(out)


def unpack_undo(raw: bytes) -> tuple[bytes, dict[bytes, bytes | None]]:
    block_hash, pos = raw[:32], 32
    undo: dict[bytes, bytes | None] = {}
    while pos < len(raw):
        (n,) = struct.unpack_from(">I", raw, pos)
        key = raw[pos + 4 : pos + 4 + n]
        pos += 4 + n
        if raw[pos] == 0:
            undo[key] = None
            pos += 1
        else:
            (m,) = struct.unpack_from(">I", raw, pos + 1)
            undo[key] = raw[pos + 5 : pos + 5 + m]
            pos += 5 + m
    return block_hash, undo


def _pack_rewards(records: tuple[RewardRecord, ...]) -> bytes:
    return b"".join(struct.pack(">I", len(e)) + e for e in map(encode, records))


def _unpack_rewards(raw: bytes) -> list[RewardRecord]:
    out, pos = [], 0
    while pos < len(raw):
        (n,) = struct.unpack_from(">I", raw, pos)
        plain = unpack(raw[pos + 4 : pos + 4 + n])
        rec = plain if isinstance(plain, ErrorCode) else from_plain(RewardRecord, plain)
        if isinstance(rec, ErrorCode):
            raise StoreError(f"corrupt reward record ({rec.name})")
        out.append(rec)
        pos += 4 + n
    return out


class StoreState(StateView):
    """The state at the store's tip, read from LevelDB. It follows the tip: after a connect or
    disconnect it shows the new tip's state (single writer: do not mix with a concurrent import)."""

    def __init__(self, store: BlockStore) -> None:
        super().__init__(store.params, store.tip[1])
        self._store = store

    @property
    def height(self) -> Height:
        return self._store.tip[1]

    def get(self, key: bytes) -> bytes | None:
        return self._store.db.get(STATE + key)

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._store.db.iterate(STATE + prefix):
            yield key[1:], value

    def root_after(self, writes: Mapping[bytes, bytes | None]) -> StateRoot:
        return self._store.hasher.root_after(writes)


class BlockStore:
    """Blocks and the tip state of one chain. Open with `BlockStore.open(path, genesis)`."""

    def __init__(self, db: LevelDB, genesis: Genesis, genesis_hash: BlockHash) -> None:
        self.db = db
        self.genesis = genesis
        self.params = genesis.params
        self.genesis_hash = genesis_hash
        raw_tip = db.get(META_TIP)
        raw_final = db.get(META_FINAL)
        if raw_tip is None or raw_final is None:
            raise StoreError(f"{db.path}: store metadata is missing (tip or final height)")
        self._tip = (BlockHash(raw_tip[:32]), Height(int.from_bytes(raw_tip[32:], "big")))
        self._final = Height(int.from_bytes(raw_final, "big"))
        self.hasher = StateHasher((k[1:], v) for k, v in db.iterate(STATE))
        self._reader = StoreState(self)
        tip_header = self.get_header(self._tip[0])
        if tip_header is None or tip_header.height != self._tip[1]:
            raise StoreError(f"{db.path}: the tip block {self._tip[0].hex()} is missing: store corrupt")
        if tip_header.state_root != self.hasher.root:
            raise StoreError(f"{db.path}: the state does not match the tip's state_root: store corrupt")

    # -- opening --------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, genesis: Genesis) -> BlockStore:
        """Open (or create, writing the genesis block and state) the store at `path`.

        Raises `StoreError` for a store of another chain, a newer or older schema, or corruption.
        """
        db = LevelDB(path)
        try:
            gblock = genesis_block(genesis)
            raw = db.get(META_SCHEMA)
            if raw is None:
                if next(db.iterate_keys(b""), None) is not None:
                    raise StoreError(
                        f"{db.path} holds data but no LinguaChain schema version: not a block store"
                    )
                cls._write_genesis(db, genesis, gblock)
            else:
                schema = int.from_bytes(raw, "big")
                if schema > SCHEMA_VERSION:
                    raise StoreError(
                        f"{db.path} was written by a newer LinguaChain (store schema {schema}; this version "
                        f"reads schema {SCHEMA_VERSION}). Upgrade linguachaind, or use another datadir."
                    )
                if schema < SCHEMA_VERSION:
                    raise StoreError(
                        f"{db.path} uses the old store schema {schema} (this version needs "
                        f"{SCHEMA_VERSION}) and cannot migrate it: resync into a new datadir."
                    )
                if db.get(META_GENESIS_ID) != genesis.id:
                    stored = db.get(META_GENESIS)
                    raise StoreError(
                        f"{db.path} holds the chain with genesis block {stored.hex() if stored else '?'}, "
                        f"not the one of this genesis file: use another datadir for another chain."
                    )
            stored_hash = db.get(META_GENESIS)
            if stored_hash is None:
                raise StoreError(f"{db.path}: store metadata is missing (genesis)")
            return cls(db, genesis, BlockHash(stored_hash))
        except BaseException:
            db.close()
            raise

    @staticmethod
    def _write_genesis(db: LevelDB, genesis: Genesis, gblock: Block) -> None:
        writes, _ = genesis_state(genesis)
        puts = [(STATE + k, v) for k, v in writes.items()]
        puts += [
            (BLOCK + gblock.hash, encode(gblock)),
            (HEIGHT + _h8(0), gblock.hash),
            (META_TIP, gblock.hash + _h8(0)),
            (META_FINAL, _h8(0)),
            (META_GENESIS, gblock.hash),
            (META_GENESIS_ID, genesis.id),
            (META_SCHEMA, SCHEMA_VERSION.to_bytes(4, "big")),
        ]
        db.write(puts)
        log.info("created block store at %s, genesis %s", db.path, gblock.hash.hex())

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> BlockStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- chain ----------------------------------------------------------------------------------
    @property
    def tip(self) -> tuple[BlockHash, Height]:
        return self._tip

    @property
    def final_height(self) -> Height:
        return self._final

    @property
    def state_root(self) -> StateRoot:
        return self.hasher.root

    def set_final(self, height: int) -> None:
        """Record that the main-chain block at `height` is final (never below the current final)."""
        if height <= self._final:
            return
        if height > self._tip[1]:
            raise StoreError(f"cannot mark height {height} final: the tip is at {self._tip[1]}")
        self.db.write([(META_FINAL, _h8(height))])
        self._final = Height(height)

    def reader(self) -> StoreState:
        """The `StateReader` of the tip state (follows the tip)."""
        return self._reader

    def has_block(self, block_hash: bytes) -> bool:
        return self.db.get(BLOCK + block_hash) is not None

    def get_block(self, block_hash: bytes) -> Block | None:
        raw = self.db.get(BLOCK + block_hash)
        if raw is None:
            return None
        block = decode(Block, raw, max_bytes=len(raw))
        if isinstance(block, ErrorCode):
            raise StoreError(f"stored block {block_hash.hex()} does not decode ({block.name}): store corrupt")
        return block

    def get_header(self, block_hash: bytes) -> Header | None:
        block = self.get_block(block_hash)
        return None if block is None else block.header

    def hash_at(self, height: int) -> BlockHash | None:
        """Main-chain block hash at `height`."""
        raw = self.db.get(HEIGHT + _h8(height)) if height >= 0 else None
        return None if raw is None else BlockHash(raw)

    def get_block_at(self, height: int) -> Block | None:
        block_hash = self.hash_at(height)
        return None if block_hash is None else self.get_block(block_hash)

    def children(self, block_hash: bytes) -> list[BlockHash]:
        """Hashes of stored blocks (main or side) whose parent is `block_hash`."""
        prefix = CHILD + block_hash
        return [BlockHash(k[len(prefix) :]) for k in self.db.iterate_keys(prefix)]

    def store_side_block(self, block: Block) -> None:
        """Keep a block that is not (yet) on the main chain, by hash (fork choice, PROTOCOL §4.5)."""
        self.db.write(
            [(BLOCK + block.hash, encode(block)), (CHILD + block.header.prev_hash + block.hash, b"")]
        )

    def connect_block(self, block: Block, effects: BlockEffects) -> None:
        """Append `block` (validated by the caller) to the main chain in ONE atomic synced batch:
        block, height index, state writes, undo record, rewards, tx index, tip."""
        tip_hash, tip_height = self._tip
        height = block.header.height
        if block.header.prev_hash != tip_hash or height != tip_height + 1:
            raise StoreError(
                f"block {block.hash.hex()} at height {height} does not extend the tip {tip_height}"
            )
        if effects.block_hash != block.hash or effects.base_root != self.hasher.root:
            raise StoreError("the effects were not computed for this block on the tip state")
        if effects.state_root != block.header.state_root:
            raise StoreError("the effects' state_root differs from the header's: validate before connecting")
        h8 = _h8(height)
        puts: list[tuple[bytes, bytes]] = [
            (BLOCK + block.hash, encode(block)),
            (CHILD + block.header.prev_hash + block.hash, b""),
            (HEIGHT + h8, block.hash),
            (UNDO + h8, pack_undo(block.hash, effects.undo)),
            (META_TIP, block.hash + h8),
        ]
        deletes = [STATE + k for k, v in effects.writes.items() if v is None]
        puts += [(STATE + k, v) for k, v in effects.writes.items() if v is not None]
        if effects.rewards:
            puts.append((REWARDS + h8, _pack_rewards(effects.rewards)))
            puts += [(REWARD_INDEX + acct + h8, b"") for acct in {r.account for r in effects.rewards}]
        for i, tx in enumerate(getattr(block.body, "txs", ())):
            puts.append((TX + tx.id, block.hash + i.to_bytes(4, "big")))
        self.db.write(puts, deletes)
        self.hasher.apply(effects.writes)
        self._tip = (block.hash, Height(height))

    def disconnect_tip(self) -> Block:
        """Roll the tip block back (atomic): restores the exact previous state. Refuses to go below
        the final height or the genesis. Returns the block, which stays stored as a side block."""
        tip_hash, height = self._tip
        if height == 0:
            raise StoreError("cannot disconnect the genesis block")
        if height <= self._final:
            raise StoreError(f"cannot disconnect block {height}: final height is {self._final}")
        h8 = _h8(height)
        raw = self.db.get(UNDO + h8)
        block = self.get_block(tip_hash)
        if raw is None or block is None:
            raise StoreError(f"undo record or block of height {height} missing: store corrupt")
        undo_hash, undo = unpack_undo(raw)
        if undo_hash != tip_hash:
            raise StoreError(f"undo record of height {height} belongs to another block: store corrupt")
        deletes = [STATE + k for k, v in undo.items() if v is None]
        deletes += [HEIGHT + h8, UNDO + h8, REWARDS + h8]
        deletes += [REWARD_INDEX + r.account + h8 for r in self.rewards_at(height)]
        for tx in getattr(block.body, "txs", ()):
            found = self.db.get(TX + tx.id)
            if found is not None and found[:32] == tip_hash:
                deletes.append(TX + tx.id)
        puts = [(STATE + k, v) for k, v in undo.items() if v is not None]
        parent = block.header.prev_hash
        puts.append((META_TIP, parent + _h8(height - 1)))
        self.db.write(puts, deletes)
        self.hasher.apply(undo)
        self._tip = (BlockHash(parent), Height(height - 1))
        return block

    def undo_at(self, height: int) -> dict[bytes, bytes | None] | None:
        """The undo record of the main-chain block at `height` (state key -> value before it)."""
        raw = self.db.get(UNDO + _h8(height))
        return None if raw is None else unpack_undo(raw)[1]

    # -- history --------------------------------------------------------------------------------
    def rewards_at(self, height: int) -> list[RewardRecord]:
        raw = self.db.get(REWARDS + _h8(height))
        return [] if raw is None else _unpack_rewards(raw)

    def rewards_for(self, account: AccountId) -> list[RewardRecord]:
        """Every reward record of `account` on the main chain, oldest first."""
        prefix = REWARD_INDEX + account
        out: list[RewardRecord] = []
        for key in self.db.iterate_keys(prefix):
            height = int.from_bytes(key[len(prefix) :], "big")
            out += [r for r in self.rewards_at(height) if r.account == account]
        return out

    def rewards_for_unit(self, unit_id: bytes) -> list[RewardRecord]:
        """The contributor reward of a data or learning unit (`rewards explain <unit id>`): found
        through the unit's `used_height` in the tip state; [] while it is unused or unknown."""
        unit = self._reader.unit(UnitId(unit_id))
        if unit is None or unit.used_height == 0:
            return []
        return [r for r in self.rewards_at(unit.used_height) if r.ref == unit_id]

    def find_tx(self, tx_id: TxId | bytes) -> tuple[BlockHash, int] | None:
        """(block hash, position) of a main-chain tx."""
        raw = self.db.get(TX + tx_id)
        return None if raw is None else (BlockHash(raw[:32]), int.from_bytes(raw[32:], "big"))

    def verify(self) -> None:
        """Full consistency check (tests, `--check`): the main chain links from genesis to the tip,
        every non-genesis main block has its undo record, and the state matches the tip. Raises
        `StoreError` naming the first problem."""
        tip_hash, tip_height = self._tip
        prev = None
        for height in range(tip_height + 1):
            block_hash = self.hash_at(height)
            block = None if block_hash is None else self.get_block(block_hash)
            if block_hash is None or block is None or block.header.height != height:
                raise StoreError(f"main-chain block at height {height} missing")
            if prev is not None and block.header.prev_hash != prev:
                raise StoreError(f"main chain broken at height {height}")
            if height > 0:
                raw = self.db.get(UNDO + _h8(height))
                if raw is None or raw[:32] != block_hash:
                    raise StoreError(f"undo record of height {height} missing or wrong")
            prev = block_hash
        if prev != tip_hash or self.hash_at(tip_height + 1) is not None:
            raise StoreError("the tip is not the last main-chain block")
        if StateHasher((k[1:], v) for k, v in self.db.iterate(STATE)).root != self.hasher.root:
            raise StoreError("in-memory state root differs from the stored state")
        header = self.get_header(tip_hash)
        if header is None or header.state_root != self.hasher.root:
            raise StoreError("the state does not match the tip's state_root")
