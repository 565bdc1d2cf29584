"""The devnet's learning setup without starting a node (the default-suite side of
tests/functional/test_devnet_learns.py): the bundled sample data (seeded, non-IID, held-out test set
disjoint from every shard, every line valid for the chain), the per-node `[training]` settings that
`devnet_tool.create` writes, `--no-training`, the adversary's node, and the CLI's local check of a
data file."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from chain.examples import parse_line, split_lines
from linguachain_cli.app import CliError
from linguachain_cli.cmd_data import check_jsonl
from linguachaind.config import build_config
from linguachaind.devnet_tool import REPO, SAMPLE_DATA, Learning, create

SCRIPT = REPO / "scripts" / "make_sample_data.py"


def _task(prompt: str) -> str:
    for marker in ("+", "-", "rev ", "up ", "km", " h "):
        if marker in prompt:
            return marker
    raise AssertionError(prompt)


def test_bundled_data_is_what_the_generator_makes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], check=True, capture_output=True)
    for name in ("node0.jsonl", "node1.jsonl", "node2.jsonl", "test.jsonl"):
        assert (tmp_path / name).read_bytes() == (SAMPLE_DATA / name).read_bytes(), name


def test_shards_are_valid_non_iid_and_disjoint_from_the_test_set() -> None:
    test = split_lines((SAMPLE_DATA / "test.jsonl").read_bytes())
    assert len(test) == 120
    seen = set(test)
    majority = []
    for k in range(3):
        lines = split_lines((SAMPLE_DATA / f"node{k}.jsonl").read_bytes())
        assert len(lines) == 400
        assert not seen & set(lines)
        examples = [parse_line(line) for line in lines]
        assert all(not isinstance(e, str) for e in examples)
        tasks = Counter(_task(e.prompt) for e in examples if not isinstance(e, str))
        top_two = sum(n for _, n in tasks.most_common(2))
        assert top_two >= 0.8 * 400  # most of a shard comes from "its" two tasks
        majority.append(frozenset(t for t, _ in tasks.most_common(2)))
    assert len(set(majority)) == 3  # each node's own tasks differ: non-IID


def test_create_writes_training_settings_and_the_adversary(tmp_path: Path) -> None:
    root = tmp_path / "dn"
    meta = create(root, 3, learning=Learning(adversary="sign-flip", adversary_node=1))
    assert meta["training"]
    assert meta["test_data"] == str(root / "data" / "test.jsonl")
    configs = [build_config({"datadir": str(root / f"node{k}")}, env={}) for k in range(3)]
    assert [c.train_data for c in configs] == [root / "data" / f"node{k}.jsonl" for k in range(3)]
    assert [c.train_adversary for c in configs] == ["", "sign-flip", ""]
    assert all(c.train_threads == 1 and c.train_steps == 30 for c in configs)


def test_no_training_devnet_has_no_trainers(tmp_path: Path) -> None:
    root = tmp_path / "dn"
    meta = create(root, 2, learning=Learning(None, None))
    assert not meta["training"]
    assert meta["test_data"] is None
    assert build_config({"datadir": str(root / "node0")}, env={}).train_data is None


def test_missing_shard_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "node0.jsonl").write_text('{"prompt": "12+34=", "completion": "46"}\n')
    with pytest.raises(SystemExit, match=r"node1\.jsonl is missing"):
        create(tmp_path / "dn", 2, learning=Learning(data, None))


def test_cli_checks_a_data_file_before_sending(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "12+34=", "completion": "46"}\n{"prompt": "rev abc:", "completion": " c"}\n')
    assert check_jsonl(good) == (2, "pair")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "12+34="}) + "\n")
    with pytest.raises(CliError, match="line 1"):
        check_jsonl(bad)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"text": "hello world"}\n{"prompt": "12+34=", "completion": "46"}\n')
    with pytest.raises(CliError, match="mixes"):
        check_jsonl(mixed)
