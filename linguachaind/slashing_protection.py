"""Slashing protection: never sign two blocks or two attestations at one height, across restarts.

Owns: a small LevelDB (`<datadir>/slashing/`) of what this validator key signed, per height: the
signing root of each proposed header and the block hash of each attestation (PROTOCOL §4.4, §5.3).
A record is written with a synced batch *before* the signature leaves the process, the way Ethereum
validator clients keep their slashing-protection database (EIP-3076): a crash after recording only
costs a missed duty, never a double signature. A proposal is recorded together with its signed block
and an *unpublished* mark in one batch (`record_signed_proposal`); the producer clears the mark
(`mark_published`) once its block store holds the block and before the block is published. A height
whose block is still marked unpublished and is not in the block store never left the process (a
full disk failed the store write, a crash came first): `release` reopens it, so it cannot halt a
lone validator (docs/security.md "Slashing protection and a block that was never stored").
Must not: sign (the services do after asking), or know about the chain beyond heights and hashes.

Records older than `keep_heights` below the highest signed height are pruned; every height at or below
the pruning watermark is refused, so pruning never reopens a height.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import Final

from chain.store.leveldb import LevelDB

log = logging.getLogger(__name__)

PROPOSAL: Final = b"P"
ATTEST: Final = b"A"
SIGNED_BLOCK: Final = b"S"  # the encoded block signed at a height, to re-use after a crash
UNPUBLISHED: Final = b"U"  # a proposal recorded with its block, not yet stored and published
META_WATERMARK: Final = b"Mwatermark"  # heights <= this are refused (pruned)
META_KEY: Final = b"Mkey"  # the validator public key the records belong to
META_LAST_VOTE: Final = b"Mlastvote"  # height || source height of the latest attestation
KEEP_HEIGHTS: Final = 100_000


def _h8(height: int) -> bytes:
    return height.to_bytes(8, "big")


class SlashingProtectionError(Exception):
    """Raised when the database belongs to another validator key (never sign with a foreign record)."""


class SlashingProtection:
    """What this validator signed, by height. Open with `SlashingProtection.open(path, pubkey)`."""

    def __init__(self, db: LevelDB, keep_heights: int = KEEP_HEIGHTS) -> None:
        self._db = db
        self._keep = keep_heights
        raw = db.get(META_WATERMARK)
        self._watermark = int.from_bytes(raw, "big") if raw is not None else -1
        self._max_signed = max(self._watermark, self._last_height(PROPOSAL), self._last_height(ATTEST))
        raw_vote = db.get(META_LAST_VOTE)
        self._last_vote = (
            (int.from_bytes(raw_vote[:8], "big"), int.from_bytes(raw_vote[8:], "big")) if raw_vote else (0, 0)
        )

    @classmethod
    def open(cls, path: str | Path, pubkey: bytes, keep_heights: int = KEEP_HEIGHTS) -> SlashingProtection:
        db = LevelDB(path)
        stored = db.get(META_KEY)
        if stored is None:
            db.write([(META_KEY, bytes(pubkey))])
        elif stored != pubkey:
            db.close()
            raise SlashingProtectionError(
                f"{path} protects validator {stored.hex()[:16]}..., not {bytes(pubkey).hex()[:16]}...: "
                "use the datadir of this key, or move the old database away if the key really changed"
            )
        return cls(db, keep_heights)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SlashingProtection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _last_height(self, ns: bytes) -> int:
        for key, _ in self._db.iterate(ns, reverse=True):
            return int.from_bytes(key[1:], "big")
        return -1

    # -- queries -------------------------------------------------------------------------------

    def proposed(self, height: int) -> bytes | None:
        """The signing root recorded for a proposal at `height`, if any."""
        return self._db.get(PROPOSAL + _h8(height))

    def signed_block(self, height: int) -> bytes | None:
        """The encoded block this key signed at `height` (kept so that a restart re-uses it)."""
        return self._db.get(SIGNED_BLOCK + _h8(height))

    def attested(self, height: int) -> bytes | None:
        """The block hash this key attested at `height`, if any."""
        return self._db.get(ATTEST + _h8(height))

    def __contains__(self, height: object) -> bool:
        """`height in protection`: an attestation at `height` is recorded or refused (pruned).

        Makes this object the `attested_heights` container of `chain.consensus.duties.attestation_for`."""
        if not isinstance(height, int):
            return False
        return height <= self._watermark or self.attested(height) is not None

    def last_vote(self) -> tuple[int, int]:
        """(height, source height) of the latest attestation, (0, 0) before any: the inputs of
        `chain.consensus.duties.attestation_for` (Casper-FFG voting rule, chain.consensus.finality)."""
        return self._last_vote

    @property
    def watermark(self) -> int:
        return self._watermark

    # -- recording (call BEFORE signing) --------------------------------------------------------

    def record_proposal(self, height: int, signing_root: bytes) -> bool:
        """True if this key may sign the header with `signing_root` at `height` (recorded, synced).

        False if another header was signed at that height or the height is pruned. Signing the
        same header again (same root) is allowed: Ed25519 gives the same signature."""
        return self._record(PROPOSAL, height, signing_root)

    def record_attestation(self, height: int, block_hash: bytes, source_height: int = 0) -> bool:
        """True if this key may attest `block_hash` at `height` with a vote whose source is at
        `source_height` (recorded, synced). False for another block at a height already attested,
        a height not above the last vote's (no double vote) or a source below the last vote's
        source (no surround vote), or a pruned height. Re-signing the recorded vote is allowed."""
        existing = self.attested(height)
        if existing is not None:
            return existing == block_hash
        last_height, last_source = self._last_vote
        if height <= last_height or source_height < last_source:
            log.warning(
                "slashing protection: refused a vote at %d (source %d) after one at %d (source %d)",
                height, source_height, last_height, last_source,
            )  # fmt: skip
            return False
        if not self._record(
            ATTEST, height, block_hash, extra=[(META_LAST_VOTE, _h8(height) + _h8(source_height))]
        ):
            return False
        self._last_vote = (height, source_height)
        return True

    def record_signed_proposal(self, height: int, signing_root: bytes, encoded_block: bytes) -> bool:
        """`record_proposal` for a block signed in memory (Ed25519 is deterministic: the same header
        always gets the same signature), written in one synced batch with the block and the
        unpublished mark; the caller stores the block, then `mark_published`, then publishes.

        True: the block may be stored and published (recorded now, or this very header was recorded
        before). False: another header is recorded at the height, or the height is pruned."""
        if height <= self._watermark:
            log.warning("slashing protection: refused to sign at pruned height %d", height)
            return False
        existing = self.proposed(height)
        if existing is not None:
            if existing != signing_root:
                log.warning("slashing protection: refused a second proposal at height %d", height)
            return existing == signing_root
        key = _h8(height)
        self._db.write([(PROPOSAL + key, bytes(signing_root)), (SIGNED_BLOCK + key, bytes(encoded_block)),
                        (UNPUBLISHED + key, b"")])  # fmt: skip
        self._max_signed = max(self._max_signed, height)
        self._prune()
        return True

    def unpublished(self, height: int) -> bool:
        """Whether the proposal at `height` is recorded and still marked unpublished."""
        return self._db.get(UNPUBLISHED + _h8(height)) is not None

    def mark_published(self, height: int) -> None:
        """The proposal at `height` is in the block store and may leave the process: it can never be
        released. Synced; call before publishing (a failed write means: do not publish)."""
        if self.unpublished(height):
            self._db.write([], [UNPUBLISHED + _h8(height)])

    def release(self, height: int) -> bool:
        """Reopen `height` after its signed block was lost before it was stored: the caller has
        checked that the block store does not hold the recorded block. Only a proposal still marked
        unpublished is released (records of older versions, which have no mark, never are). True
        if the height is open again."""
        if height <= self._watermark or not self.unpublished(height):
            return False
        key = _h8(height)
        self._db.write([], [PROPOSAL + key, SIGNED_BLOCK + key, UNPUBLISHED + key])
        log.warning(
            "slashing protection: released height %d (its block was never stored or published)", height
        )
        return True

    def _record(
        self, ns: bytes, height: int, value: bytes, extra: list[tuple[bytes, bytes]] | None = None
    ) -> bool:
        if height <= self._watermark:
            log.warning("slashing protection: refused to sign at pruned height %d", height)
            return False
        key = ns + _h8(height)
        existing = self._db.get(key)
        if existing is not None:
            if existing != value:
                log.warning("slashing protection: refused a second %s at height %d", _name(ns), height)
            return existing == value
        self._db.write([(key, bytes(value)), *(extra or [])])  # synced before the caller signs
        self._max_signed = max(self._max_signed, height)
        self._prune()
        return True

    def _prune(self) -> None:
        cut = self._max_signed - self._keep
        if cut <= self._watermark:
            return
        deletes: list[bytes] = []
        for ns in (PROPOSAL, ATTEST, SIGNED_BLOCK, UNPUBLISHED):
            for key, _ in self._db.iterate(ns):  # ascending heights: stop at the first one kept
                if int.from_bytes(key[1:], "big") > cut:
                    break
                deletes.append(key)
        self._db.write([(META_WATERMARK, _h8(cut))], deletes)
        self._watermark = cut


def _name(ns: bytes) -> str:
    return "proposal" if ns == PROPOSAL else "attestation"
