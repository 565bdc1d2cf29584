"""Functional: a new node with no final block of its own takes its weak-subjectivity checkpoint from
its configured bootstrap peers (p2p.checkpoint, PROTOCOL §5.3): real daemons on loopback.

Two devnet validators finalise a few blocks; then a third, non-validator daemon starts with both as
bootstrap peers and no `--checkpoint`. It logs the checkpoint it adopted (their common final block at
the lower of their final heights, which the validators' chains hold) before its syncer fetches
anything, then catches up. Owns: the daemon-level check of the fetch. Must not: sleep.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if __name__ == "__main__":  # running as a script: make `tests.` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.functional.framework import LinguaChainTestFramework, TestNode, wait_until

pytestmark = [pytest.mark.functional, pytest.mark.slow]  # 23 s here; the loopback test covers the rule

ADOPTED = re.compile(r"EVENT checkpoint_adopted height=(\d+) hash=([0-9a-f]{64}) source=peers")


class CheckpointFromPeersTest(LinguaChainTestFramework):
    def set_test_params(self) -> None:
        self.num_nodes = 2

    def run_test(self) -> None:
        from linguachaind.main import init_datadir

        wait_until(
            lambda: all(n.getblockchaininfo()["final_height"] >= 3 for n in self.nodes),
            timeout=90,
            what="final height 3 on both validators",
        )
        datadir = self.tmpdir / "node2"
        settings = {"bootstrap": [n.p2p_addr() for n in self.nodes], "validator": False}
        init_datadir(
            network="devnet", datadir=datadir, genesis_file=self.tmpdir / "genesis.json", validators=2,
            dev_validator=None, settings=settings, force=False,
        )  # fmt: skip
        late = TestNode(2, datadir)
        self.nodes.append(late)
        late.start()
        log = datadir / "debug.log"

        def adopted() -> re.Match[str] | None:
            return ADOPTED.search(log.read_text()) if log.exists() else None

        found = wait_until(adopted, timeout=60, what="checkpoint adopted from the peers")
        height, digest = int(found.group(1)), found.group(2)
        assert height >= 3
        assert {n.getblockhash(height) for n in self.nodes[:2]} == {digest}
        self.wait_for_height(height + 1, [late], timeout=60)
        assert late.getblockhash(height) == digest


def test_checkpoint_from_peers(tmp_path: Path) -> None:
    CheckpointFromPeersTest().main(tmp_path)


if __name__ == "__main__":
    CheckpointFromPeersTest().main()
