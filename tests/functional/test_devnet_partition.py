"""Functional: nodes that started apart (each on its own chain) must converge once connected
(PROTOCOL §4.5 fork choice, §7.3 sync).

Owns: the "late connection" scenario. Must not: sleep. It used to fail (each node kept its own chain,
finality stayed at 0: the syncer only asked peers for blocks above its own height). The syncer's fork
path now finds the common ancestor with each peer whose best block is unknown and fetches that peer's
branch from there; fork choice then picks one chain and finality resumes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.functional.framework import LinguaChainTestFramework, wait_until

pytestmark = pytest.mark.functional


class LateConnectTest(LinguaChainTestFramework):
    def set_test_params(self) -> None:
        self.num_nodes = 3
        self.connect_topology = "none"  # no bootstrap, no connections: three separate chains
        self.genesis_delay_s = 0.0

    def run_test(self) -> None:
        self.wait_for_height(3)
        assert len({n.getblockhash(1) for n in self.nodes}) > 1  # they really forked
        self.connect_nodes(1, 0)
        self.connect_nodes(2, 1)
        self.sync_blocks(timeout=90)
        wait_until(
            lambda: min(n.getblockchaininfo()["final_height"] for n in self.nodes) >= 3,
            timeout=60,
            what="finality after the merge",
        )
        # each connection re-sent the votes for unfinalised blocks gossiped while the nodes were apart
        resent = [n.getnodeinfo()["gossip"]["sent_direct"] for n in self.nodes]
        assert sum(resent) > 0, resent


def test_nodes_started_apart_converge(tmp_path: Path) -> None:
    LateConnectTest().main(tmp_path)
