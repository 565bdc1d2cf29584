"""The learning-experiment driver (scripts/experiments/fl_experiments.py, issue 14 "Experiments").

The slow test runs the script as the README's commands do, as a real process with the real
training worker, on a tiny configuration (1 version, 2 steps per node, 16-example shards) and checks
that it writes the JSON figures and a PNG plot; the fast tests pin the figures' arithmetic (the
fraction of the central improvement that federated recovers) and the refusal of a data directory
without shards.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "experiments" / "fl_experiments.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load_driver() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fl_experiments", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def tiny_data(tmp: Path, n: int = 16) -> Path:
    data = tmp / "data"
    data.mkdir()
    for name in ("node0.jsonl", "node1.jsonl", "node2.jsonl", "test.jsonl"):
        lines = (ROOT / "data" / "sample" / name).read_text().splitlines(keepends=True)
        (data / name).write_text("".join(lines[:n]))
    return data


def test_figures_report_the_fraction_of_the_central_improvement_recovered() -> None:
    driver = load_driver()
    out = driver.figures("central", {"federated": [4.0, 3.5, 3.0], "central": [4.0, 3.0, 2.0]})
    assert out["improvement"] == {"federated": 1.0, "central": 2.0}
    assert out["fraction_recovered"] == 0.5
    assert "fraction_recovered" not in driver.figures("scheme", {"a": [2.0, 1.0], "b": [2.0, 1.5]})


def test_a_data_directory_without_shards_is_refused(tmp_path: Path) -> None:
    driver = load_driver()
    with pytest.raises(SystemExit) as exc:
        driver.parse_args(["--data-dir", str(tmp_path), "--out-dir", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_driver_writes_the_json_figures_and_a_png(tmp_path: Path) -> None:
    data, out = tiny_data(tmp_path), tmp_path / "out"
    argv = [sys.executable, str(SCRIPT), "--experiment", "1", "--versions", "1", "--steps", "2"]
    argv += ["--batch-size", "4", "--data-dir", str(data), "--out-dir", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "version 1: test loss" in done.stdout
    figures = json.loads((out / "central.json").read_text())
    curves = figures["test_loss"]
    assert set(curves) == {"federated FFA-LoRA", "central (pooled shards)"}
    assert all(len(losses) == 2 for losses in curves.values())  # versions 0 and 1
    assert curves["federated FFA-LoRA"][0] == curves["central (pooled shards)"][0]  # the same base
    assert isinstance(figures["fraction_recovered"], float)
    assert figures["settings"]["versions"] == 1
    assert figures["excluded_per_version"]["federated FFA-LoRA"] == [[], []]  # fedavg keeps all 3
    assert (out / "central.png").read_bytes().startswith(PNG_MAGIC)
