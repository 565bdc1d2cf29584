"""LinguaChain core: types, canonical encoding, crypto, params and genesis, pure consensus rules,
state and its transition, and the LevelDB store (the only plyvel user, in `chain.store`).

Imports no other project package (ARCHITECTURE.md §3).
"""
