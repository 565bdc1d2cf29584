"""The docker-compose testnet, for real (docker/, docker/README.md): image, 4 containers, faults.

Owns: building the image (from `docker/build-base` when no registry answers), `docker-compose up` of
the 4-node testnet under a private project name and free loopback RPC ports, finality on every node
(RPC through the published 127.0.0.1 ports), a transfer made with the CLI inside one container and seen
on another node, `docker stop` of one container (the others go on), `docker network disconnect` of one
and its reconnection (it catches up), and `down -v` whatever happens. Must not: sleep to wait, touch
another compose project, or leave containers, networks or volumes behind.
Skips with the reason where no Docker engine (or no docker-compose) runs: `scripts/test-docker` starts
one first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from linguachain_cli.rpc import RpcClient, RpcConnectionError
from tests.functional.framework import free_port, wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker" / "docker-compose.yml"
IMAGE = os.environ.get("LC_DOCKER_IMAGE", "linguachain:test")  # the tag built (or used) here
LOCAL_BASE = "linguachain-base:bookworm"
OFFICIAL_BASE = "python:3.11-slim"
NODES = 4


def _engine_reason() -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI (scripts/test-docker installs and starts an engine)"
    if shutil.which("docker-compose") is None:
        return "no docker-compose (scripts/test-docker installs it)"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60, check=False)
    if probe.returncode != 0:
        return "no Docker engine answers `docker info` (scripts/test-docker starts one)"
    return None


_REASON = _engine_reason()
needs_docker = pytest.mark.skipif(_REASON is not None, reason=f"docker: {_REASON}")


def run(*cmd: str, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO, env=env
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    return proc.stdout


def base_image() -> str:
    """$BASE_IMAGE, else the official image if a registry answers, else the debootstrap one."""
    chosen = os.environ.get("BASE_IMAGE")
    if chosen:
        return chosen
    pull = subprocess.run(["docker", "pull", OFFICIAL_BASE], capture_output=True, timeout=120, check=False)
    if pull.returncode == 0:
        return OFFICIAL_BASE
    run(str(REPO / "docker" / "build-base"), LOCAL_BASE, timeout=900)
    return LOCAL_BASE


class Testnet:
    """One compose project: `docker-compose -p NAME -f docker/docker-compose.yml ...`."""

    __test__ = False

    def __init__(self, project: str) -> None:
        self.project = project
        self.ports = [free_port() for _ in range(NODES)]
        self.env = dict(os.environ, LC_IMAGE=IMAGE)
        self.env.update({f"LC_RPC_PORT_{k}": str(p) for k, p in enumerate(self.ports)})

    def compose(self, *args: str, timeout: float = 300) -> str:
        return run(
            "docker-compose",
            "-p",
            self.project,
            "-f",
            str(COMPOSE_FILE),
            *args,
            timeout=timeout,
            env=self.env,
        )

    def container(self, k: int) -> str:
        return f"{self.project}_node{k}_1"

    @property
    def network(self) -> str:
        return f"{self.project}_lcnet"

    def exec(self, k: int, *cmd: str, env: dict[str, str] | None = None) -> str:
        flags = [f for key, value in (env or {}).items() for f in ("-e", f"{key}={value}")]
        return run("docker", "exec", *flags, self.container(k), *cmd, timeout=120)

    def rpc(self, k: int) -> RpcClient:
        """RPC through the port published on the host's loopback; auth from the container's cookie."""
        try:
            cookie = self.exec(k, "cat", "/data/.cookie")
        except AssertionError as exc:  # not written yet (starting) or the container is down
            raise RpcConnectionError(str(exc).splitlines()[-1]) from None
        user, _, password = cookie.strip().partition(":")
        return RpcClient("127.0.0.1", self.ports[k], user=user, password=password, timeout=10)

    def info(self, k: int) -> dict[str, Any]:
        result: dict[str, Any] = self.rpc(k).call("getblockchaininfo")
        return result

    def save_logs(self) -> Path:
        """Every container's full log into $LC_FAILURE_DIR (default /tmp/lc-docker-failures)/<project>/."""
        dest = Path(os.environ.get("LC_FAILURE_DIR", "/tmp/lc-docker-failures")) / self.project
        dest.mkdir(parents=True, exist_ok=True)
        for name in ["init", *(f"node{k}" for k in range(NODES))]:
            proc = subprocess.run(["docker", "logs", f"{self.project}_{name}_1"], capture_output=True,
                                  text=True, timeout=60, check=False)  # fmt: skip
            (dest / f"{name}.log").write_text(proc.stdout + proc.stderr)
        return dest


@pytest.fixture
def testnet() -> Iterator[Testnet]:
    if os.environ.get("LC_DOCKER_BUILD", "1") != "0":  # LC_DOCKER_BUILD=0: use the existing image
        run("docker", "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base_image()}",
            "-f", "docker/Dockerfile", "-t", IMAGE, ".", timeout=2400)  # fmt: skip
    net = Testnet(f"lctest{os.getpid()}")
    ok = False
    try:
        net.compose("up", "-d", "--no-build")
        yield net
        ok = True
    finally:
        if not ok:
            print(f"container logs saved in {net.save_logs()}")
        net.compose("down", "-v", "--remove-orphans", timeout=180)


def wait_final(net: Testnet, nodes: list[int], height: int, timeout: float = 180) -> None:
    wait_until(
        lambda: all(net.info(k)["final_height"] >= height for k in nodes),
        timeout=timeout,
        what=f"final height {height} on nodes {nodes}",
    )


@needs_docker
def test_compose_testnet_runs_and_survives_faults(testnet: Testnet) -> None:
    everyone = list(range(NODES))
    wait_until(lambda: all(testnet.info(k) for k in everyone), timeout=180, what="RPC of every container")
    wait_final(testnet, everyone, 3)
    assert len({testnet.info(k)["chain_id"] for k in everyone}) == 1
    # a transfer with the CLI inside node1, seen on node3
    accounts = json.loads(testnet.exec(1, "cat", "/shared/accounts.json"))
    cli_env = {"LINGUACHAIN_PASSPHRASE": "docker-test"}
    cli = ("linguachain-cli", "--datadir", "/data", "--json")
    testnet.exec(1, *cli, "wallet", "import", "--name", "dev0",
                 "--secret-key-hex", accounts[0]["secret_key_hex"], env=cli_env)  # fmt: skip
    sent = json.loads(
        testnet.exec(1, *cli, "wallet", "send", accounts[1]["address"], "1.5", "--from", "dev0", env=cli_env)
    )
    wait_until(
        lambda: testnet.rpc(3).call("gettransaction", sent["txid"]).get("block_hash"),
        timeout=120,
        what="the transfer in a block on node3",
    )
    # stop node3: the other three (3/4 of the stake) keep finalising
    run("docker", "stop", testnet.container(3))
    wait_final(testnet, [0, 1, 2], max(testnet.info(k)["final_height"] for k in (0, 1, 2)) + 3)
    run("docker", "start", testnet.container(3))
    # cut node2 off the network: the others go on; reconnected, it catches up
    wait_final(testnet, everyone, max(testnet.info(k)["final_height"] for k in (0, 1, 2)) + 1)
    run("docker", "network", "disconnect", testnet.network, testnet.container(2))
    target = max(testnet.info(k)["final_height"] for k in (0, 1, 3)) + 3
    wait_final(testnet, [0, 1, 3], target)
    run("docker", "network", "connect", "--alias", "node2", testnet.network, testnet.container(2))
    wait_final(testnet, everyone, target)
    best = testnet.rpc(0).call("getblockhash", target)
    assert all(testnet.rpc(k).call("getblockhash", target) == best for k in everyone)
