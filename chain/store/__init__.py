"""The block store (chain.store.blockstore) and the LevelDB wrapper; see their module docstrings."""

from chain.store.blockstore import SCHEMA_VERSION, BlockStore, StoreState

__all__ = ["SCHEMA_VERSION", "BlockStore", "StoreState"]
