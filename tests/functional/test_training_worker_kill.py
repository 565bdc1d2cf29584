"""SIGKILL the training worker mid-job under a running daemon (issue 13 acceptance).

The job fails clearly (the trainer reports WORKER_DIED), the supervisor restarts the worker (the
RPC shows two starts and one crash), and the daemon goes on producing and finalising blocks the
whole time. Owns: this scenario only. Must not: sleep (waits poll predicates with deadlines).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.functional.framework import LinguaChainTestFramework, wait_until

pytestmark = [pytest.mark.functional, pytest.mark.slow]


class TrainingWorkerKillTest(LinguaChainTestFramework):
    def set_test_params(self) -> None:
        self.num_nodes = 1

    def setup_network(self) -> None:
        data = self.tmpdir / "train.jsonl"
        rows = [{"text": f"the quick brown fox jumps over the lazy dog, line {i}."} for i in range(64)]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        self.extra_args = [["--train-data", str(data)]]
        super().setup_network()

    def run_test(self) -> None:
        node = self.nodes[0]

        def info() -> dict[str, Any]:
            result: dict[str, Any] = node.gettraininginfo()
            return result

        def training_with_pid() -> int | None:
            i = info()
            worker, trainer = i.get("worker"), i.get("trainer")
            if worker and trainer and trainer["state"] == "training" and trainer["step"] >= 1:
                return int(worker["pid"]) if worker["pid"] else None
            return None

        pid = wait_until(training_with_pid, timeout=300, what="the trainer's first training step")
        assert pid is not None
        before = node.getblockchaininfo()
        height_at_kill = before["height"]
        os.kill(pid, signal.SIGKILL)

        def restarted() -> bool:
            worker = info()["worker"]
            return bool(worker["crashes"] >= 1 and worker["starts"] >= 2 and worker["pid"] not in (None, pid))

        wait_until(restarted, timeout=300, what="a restarted worker")
        trainer = info()["trainer"]
        assert trainer["jobs_failed"] >= 1
        assert "WORKER_DIED" in trainer["last_error"], trainer["last_error"]
        worker = info()["worker"]
        assert worker["last_error"] or worker["crashes"] == 1
        self.wait_for_height(height_at_kill + 5, timeout=120)
        chain = node.getblockchaininfo()
        assert chain["height"] >= height_at_kill + 5
        assert chain["final_height"] > before["final_height"]  # attesting and finalising went on
        assert "training worker pid" in node.debug_log_tail(400)


def test_training_worker_kill(tmp_path: Path) -> None:
    TrainingWorkerKillTest().main(tmp_path)


if __name__ == "__main__":
    TrainingWorkerKillTest().main()
