"""mDNS discovery (issue 4, "optional mDNS for local networks") between two hosts of their own.

Two network namespaces joined by a veth pair (10.213.7.1 and 10.213.7.2, addresses that exist only
inside the namespaces this test creates), one node in each with mDNS on and no bootstrap peer: each
must find and connect to the other. With mDNS off they must not. Needs root and `ip` (iproute2);
skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("mdns_probe.py")
ADDRS = ("10.213.7.1", "10.213.7.2")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create network namespaces")
    names = (f"lcmdns{os.getpid()}a", f"lcmdns{os.getpid()}b")
    veths = (f"lcv{os.getpid()}a"[-15:], f"lcv{os.getpid()}b"[-15:])
    try:
        for ns in names:
            _ip("netns", "add", ns)
    except subprocess.CalledProcessError as exc:
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"cannot create network namespaces here: {exc.stderr.decode().strip()}")
    try:
        _ip("link", "add", veths[0], "type", "veth", "peer", "name", veths[1])
        for ns, veth, addr in zip(names, veths, ADDRS, strict=True):
            _ip("link", "set", veth, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", veth)
            _ip("-n", ns, "link", "set", veth, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", veth)  # multicast out of the veth
        yield names
    finally:
        for ns in names:  # deleting a namespace deletes its end of the veth pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def _run_pair(names: tuple[str, str], wait_s: float, *flags: str) -> list[dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(PROBE), addr, str(wait_s), *flags],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for ns, addr in zip(names, ADDRS, strict=True)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=wait_s + 60)
        assert proc.returncode == 0, err.decode()[-2000:]
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results


def test_two_hosts_find_each_other_by_mdns(two_hosts: tuple[str, str]) -> None:
    a, b = _run_pair(two_hosts, 30.0)
    assert a["peers"] == [b["me"]]
    assert b["peers"] == [a["me"]]


def test_without_mdns_they_stay_alone(two_hosts: tuple[str, str]) -> None:
    a, b = _run_pair(two_hosts, 6.0, "--no-mdns")
    assert a["peers"] == []
    assert b["peers"] == []
