"""Random adversarial schedules for the simulation (tests/sim/network.py).

Owns: `Schedule` (N, the Byzantine node and its behaviour, drops, delays, an optional partition window,
clock skews) and `Schedule.run`. Must not: assert anything but what `SimNetwork` checks itself.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from chain.params import DEVNET
from chain.types import Height
from tests.sim.network import Behaviour, SimNetwork
from tests.sim.world import VdfImpl

# Devnet with a longer evidence window: evidence that a partition delays must still be includable,
# so that every provable fault ends with the faulty stake slashed (issue 10 acceptance).
SIM_PARAMS = dataclasses.replace(DEVNET, unbonding_blocks=Height(60))

BYZANTINE_KINDS = (
    Behaviour(silent=True),
    Behaviour(invalid_blocks=True),
    Behaviour(equivocate=True),
    Behaviour(double_attest=True),
    Behaviour(equivocate=True, double_attest=True),
    Behaviour(surround=True),
    Behaviour(equivocate=True, surround=True),
)


@dataclass(frozen=True)
class Schedule:
    """One random run: size, the Byzantine node, link quality, an optional partition window."""

    seed: int
    n: int
    byzantine: int
    behaviour: Behaviour
    drop: float
    max_delay_ms: int
    partition: tuple[frozenset[int], frozenset[int]] | None
    partition_slots: tuple[int, int]  # [start, end) in slots after genesis
    adverse_slots: int
    heal_slots: int
    skews_ms: tuple[int, ...] = ()  # per-node clock offsets (within max_future_drift_ms)

    @classmethod
    def random(cls, seed: int, *, adverse_slots: int = 9, heal_slots: int = 5) -> Schedule:
        rng = random.Random(seed)
        n = rng.randint(4, 7)
        members = list(range(n))
        rng.shuffle(members)
        cut = rng.randint(1, n - 1)
        partition = (frozenset(members[:cut]), frozenset(members[cut:])) if rng.random() < 0.3 else None
        start = rng.randint(1, max(1, adverse_slots - 2))
        skews = tuple(rng.randint(-1500, 1500) for _ in range(n)) if rng.random() < 0.5 else ()
        return cls(
            seed=seed,
            n=n,
            byzantine=rng.randrange(n),
            behaviour=rng.choice(BYZANTINE_KINDS),
            drop=rng.choice((0.0, 0.05, 0.15, 0.3)),
            max_delay_ms=rng.choice((100, 400, 900, 1800)),
            partition=partition,
            partition_slots=(start, min(adverse_slots, start + rng.randint(2, 4))),
            adverse_slots=adverse_slots,
            heal_slots=heal_slots,
            skews_ms=skews,
        )

    def run(self, vdf: VdfImpl, *, literal_rule: bool = False) -> SimNetwork:
        """Run the schedule; raises `SafetyViolation` the moment any node breaks safety."""
        net = SimNetwork.create(
            self.n,
            vdf,
            seed=self.seed,
            behaviours={self.byzantine: self.behaviour},
            delay_ms=(1, self.max_delay_ms),
            drop=self.drop,
            literal_rule=literal_rule,
            skews_ms=self.skews_ms,
            params=SIM_PARAMS,
        )
        slot = net.params.slot_ms
        t0 = net.now
        net.start_announcing(2 * slot)
        if self.partition is not None:
            net.run_until(t0 + self.partition_slots[0] * slot)
            net.partition = [set(self.partition[0]), set(self.partition[1])]
            net.run_until(t0 + self.partition_slots[1] * slot)
            net.partition = None
        net.run_until(t0 + self.adverse_slots * slot)
        net.drop = 0.0
        net.delay_ms = (1, 100)
        net.run_until(t0 + (self.adverse_slots + self.heal_slots) * slot)
        return net
