"""The weak-subjectivity checkpoint fetched from the configured bootstrap peers (PROTOCOL §5.3).

Owns: `agree`, the rule that turns the bootstrap peers' answers into a checkpoint (or a refusal),
and `fetch_checkpoint`, which gathers those answers over libp2p: each peer's final block from its
`Status` (the handshake every connection makes, `/lc/<chain_id>/status/1`), then its main-chain
header at the lowest final height reported (`GetHeaders`, `/lc/<chain_id>/sync/1`).
Must not: set the checkpoint on the chain, decide whether to fetch one (the node does: never when
the operator gave `--checkpoint`, never when the datadir already holds a final block), or validate
blocks.

The rule (`agree`). Only the configured bootstrap peers count (peer exchange could bring anyone).
- Fewer than `min_peers` of them answered: `TooFewPeers` (the node waits and asks again).
- Every answer has only the genesis final: no checkpoint (a new chain has no old history to
  rewrite), the node syncs as before.
- Else H = the lowest final height >= 1 reported. Each peer with a final block names its block at H:
  its final block if that is at H, else its main-chain header at H (final for it too, since H <= its
  final height). Two different names: `CheckpointRefused`, the node stops. The operator trusts each
  of these peers, so a disagreement means one of them lies, is partitioned or follows another chain,
  and a person must look (and give `--checkpoint HEIGHT:HASH`): no majority vote.
- Fewer than `min_peers` name that block (a peer still at the genesis, or silent on `GetHeaders`):
  `TooFewPeers`. Otherwise the checkpoint is (H, that hash).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from chain.errors import ConfigError
from chain.hashing import H
from chain.types import BlockHash, Height
from p2p import framing
from p2p.host import parse_peer_addr
from p2p.messages import sync as syncmsg
from p2p.protocols import sync_protocol

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often the bootstrap peers' statuses are looked at while waiting for them


class CheckpointRefused(ConfigError):
    """The configured peers contradict each other on the final block; the message names them and
    what each said. The node stops: a person must look (or give `--checkpoint HEIGHT:HASH`)."""


class TooFewPeers(CheckpointRefused):
    """Fewer than `min_peers` configured peers vouch for a final block yet (down, unreachable, or
    still syncing themselves). The node keeps its syncer held and asks again."""


@dataclass(frozen=True, slots=True)
class PeerAnswer:
    """One bootstrap peer: its final block (from its status) and the block it names at the
    candidate height (None: it did not answer the header request)."""

    final_height: int
    final_hash: bytes
    hash_at_candidate: bytes | None = None


def candidate_height(finals: Mapping[str, tuple[int, bytes]]) -> int:
    """The lowest final height >= 1 among the answers; 0 when no answer has one."""
    return min((h for h, _ in finals.values() if h >= 1), default=0)


def agree(answers: Mapping[str, PeerAnswer], min_peers: int) -> tuple[Height, BlockHash] | None:
    """The checkpoint the answers establish; None for a new chain (every answer, from at least
    `min_peers` peers, has only the genesis final); `TooFewPeers` or `CheckpointRefused` (above)."""
    if len(answers) < min_peers:
        raise TooFewPeers(f"{len(answers)} configured peer(s) answered, {min_peers} must agree")
    voters = {p: a for p, a in answers.items() if a.final_height >= 1}
    if not voters:
        return None
    height = min(a.final_height for a in voters.values())
    named = {p: a.final_hash if a.final_height == height else a.hash_at_candidate for p, a in voters.items()}
    said = {p: h for p, h in named.items() if h is not None}
    if len(set(said.values())) > 1:
        listed = ", ".join(f"{p}: {h.hex()}" for p, h in sorted(said.items()))
        raise CheckpointRefused(
            f"the configured peers disagree on the final block at height {height} ({listed})"
        )
    if len(said) < min_peers:
        raise TooFewPeers(
            f"{len(said)} configured peer(s) name a final block at height {height}, {min_peers} must agree"
        )
    return Height(height), BlockHash(next(iter(said.values())))


async def fetch_checkpoint(
    host: Any,
    chain_id: str,
    bootstrap: Sequence[str],
    finals: Callable[[], Mapping[Any, tuple[int, bytes]]],
    *,
    min_peers: int,
    wait_s: float,
    timeout_s: float = 10.0,
) -> tuple[Height, BlockHash] | None:
    """Ask the `bootstrap` peers (multiaddrs with /p2p/<id>) and apply `agree`.

    `finals()` is the peer manager's view of each connected peer's final block (from its status).
    Waits up to `wait_s` for every bootstrap peer's status, then decides with those that answered.
    """
    ids = {str(parse_peer_addr(a).peer_id): parse_peer_addr(a).peer_id for a in bootstrap}
    with trio.move_on_after(wait_s):
        while not set(ids) <= {str(p) for p in finals()}:  # noqa: ASYNC110 - statuses carry no event
            await trio.sleep(POLL_S)
    seen = {str(p): v for p, v in finals().items() if str(p) in ids}
    height = candidate_height(seen)
    answers: dict[str, PeerAnswer] = {}

    async def ask(peer: str, final: tuple[int, bytes]) -> None:
        named = None
        if final[0] > height >= 1:
            named = await _header_hash_at(host, chain_id, ids[peer], height, timeout_s)
        answers[peer] = PeerAnswer(final[0], final[1], named)

    async with trio.open_nursery() as nursery:
        for peer, final in seen.items():
            nursery.start_soon(ask, peer, final)
    log.info(
        "checkpoint: %d of %d configured peers answered; lowest final height %d",
        len(seen),
        len(ids),
        height,
    )
    return agree(answers, min_peers)


async def _header_hash_at(host: Any, chain_id: str, peer: Any, height: int, timeout_s: float) -> bytes | None:
    """The hash of the peer's main-chain header at `height`, or None if it does not give one."""
    reply = await framing.request(
        host,
        peer,
        sync_protocol(chain_id),
        syncmsg.GetHeaders(Height(height), 1),
        syncmsg.Headers,
        timeout_s=timeout_s,
    )
    if isinstance(reply, syncmsg.Headers) and reply.start == height and len(reply.headers) == 1:
        return H(reply.headers[0])
    return None
