"""`linguachain-cli data get` against a real daemon: the blob of a data unit submitted with `data
submit` comes back byte for byte through `getblob` (issue 15: the RPC answered NOT_AVAILABLE_YET).
Must not: sleep to wait."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.functional.framework import LinguaChainTestFramework

pytestmark = pytest.mark.functional


class DataGetTest(LinguaChainTestFramework):
    def set_test_params(self) -> None:
        self.num_nodes = 1

    def run_test(self) -> None:
        node = self.nodes[0]
        data = self.tmpdir / "test.jsonl"
        rows = [{"prompt": f"Question {i}?", "completion": f" Answer {i}."} for i in range(20)]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        submitted = node.cli("data", "submit", str(data))
        out = self.tmpdir / "copy.jsonl"
        got = node.cli("data", "get", submitted["blob_hash"], "--out", str(out))
        assert got == {"blob_hash": submitted["blob_hash"], "size": data.stat().st_size, "out": str(out)}
        assert out.read_bytes() == data.read_bytes()
        missing = node.cli("data", "get", "00" * 32, "--out", str(self.tmpdir / "none"), check=False)
        assert missing.returncode == 1
        assert "not held" in missing.stderr.decode(), missing.stderr
        assert not (self.tmpdir / "none").exists()
        assert not (self.tmpdir / ".none.part").exists()


def test_cli_data_get_returns_a_submitted_blob(tmp_path: Path) -> None:
    DataGetTest().main(tmp_path)
