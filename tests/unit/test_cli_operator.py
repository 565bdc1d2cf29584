"""Unit: the operator-facing details of `linguachain-cli` and `linguachaind` that need no running node.

Owns: full values in human tables (never cut to 80 columns), `--json` after the command, raw RPC
params, the sync progress figure, LC amounts in `stake status`, the INSUFFICIENT_BALANCE figures,
wallet backup advice, the one-line port clash, the datadir-lock check behind `linguachaind stop`,
the quiet devnet's block lines, and debug.log rotation.
Must not: start a daemon (tests/functional covers the same commands against real ones).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from linguachain_cli.app import CliError, check_balance
from linguachain_cli.cmd_chain import sync_progress
from linguachain_cli.cmd_node import parse_param
from linguachain_cli.main import cli
from linguachain_cli.output import kv, lc_fields, table
from linguachaind.datadir import DatadirLock, Layout
from linguachaind.main import daemon_pid, port_clash

HASH = "ab" * 32


def test_tables_print_values_in_full_when_piped(capsys: pytest.CaptureFixture[str]) -> None:
    table("validators", ["validator", "address", "stake"], [[HASH, "rlc1" + "q" * 54, "1.00000000 LC"]])
    kv("status", [("best block", HASH), ("validator", "cd" * 32)])
    out = capsys.readouterr().out
    assert HASH in out
    assert "cd" * 32 in out
    assert "rlc1" + "q" * 54 in out
    assert "…" not in out


def test_lc_fields_shows_amounts_in_lc_and_leaves_the_rest() -> None:
    rows = dict(lc_fields({"validator_pubkey": HASH, "stake_total": 300_000_000_000, "eligible": True}))
    assert rows == {"validator_pubkey": HASH, "stake_total": "3000.00000000 LC", "eligible": True}


def test_raw_rpc_params_are_json_when_they_parse() -> None:
    assert parse_param("5") == 5
    assert parse_param("true") is True
    assert parse_param('["a", 1]') == ["a", 1]
    assert parse_param(HASH) == HASH  # plain text needs no quotes
    assert parse_param("rlc1xyz") == "rlc1xyz"


def test_sync_progress_is_height_over_the_best_peer_height() -> None:
    chain = {"height": 50, "synced": False}
    assert sync_progress(chain, [{"height": 100}, {"height": -1}]) == 0.5
    assert sync_progress({"height": 120, "synced": True}, [{"height": 100}]) == 1.0
    assert sync_progress({"height": 0, "synced": True}, []) == 1.0
    assert sync_progress({"height": 0, "synced": False}, []) == 0.0
    assert sync_progress(None, []) is None


def test_insufficient_balance_names_balance_amount_and_fee() -> None:
    account = {"address": "rlc1abc", "balance": 150_000_000}
    check_balance(account, 100_000_000, 10_000)  # enough: no error
    with pytest.raises(CliError) as err:
        check_balance(account, 150_000_000, 10_000)
    text = str(err.value)
    assert "INSUFFICIENT_BALANCE" in text
    assert "has 1.50000000 LC" in text
    assert "needs 1.50010000 LC = amount 1.50000000 LC + fee 0.00010000 LC" in text


def test_json_is_accepted_after_the_command_and_create_advises_a_backup(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"LINGUACHAIN_PASSPHRASE": "correct horse battery", "LINGUACHAIN_KDF": "interactive"}
    base = ["--wallet-dir", str(tmp_path / "w"), "--network", "devnet"]
    created = runner.invoke(cli, [*base, "wallet", "create", "--name", "bob"], env=env)
    assert created.exit_code == 0, created.output
    assert "BACK IT UP" in created.output
    assert "keystore file:" in created.output
    assert "wallets live per network" in created.output
    before = runner.invoke(cli, [*base, "--json", "wallet", "list"], env=env)
    after = runner.invoke(cli, [*base, "wallet", "list", "--json"], env=env)
    assert after.exit_code == 0, after.output
    assert json.loads(after.output) == json.loads(before.output)
    assert json.loads(after.output)[0]["name"] == "bob"


def test_port_clash_is_one_line_naming_the_port_and_the_flag() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rpc = SimpleNamespace(rpc_bind="127.0.0.1", rpc_port=port, listen=())
        message = port_clash(rpc)
        assert message is not None
        assert "\n" not in message
        assert f"port {port} on 127.0.0.1 is already in use" in message
        assert "--rpc-port" in message
        p2p = SimpleNamespace(rpc_bind="127.0.0.1", rpc_port=0, listen=(f"/ip4/127.0.0.1/tcp/{port}",))
        message = port_clash(p2p)
        assert message is not None
        assert "--listen" in message
        assert str(port) in message
    assert port_clash(SimpleNamespace(rpc_bind="127.0.0.1", rpc_port=0, listen=())) is None


def test_daemon_pid_comes_only_from_a_held_datadir_lock(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert daemon_pid(layout) is None  # no lock file
    with DatadirLock(layout):
        # Held by this process, which is not a linguachaind: refused by its command line, unless
        # it is one (pytest's command line may name it when run from this repository).
        held = daemon_pid(layout)
        assert held in (None, os.getpid())
    layout.pid.write_text("1\n")  # a stale pid file naming another process
    assert daemon_pid(layout) is None  # the lock is free: no daemon, whatever the pid file says


def test_quiet_devnet_prints_one_line_per_block_and_every_warning() -> None:
    from linguachaind.devnet_tool import BlockSummary

    summary = BlockSummary()
    ts = "2026-12-05T07:35:19.726861Z"
    connected = (
        f"{ts} INFO  linguachaind.services.chain_service: "
        "EVENT block_connected height=7 hash=ab12 kind=TX rank=0 txs=3\n"
    )
    assert summary.feed(1, connected) is None
    assert (
        summary.feed(
            0, f"{ts} INFO  linguachaind.services.chain_service: EVENT block_final height=6 hash=cd\n"
        )
        is None
    )
    line = summary.feed(
        1, f"{ts} INFO  linguachaind.services.producer: EVENT block_proposed height=7 hash=ab12 rank=0\n"
    )
    assert line == "height    7  TX      ab12  by node1 (rank 0)  final 6  txs 3"
    assert (
        summary.feed(2, f"{ts} INFO  linguachaind.services.attester: EVENT attested height=7 hash=ab12\n")
        is None
    )
    warning = (
        f"{ts} WARNING vdf.prover: VDF worker died during a request (pid 5 killed by SIGKILL; 1 in a row)\n"
    )
    assert summary.feed(2, warning) == f"node2 | {warning}"
    sync = f"{ts} INFO  p2p.syncer: sync: from 3 to 40 with 2 peers\n"
    assert summary.feed(2, sync) == f"node2 | {sync}"
    assert summary.feed(2, f"{ts} INFO  p2p.gossip: published block\n") is None


def test_status_says_when_a_non_validating_node_holds_a_validator_key(tmp_path: Path) -> None:
    from linguachain_cli.app import App
    from linguachain_cli.cmd_chain import _not_validating

    app = App(None, tmp_path, "testnet", None, False, 5.0)
    assert _not_validating(app) == "no"
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "validator.key").write_text("00" * 32)
    assert "start with --validator" in _not_validating(app)


def test_debug_log_rotates_by_size(tmp_path: Path) -> None:
    import logging

    from linguachaind.logsetup import LOG_BACKUPS, LOG_MAX_BYTES, configure_logging

    assert LOG_MAX_BYTES == 50 * 2**20
    assert LOG_BACKUPS == 5
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    log_file = tmp_path / "debug.log"
    try:
        configure_logging(debug_log=log_file, stderr=False, max_bytes=4_000, backups=2)
        for i in range(200):
            logging.getLogger("linguachaind.test").info("line %d %s", i, "x" * 60)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["debug.log", "debug.log.1", "debug.log.2"]  # the oldest were dropped
    assert all((tmp_path / n).stat().st_size <= 4_000 for n in names)
    assert "line 199 " in log_file.read_text()
