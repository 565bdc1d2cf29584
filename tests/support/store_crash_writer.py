"""Child process of the SIGKILL crash test of the block store (tests/integration/test_store_crash.py).

Owns: `python -m tests.support.store_crash_writer DATADIR BLOCKS_FILE` which opens the store of the
`dev_genesis()` chain, prints `ready`, then imports the blocks of BLOCKS_FILE from the store's tip on
(apply on the store's reader, then `connect_block`), bouncing every 5th block (disconnect and
reconnect) so kills also land in rollbacks, and prints `tip <height> <hash>` after every change of
the tip. Also `build_blocks(n)` / `write_blocks` / `read_blocks`, which the test uses to make the
file. Must not: catch the kill or do anything the real import path does not.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from chain.block import Block, TxBody
from chain.codec import decode_or_raise, encode
from chain.header import BlockKind, kind_for_height
from chain.state.transition import BlockEffects, apply_block
from chain.store import BlockStore
from chain.tx import Stake, Transfer
from chain.types import COIN, Amount
from tests.support.chainbuilders import MemChain, dev_genesis

BOUNCE_EVERY = 5


def build_blocks(n: int) -> list[Block]:
    """A deterministic chain of `n` blocks after the genesis, with transfers and stakes."""
    c = MemChain(*dev_genesis(n_validators=2, funded=("alice", "bob", "carol")))
    v1 = c.keys["validator1"].pubkey
    for height in range(1, n + 1):
        proposer = "validator0" if height % 2 else "validator1"
        if kind_for_height(height) != BlockKind.TX:
            c.add(proposer=proposer)
            continue
        txs = [
            c.tx("alice", Transfer(c.account("bob"), Amount(height * 1000))),
            c.tx("bob", Transfer(c.account("carol"), Amount(height * 999))),
            c.tx("carol", Stake(v1, Amount(COIN // 10 + height))),
        ]
        c.add(TxBody(tuple(txs)), proposer)
    return c.blocks[1:]


def write_blocks(path: Path, blocks: list[Block]) -> None:
    path.write_bytes(b"".join(struct.pack(">I", len(raw)) + raw for raw in map(encode, blocks)))


def read_blocks(path: Path) -> list[Block]:
    data, pos, out = path.read_bytes(), 0, []
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append(decode_or_raise(Block, data[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    return out


def _connect(store: BlockStore, block: Block) -> None:
    effects = apply_block(store.params, store.reader(), block)
    assert isinstance(effects, BlockEffects), effects
    store.connect_block(block, effects)
    print(f"tip {store.tip[1]} {store.tip[0].hex()}", flush=True)


def main(datadir: str, blocks_file: str) -> None:
    blocks = read_blocks(Path(blocks_file))
    genesis, _ = dev_genesis(n_validators=2, funded=("alice", "bob", "carol"))
    store = BlockStore.open(datadir, genesis)
    print("ready", flush=True)
    while store.tip[1] < len(blocks):
        block = blocks[store.tip[1]]  # blocks[h - 1] is the block at height h
        if block.header.prev_hash != store.tip[0]:
            raise SystemExit(f"store tip {store.tip[1]} is not on the expected chain")
        _connect(store, block)
        if block.header.height % BOUNCE_EVERY == 0:
            store.disconnect_tip()
            print(f"tip {store.tip[1]} {store.tip[0].hex()}", flush=True)
            _connect(store, block)
    store.close()
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
