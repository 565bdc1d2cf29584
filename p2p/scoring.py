"""Peer scores, bans and per-peer rate limits (PROTOCOL §7.4).

Owns: the score of each peer (0 is neutral, it recovers slowly toward 0), the penalty of each kind of
misbehaviour, the ban list with expiry, and token-bucket rate limits. Permanent validation errors,
malformed or oversized frames, timeouts and floods lower the score; once it falls below
`ban_threshold` the peer is banned for `ban_s`. Transient errors are never passed in here.
Must not: touch the network (p2p.service disconnects banned peers) and must stay bounded in memory
(at most `max_tracked` peers are remembered).
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final


class Offence(enum.Enum):
    INVALID = "invalid"  # a permanent validation error
    MALFORMED = "malformed"  # a frame or message that does not decode
    OVERSIZED = "oversized"
    TIMEOUT = "timeout"  # a request that was not answered in time
    FLOOD = "flood"  # a message over the peer's rate limit
    BAD_BLOB = "bad_blob"  # a chunk that does not match its hash


PENALTY: Final[dict[Offence, float]] = {
    Offence.INVALID: 20.0,
    Offence.MALFORMED: 25.0,
    Offence.OVERSIZED: 25.0,
    Offence.TIMEOUT: 5.0,
    Offence.FLOOD: 1.0,
    Offence.BAD_BLOB: 25.0,
}


@dataclass(frozen=True, slots=True)
class ScoreConfig:
    ban_threshold: float = -100.0
    ban_s: float = 600.0
    recovery_per_s: float = 0.1  # a peer at -50 is back to neutral after about 8 minutes
    max_tracked: int = 10_000


@dataclass(slots=True)
class _Entry:
    score: float
    updated: float


class PeerScores:
    def __init__(self, config: ScoreConfig = ScoreConfig(), clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._clock = clock
        self._scores: OrderedDict[str, _Entry] = OrderedDict()
        self._bans: dict[str, float] = {}
        self.offences: dict[Offence, int] = dict.fromkeys(Offence, 0)

    def score(self, peer: str) -> float:
        entry = self._scores.get(peer)
        if entry is None:
            return 0.0
        self._recover(entry)
        return entry.score

    def _recover(self, entry: _Entry) -> None:
        now = self._clock()
        entry.score = min(0.0, entry.score + (now - entry.updated) * self.config.recovery_per_s)
        entry.updated = now

    def penalise(self, peer: str, offence: Offence, weight: float = 1.0) -> bool:
        """Lower `peer`'s score; True when this call bans it (the caller disconnects it)."""
        self.offences[offence] += 1
        if self.is_banned(peer):
            return False
        entry = self._scores.get(peer)
        if entry is None:
            entry = _Entry(0.0, self._clock())
            self._scores[peer] = entry
            while len(self._scores) > self.config.max_tracked:
                self._scores.popitem(last=False)
        else:
            self._recover(entry)
            self._scores.move_to_end(peer)
        entry.score -= PENALTY[offence] * weight
        if entry.score <= self.config.ban_threshold:
            self.ban(peer)
            return True
        return False

    def ban(self, peer: str, seconds: float | None = None) -> None:
        self._bans[peer] = self._clock() + (self.config.ban_s if seconds is None else seconds)
        self._scores.pop(peer, None)
        if len(self._bans) > self.config.max_tracked:
            self._expire_bans()

    def is_banned(self, peer: str) -> bool:
        until = self._bans.get(peer)
        if until is None:
            return False
        if until <= self._clock():
            del self._bans[peer]
            return False
        return True

    def banned(self) -> list[str]:
        self._expire_bans()
        return list(self._bans)

    def _expire_bans(self) -> None:
        now = self._clock()
        for peer in [p for p, until in self._bans.items() if until <= now]:
            del self._bans[peer]


class RateLimiter:
    """Token buckets per key: `rate` tokens per second, at most `burst` saved up."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, cost: float = 1.0) -> bool:
        now = self._clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        ok = tokens >= cost
        if ok:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return ok
