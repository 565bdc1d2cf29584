"""Fork choice and finality bookkeeping over a tree of valid headers (PROTOCOL §4.4, §4.5).

Owns: `choose_head` (the head among chains extending the last final block) and `descends_from` /
`advance_final` (finality only ever moves forward along the current final block's descendants).
Must not: store blocks, validate them (only valid blocks are passed in), or roll back state (the
store does that through undo records).

The rule of §4.5, made a well-defined greedy descent: starting at the last final block, at each block
choose the child whose key is best, where a child's key is (optionally first: the justified source
height its best tip proves, see `choose_head`; then the attested weight of the child itself,
then the height of the best tip in its subtree, then the lower sum of ranks from the final block to
that tip, then the lower hash of that tip). A child's "best tip" is found by the same rule inside its
subtree, so the comparison at a fork is exactly "most attested weight on the first differing block,
then height, then lower rank sum, then lower hash" between the two chains the subtrees would pick.
(Comparing every pair of tips directly is not transitive, hence the descent.) The final block is the
root, so a final block is never reverted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from chain.header import Header
from chain.types import BlockHash


def descends_from(headers: Mapping[BlockHash, Header], block: BlockHash, ancestor: BlockHash) -> bool:
    """True if `ancestor` is `block` or one of its ancestors inside `headers` (walks by hash keys,
    so no header is re-encoded)."""
    target = headers.get(ancestor)
    node = headers.get(block)
    if target is None or node is None:
        return False
    cur = block
    while node.height > target.height:
        cur = node.prev_hash
        parent = headers.get(cur)
        if parent is None:
            return False
        node = parent
    return cur == ancestor


def advance_final(
    headers: Mapping[BlockHash, Header], current_final: BlockHash, candidate: BlockHash
) -> BlockHash:
    """The new last final block after `candidate` reached the threshold (§4.4).

    Finality moves only forward along descendants of the current final block; a candidate that
    conflicts with it (only possible if 1/3 of the weight equivocated) is ignored.
    """
    cur, cand = headers.get(current_final), headers.get(candidate)
    if cur is None or cand is None or cand.height <= cur.height:
        return current_final
    return candidate if descends_from(headers, candidate, current_final) else current_final


def choose_head(
    headers: Mapping[BlockHash, Header],
    final_hash: BlockHash,
    attested_weight: Callable[[BlockHash], int],
    source_height: Callable[[BlockHash], int] | None = None,
) -> BlockHash:
    """The head per §4.5 among the blocks of `headers` that descend from `final_hash`.

    `headers` holds known valid blocks (others are ignored if they do not connect to the final
    block); `attested_weight(h)` is the eligible weight of distinct validators known to attest `h`.
    `source_height(tip)` (optional, `finality.vote_source` height) puts first the chains whose tip
    proves the highest justified block: validators that voted with a higher source may only vote
    on such chains (no surround votes), so preferring them keeps finality live. This is the
    Casper-FFG / Ethereum "filter by justified checkpoint" step in front of §4.5's order.
    """
    children: dict[bytes, list[BlockHash]] = {}
    for h, hd in headers.items():
        children.setdefault(hd.prev_hash, []).append(h)
    # Collect the subtree of the final block, parents before children, with rank sums.
    order: list[BlockHash] = [final_hash]
    rank_sum: dict[bytes, int] = {final_hash: 0}
    i = 0
    while i < len(order):
        parent = order[i]
        for c in children.get(parent, ()):
            rank_sum[c] = rank_sum[parent] + headers[c].rank
            order.append(c)
        i += 1
    best: dict[bytes, BlockHash] = {}
    source: dict[bytes, int] = {}
    for node in reversed(order):  # children before parents
        kids = children.get(node)
        if not kids:
            best[node] = node
            source[node] = source_height(node) if source_height is not None else 0
            continue
        winner = min(
            kids,
            key=lambda c: (
                -source[c],
                -attested_weight(c),
                -headers[best[c]].height,
                rank_sum[best[c]],
                best[c],
            ),
        )
        best[node] = best[winner]
        source[node] = source[winner]
    return best[final_hash]
