"""A copyable example of a functional test (Bitcoin Core's example_test.py is the model).

Run it with pytest (`.venv/bin/pytest tests/functional/example_test.py`) or as a script
(`.venv/bin/python tests/functional/example_test.py`). Copy it, rename it to
`test_<area>_<what>.py`, and change `set_test_params` and `run_test`.
Owns: nothing but the example. Must not: sleep (use `wait_until` and the `sync_*` helpers).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

if __name__ == "__main__":  # running as a script: make `tests.` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.functional.framework import LinguaChainTestFramework, wait_until

pytestmark = pytest.mark.functional


class ExampleTest(LinguaChainTestFramework):
    def set_test_params(self) -> None:
        # How many daemons; each gets its own datadir under the test's tmpdir, free ports and a dev
        # validator key from the shared devnet genesis (one validator per node by default).
        self.num_nodes = 1

    def run_test(self) -> None:
        node = self.nodes[0]
        # Every attribute of a TestNode is an RPC call: this is `getnodeinfo` over JSON-RPC.
        info = node.getnodeinfo()
        assert info["network"] == "devnet"
        assert info["validator_pubkey"]
        # The CLI is driven the way a script would: `--json`, amounts in base units.
        status = node.cli("status")
        assert status["node"]["peer_id"] == info["peer_id"]
        # Waits poll a predicate until a deadline, never sleep: `wait_until` returns the truthy value.
        wait_until(lambda: node.uptime() >= 0, timeout=10, what="uptime answers")


def test_example(tmp_path: Path) -> None:
    ExampleTest().main(tmp_path)


if __name__ == "__main__":
    ExampleTest().main()
