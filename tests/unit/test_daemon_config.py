"""Unit tests of the layered node configuration (linguachaind.config): precedence and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from chain.errors import ConfigError
from linguachaind.config import CONFIG_FILE, build_config, config_file_text


def _datadir(tmp_path: Path, text: str = "") -> Path:
    d = tmp_path / "dd"
    d.mkdir()
    (d / CONFIG_FILE).write_text('network = "devnet"\n' + text)
    return d


def test_defaults_for_devnet(tmp_path: Path) -> None:
    cfg = build_config({"datadir": str(_datadir(tmp_path))}, {})
    assert cfg.network == "devnet"
    assert cfg.rpc_bind == "127.0.0.1"
    assert cfg.rpc_port == 29332
    assert cfg.validator is True
    assert cfg.allow_test_rpcs is True
    assert cfg.genesis_path == cfg.datadir / "genesis.json"


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    d = _datadir(tmp_path, 'rpc_port = 1111\nlog_level = "WARNING"\ndevice = "cuda"\n')
    env = {"LINGUACHAIN_RPC_PORT": "2222", "LINGUACHAIN_LOG_LEVEL": "DEBUG"}
    cfg = build_config({"datadir": str(d), "rpc_port": 3333}, env)
    assert cfg.rpc_port == 3333  # flag beats env and file
    assert cfg.log_level == "DEBUG"  # env beats file
    assert cfg.device == "cuda"  # file beats default
    cfg2 = build_config({"datadir": str(d)}, env)
    assert cfg2.rpc_port == 2222


def test_env_lists_and_bools(tmp_path: Path) -> None:
    d = _datadir(tmp_path)
    env = {
        "LINGUACHAIN_BOOTSTRAP": "/ip4/127.0.0.1/tcp/1/p2p/QmA, /ip4/127.0.0.1/tcp/2/p2p/QmB",
        "LINGUACHAIN_VALIDATOR": "no",
        "LINGUACHAIN_DEBUG": "p2p=DEBUG",
    }
    cfg = build_config({"datadir": str(d)}, env)
    assert cfg.bootstrap == ("/ip4/127.0.0.1/tcp/1/p2p/QmA", "/ip4/127.0.0.1/tcp/2/p2p/QmB")
    assert cfg.validator is False
    assert cfg.log_debug == "p2p=DEBUG"
    assert cfg.mdns is False  # off unless asked for
    assert build_config({"datadir": str(d)}, {"LINGUACHAIN_MDNS": "on"}).mdns is True
    (tmp_path / "f").mkdir()
    assert build_config({"datadir": str(_datadir(tmp_path / "f", "mdns = true\n"))}, {}).mdns is True


@pytest.mark.parametrize(
    ("text", "env", "flags", "message"),
    [
        ("rpc_prot = 1\n", {}, {}, "unknown setting 'rpc_prot'"),
        ('rpc_port = "x"\n', {}, {}, "expected an integer"),
        ("", {"LINGUACHAIN_RPC_PORT": "http"}, {}, "LINGUACHAIN_RPC_PORT: expected an integer"),
        ("", {}, {"rpc_port": 70000}, "rpc_port must be in 0..65535"),
        ('rpc_user = "a"\n', {}, {}, "set both rpc_user and rpc_password"),
        ("", {}, {"device": "tpu"}, "device must be cpu or cuda"),
        ("", {}, {"bootstrap": ("/ip4/1.2.3.4/tcp/1",)}, "needs a /p2p/<peer id> part"),
        ("", {}, {"listen": ("127.0.0.1:1",)}, "is not a multiaddr"),
        ("", {"LINGUACHAIN_VALIDATOR": "maybe"}, {}, "expected true or false"),
        ('mdns = "sometimes"\n', {}, {}, "expected true or false"),
        ("this is not toml", {}, {}, "is not valid TOML"),
        ("", {"LINGUACHAIN_DEBUG": "p2p"}, {}, "must look like module=LEVEL"),
    ],
)
def test_invalid_settings_have_clear_messages(
    tmp_path: Path, text: str, env: dict[str, str], flags: dict[str, object], message: str
) -> None:
    d = tmp_path / "dd"
    d.mkdir()
    (d / CONFIG_FILE).write_text(text if text.startswith("this") else 'network = "devnet"\n' + text)
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")
    ):
        build_config({"datadir": str(d), **flags}, env)


def test_network_mismatch_and_test_rpcs_only_on_devnet(tmp_path: Path) -> None:
    d = _datadir(tmp_path)
    with pytest.raises(ConfigError, match="is for network 'devnet'"):
        build_config({"datadir": str(d), "network": "testnet"}, {})
    t = tmp_path / "tn"
    t.mkdir()
    (t / CONFIG_FILE).write_text('network = "testnet"\nallow_test_rpcs = true\n')
    with pytest.raises(ConfigError, match=r"allow_test_rpcs \(setmocktime\) is only allowed on devnet"):
        build_config({"datadir": str(t)}, {})


def test_network_read_from_datadir_and_config_file_round_trip(tmp_path: Path) -> None:
    t = tmp_path / "tn"
    t.mkdir()
    (t / CONFIG_FILE).write_text(config_file_text({"network": "testnet", "listen": ("/ip4/0.0.0.0/tcp/5",)}))
    cfg = build_config({"datadir": str(t)}, {})
    assert cfg.network == "testnet"
    assert cfg.listen == ("/ip4/0.0.0.0/tcp/5",)
    assert cfg.validator is False


def test_redacted_hides_the_password(tmp_path: Path) -> None:
    d = _datadir(tmp_path, 'rpc_user = "alice"\nrpc_password = "secret-secret"\n')
    (d / CONFIG_FILE).chmod(0o600)  # a file holding a password must be private (issue 12)
    cfg = build_config({"datadir": str(d)}, {})
    assert cfg.redacted()["rpc_password"] == "***"
    assert "secret-secret" not in repr(cfg.redacted())


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = build_config({"datadir": str(_datadir(tmp_path))}, {})
    with pytest.raises(AttributeError):
        cfg.rpc_port = 1  # type: ignore[misc]


def test_gossip_deadlines_are_settings(tmp_path: Path) -> None:
    """The gossip validation deadline and the unit-blob fetch inside it (issue 15: tests and slow
    machines raise them); the fetch must end before the validation it runs in."""
    d = _datadir(tmp_path, "gossip_validation_timeout_s = 30.0\n")
    cfg = build_config({"datadir": str(d)}, {"LINGUACHAIN_UNIT_BLOB_FETCH_S": "20"})
    assert (cfg.gossip_validation_timeout_s, cfg.unit_blob_fetch_s) == (30.0, 20.0)
    with pytest.raises(ConfigError, match="unit_blob_fetch_s must be above 0 and below"):
        build_config({"datadir": str(d)}, {"LINGUACHAIN_UNIT_BLOB_FETCH_S": "30"})
    with pytest.raises(ConfigError, match="gossip_validation_timeout_s must be in"):
        build_config({"datadir": str(d)}, {"LINGUACHAIN_GOSSIP_VALIDATION_TIMEOUT_S": "nan"})
