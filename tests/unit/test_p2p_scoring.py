"""Peer scores, bans and rate limits (PROTOCOL §7.4)."""

from __future__ import annotations

from p2p.scoring import Offence, PeerScores, RateLimiter, ScoreConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_permanent_offences_ban_below_threshold() -> None:
    clock = Clock()
    scores = PeerScores(ScoreConfig(ban_threshold=-100, ban_s=60), clock)
    banned = [scores.penalise("p", Offence.INVALID) for _ in range(5)]
    assert banned == [False, False, False, False, True]
    assert scores.is_banned("p")
    assert not scores.penalise("p", Offence.INVALID)  # already banned: no second ban event
    clock.now += 61
    assert not scores.is_banned("p")
    assert scores.score("p") == 0.0


def test_scores_recover_over_time() -> None:
    clock = Clock()
    scores = PeerScores(ScoreConfig(recovery_per_s=1.0), clock)
    scores.penalise("p", Offence.MALFORMED)
    assert scores.score("p") == -25.0
    clock.now += 10
    assert scores.score("p") == -15.0
    clock.now += 100
    assert scores.score("p") == 0.0


def test_floods_weigh_less_than_invalid_messages() -> None:
    scores = PeerScores(ScoreConfig(), Clock())
    for _ in range(99):
        assert not scores.penalise("f", Offence.FLOOD)
    assert scores.penalise("f", Offence.FLOOD)


def test_tracked_peers_are_bounded() -> None:
    scores = PeerScores(ScoreConfig(max_tracked=100), Clock())
    for i in range(1000):
        scores.penalise(f"p{i}", Offence.TIMEOUT)
    assert len(scores._scores) <= 100


def test_rate_limiter_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=5, clock=clock)
    assert [limiter.allow("a") for _ in range(6)] == [True] * 5 + [False]
    assert limiter.allow("b")
    clock.now += 0.1
    assert limiter.allow("a")
    assert not limiter.allow("a")
