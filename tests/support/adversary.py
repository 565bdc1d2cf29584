"""Adversarial block proposers for tests: the switch that production packages do not have.

Owns: `LyingVersions`, a VERSION body source (`linguachaind.services.producer.VersionBodySource`)
that signs the honest rounds service's body with every new-adapter batch loss claimed lower, the
falsified score of PROTOCOL §5.3 FALSE_SCORE. Must not: be imported by the project's packages
(tests only: a daemon has no way to lie about scores).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from chain.block import VersionBody
from chain.consensus.scoring import total_score
from chain.state.view import StateView
from chain.types import Micro


class VersionBodies(Protocol):
    def body(self, reader: StateView, height: int) -> VersionBody: ...


class LyingVersions:
    """The honest body from `honest` (a rounds service) with every batch loss of the new adapter
    claimed `by` micro lower and the total recomputed, so that the body stays well-formed."""

    def __init__(self, honest: VersionBodies, by: int) -> None:
        self.honest, self.by = honest, by

    def body(self, reader: StateView, height: int) -> VersionBody:
        body = self.honest.body(reader, height)
        scores = tuple(Micro(s - self.by) for s in body.per_batch_scores)
        if not scores:
            return body  # an unscored no-op claims nothing
        return dataclasses.replace(body, per_batch_scores=scores, total_score=total_score(scores))
