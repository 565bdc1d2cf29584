"""Functional: the operator walkthroughs of README.md and docs/operator-guide.md, run as written.

Owns: keeping the documented commands true. Each walkthrough is the fenced block between
`<!-- walkthrough:NAME begin -->` and `<!-- walkthrough:NAME end -->` in its document; this test
extracts it and runs it with bash (`set -euo pipefail`, every command must succeed) on real daemons.
The only changes made to the text: `/tmp/dn` and `~` point into the test's temporary directory
(HOME is that directory, so wallets and datadirs never touch the real home), documented port
numbers become free ports, and `scripts/devnet` runs its Python directly (`scripts/bootstrap`, which
installs the venv, is skipped). Must not: copy the commands into this file (the docs are the source).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.functional.framework import PYTHON, REPO, free_port, reap_all

pytestmark = pytest.mark.functional

BEGIN = "<!-- walkthrough:{name} begin -->"
END = "<!-- walkthrough:{name} end -->"
TESTNET_PORTS = ("19432", "19433", "19442", "19443")


def extract(doc: Path, name: str) -> str:
    """The code of the fenced block between the walkthrough markers `name` in `doc`."""
    text = doc.read_text()
    begin, end = BEGIN.format(name=name), END.format(name=name)
    assert text.count(begin) == 1, f"{doc.name} needs exactly one {begin}"
    assert text.count(end) == 1, f"{doc.name} needs exactly one {end}"
    section = text.split(begin, 1)[1].split(end, 1)[0]
    fence = re.search(r"```(?:bash|sh)\n(.*?)```", section, re.S)
    assert fence is not None, f"no ```bash block between the {name} markers in {doc.name}"
    return fence.group(1)


def run_walkthrough(script: str, home: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `script` with bash -euo pipefail in its own process group, from the repository root,
    HOME = `home`; every process it left behind is killed afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINGUACHAIN_")}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", COLUMNS="200")
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-x", "-c", script],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"walkthrough did not finish within {timeout:g} s:\n{out[-6000:]}") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # daemons a failed script started with `&`
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def test_readme_devnet_session_runs_as_written(tmp_path: Path) -> None:
    root = tmp_path / "dn"
    script = extract(REPO / "README.md", "devnet")
    script = script.replace("/tmp/dn", str(root))
    script = script.replace("scripts/devnet ", f"{PYTHON} -m linguachaind.devnet_tool ")
    try:
        result = run_walkthrough(script, tmp_path, timeout=400)
    finally:
        subprocess.run([PYTHON, "-m", "linguachaind.devnet_tool", "down", "--dir", str(root)], cwd=REPO)
        reap_all()
    assert result.returncode == 0, result.stdout[-6000:]
    out = result.stdout
    assert '"balance": 150000000' in out  # bob's balance, read from another node
    assert "staked 3000.00000000 LC on validator" in out
    assert re.search(r"^[0-9a-f]{64}$", out, re.M), "the block hash line"
    assert "stopped 3 node(s)" in out


@pytest.mark.slow  # about 80 s: two testnet validators with 6 s slots finalise height 2
def test_operator_guide_testnet_path_runs_as_written(tmp_path: Path) -> None:
    script = extract(REPO / "docs" / "operator-guide.md", "testnet")
    for port in TESTNET_PORTS:
        script = script.replace(port, str(free_port()))
    result = run_walkthrough(script, tmp_path, timeout=400)
    reap_all()
    assert result.returncode == 0, result.stdout[-6000:]
    out = result.stdout
    assert "other nodes bootstrap to it with: --bootstrap /ip4/127.0.0.1/tcp/" in out
    assert "holds 50% of the genesis stake but validator = false" not in out  # started with --validator
    assert re.search(r"final height [1-9]", out), "the testnet finalised a block"
    assert out.count("stopped linguachaind (pid") == 2


def test_devnet_prints_commands_that_work_as_shown(tmp_path: Path) -> None:
    """The hints of `scripts/devnet up` run from a shell whose PATH lacks the venv (a fresh clone)."""
    root = tmp_path / "dn"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LINGUACHAIN_PASSPHRASE": "hint-test"}
    try:
        up = subprocess.run(
            [PYTHON, "-m", "linguachaind.devnet_tool", "up", "--nodes", "1", "--dir", str(root)],
            capture_output=True, text=True, cwd=REPO, timeout=180, env={**os.environ, **env},
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        commands = [line.split(": ", 1)[1] for line in up.stdout.splitlines() if line.startswith("  node0: ")]
        commands += [line.strip() for line in up.stdout.splitlines() if "wallet import --name dev0" in line]
        assert len(commands) == 2, up.stdout
        for command in commands:
            ran = subprocess.run(
                ["bash", "-c", command], capture_output=True, text=True, env=env, timeout=120
            )
            assert ran.returncode == 0, f"{command!r} failed as printed: {ran.stderr}"
    finally:
        subprocess.run([PYTHON, "-m", "linguachaind.devnet_tool", "down", "--dir", str(root)], cwd=REPO)
        reap_all()
