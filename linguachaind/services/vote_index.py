"""The evidence reporter's kept votes, indexed for double- and surround-vote lookups (PROTOCOL §5.3).

Owns: `VoteIndex`, the first vote per (height, validator) inside the evidence window, capped, with
per-validator chains sorted by target height so that `surrounding` answers in O(log n) instead of
scanning every kept vote (measured: scripts/bench/surround_bench.py). Must not: decide what proves a
fault (chain.consensus.slashing), verify signatures, or submit anything
(linguachaind.services.evidence does).

Why neighbours suffice. Per validator the index keeps a *chain*: targets strictly increasing and
sources non-decreasing (what an honest validator signs, `finality.may_attest`). In such a chain the
kept votes below a new vote's target have their highest source at the nearest one below, and those
above have their lowest source at the nearest one above; so a kept vote surrounds the new one (lower
source, higher target) iff the next one above does, and the new one surrounds a kept vote iff it
surrounds the next one below. A vote that would break the chain is exactly such a surround (for
t1 < t2, s1 > s2 means (s2, t2) strictly contains (s1, t1)): it is kept for double votes but left out
of the chain, which stays exact for every later vote.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field

from chain.header import Attestation
from chain.types import PubKey

Slot = tuple[int, PubKey]  # (target height, validator)


@dataclass(slots=True)
class _Chain:
    targets: list[int] = field(default_factory=list)  # strictly increasing
    votes: list[Attestation] = field(default_factory=list)  # same order; sources non-decreasing


class VoteIndex:
    """First vote per (height, validator), at most `limit` (the lowest heights go first)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: dict[Slot, Attestation] = {}
        self._chains: dict[PubKey, _Chain] = {}
        self._heap: list[Slot] = []  # every slot ever added; entries no longer in `_slots` are stale

    def __len__(self) -> int:
        return len(self._slots)

    def get(self, slot: Slot) -> Attestation | None:
        return self._slots.get(slot)

    def surrounding(self, att: Attestation) -> tuple[Attestation, Attestation] | None:
        """(outer, inner) if a kept vote of `att.validator` and `att` strictly nest, else None."""
        chain = self._chains.get(att.validator)
        if chain is None:
            return None
        t, s = int(att.height), int(att.source_height)
        i = bisect.bisect_right(chain.targets, t)  # the nearest target above (an equal one is a double vote)
        if i < len(chain.votes) and int(chain.votes[i].source_height) < s:
            return chain.votes[i], att  # the nearest vote above reaches lower: it surrounds att
        j = bisect.bisect_left(chain.targets, t) - 1
        if j >= 0 and s < int(chain.votes[j].source_height):
            return att, chain.votes[j]  # att reaches below the nearest vote under it
        return None

    def add(self, att: Attestation) -> bool:
        """Keep `att` if its slot is free (True); then drop the lowest heights over `limit`."""
        slot = (int(att.height), att.validator)
        if slot in self._slots:
            return False
        self._slots[slot] = att
        heapq.heappush(self._heap, slot)
        if self.surrounding(att) is None:  # else it is a fault already: keep the chain exact
            chain = self._chains.setdefault(att.validator, _Chain())
            i = bisect.bisect_left(chain.targets, slot[0])
            chain.targets.insert(i, slot[0])
            chain.votes.insert(i, att)
        while len(self._slots) > self.limit:
            self._drop_lowest()
        return True

    def prune(self, horizon: int) -> None:
        """Forget every vote at or below `horizon` (outside the evidence window)."""
        while self._heap and self._heap[0][0] <= horizon:
            self._drop_lowest()

    def _drop_lowest(self) -> None:
        slot = heapq.heappop(self._heap)
        att = self._slots.pop(slot, None)
        if att is None:
            return
        chain = self._chains[slot[1]]
        i = bisect.bisect_left(chain.targets, slot[0])
        if i < len(chain.votes) and chain.votes[i] is att:
            del chain.targets[i], chain.votes[i]
        if not chain.votes:
            del self._chains[slot[1]]
