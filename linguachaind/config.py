"""The node configuration: one frozen `NodeConfig` built in layers and validated once (STYLE.md §9).

Owns: defaults per network, reading `linguachain.toml` (stdlib `tomllib`), `LINGUACHAIN_*` environment
variables and command-line flags, in that precedence (ARCHITECTURE.md §5), validation with messages an
operator can act on, and the redacted form printed at start. Must not: hold consensus constants
(those are `ChainParams`, fixed by the genesis), open files other than the config file, or start anything.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from chain.errors import ConfigError

NETWORKS: Final = ("devnet", "testnet", "mainnet")
CONFIG_FILE: Final = "linguachain.toml"
ENV_PREFIX: Final = "LINGUACHAIN_"
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")
DEVICES: Final = ("cpu", "cuda")

# Default ports per network: (p2p, rpc). Several devnet nodes on one host pass their own ports.
DEFAULT_PORTS: Final = {"mainnet": (9333, 9332), "testnet": (19333, 19332), "devnet": (29333, 29332)}
DEFAULT_MAX_REQUEST_BYTES: Final = 8 * 1024 * 1024
MAX_READ_TIMEOUT_S: Final = 3600.0
SECRET_KEYS: Final = ("rpc_password",)  # a config file holding one of these must be private (0600)


def default_datadir(network: str) -> Path:
    return Path.home() / ".linguachain" / network


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything an operator can set. Consensus constants come from the genesis, never from here."""

    network: str
    datadir: Path
    genesis_file: Path | None = None  # None: <datadir>/genesis.json
    listen: tuple[str, ...] = ()  # libp2p multiaddrs
    bootstrap: tuple[str, ...] = ()
    mdns: bool = False  # find peers on the local network by multicast DNS (PROTOCOL §7.1)
    rpc_bind: str = "127.0.0.1"
    rpc_port: int = 29332
    rpc_user: str | None = None
    rpc_password: str | None = None
    rpc_max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    rpc_read_timeout_s: float = 30.0
    validator: bool = True
    timelord: bool = False
    # gossip deadlines (docs/operator-guide.md): the validation of one gossiped message, and within
    # it the fetch of a gossiped unit's blob from its sender; raise both on a slow or loaded machine
    gossip_validation_timeout_s: float = 2.0
    unit_blob_fetch_s: float = 1.5
    checkpoint: str = ""  # weak subjectivity: "HEIGHT:HASH" of a final block this node must have
    # without `checkpoint` and without a final block of its own, a node asks its bootstrap peers
    # (p2p.checkpoint): at least this many of them must agree (capped at the number configured; 0:
    # never ask), waiting up to checkpoint_wait_s for their answers
    checkpoint_peers: int = 2
    checkpoint_wait_s: float = 30.0
    # [training] (docs/learning.md "Training on a node"): with train_data, the node trains on each
    # new final global version and announces a learning unit; the rest tune the worker's job.
    train_data: Path | None = None  # a JSONL file of this node's training examples
    train_steps: int = 30  # optimizer steps per update
    train_batch_size: int = 8
    train_lr: float = 2e-2
    train_threads: int = 0  # torch threads of the worker (0: cores - 1, at least 1)
    train_dp_epsilon: float = 0.0  # > 0: (epsilon, 1e-5)-DP noise on each update; 0: none
    train_adversary: str = ""  # devnet experiments only: sign-flip, scale or noise
    train_key_file: Path | None = None  # signs and pays for learning units; None: the validator key
    device: str = "cpu"
    log_level: str = "INFO"
    log_debug: str = ""  # per-module levels, e.g. "p2p=DEBUG,chain=INFO" (STYLE.md §10)
    log_stderr: bool = True
    allow_test_rpcs: bool = False  # `setmocktime` (the one test RPC); only ever on devnet

    @property
    def genesis_path(self) -> Path:
        return self.genesis_file if self.genesis_file is not None else self.datadir / "genesis.json"

    def redacted(self) -> dict[str, Any]:
        """The config as plain values with secrets masked, for the INFO line at start."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "rpc_password" and value is not None:
                value = "***"
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


# -- the fields and how to parse them from text ------------------------------------------------

_FIELDS: Final = {f.name: f for f in dataclasses.fields(NodeConfig)}
# Keys that may appear in the file and the environment (network and datadir choose the file itself).
_SETTABLE: Final = tuple(k for k in _FIELDS if k not in ("network", "datadir"))


def _parse_bool(text: str, where: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{where}: expected true or false, got {text!r}")


def _coerce(key: str, value: Any, where: str) -> Any:
    """Turn a TOML value or an environment string into the field's type, or raise `ConfigError`."""
    kind = {
        "genesis_file": "path",
        "train_data": "path",
        "train_key_file": "path",
        "train_steps": "int",
        "train_batch_size": "int",
        "train_threads": "int",
        "train_lr": "float",
        "train_dp_epsilon": "float",
        "listen": "list",
        "bootstrap": "list",
        "rpc_port": "int",
        "rpc_max_request_bytes": "int",
        "rpc_read_timeout_s": "float",
        "checkpoint_peers": "int",
        "checkpoint_wait_s": "float",
        "gossip_validation_timeout_s": "float",
        "unit_blob_fetch_s": "float",
        "validator": "bool",
        "timelord": "bool",
        "mdns": "bool",
        "log_stderr": "bool",
        "allow_test_rpcs": "bool",
    }.get(key, "str")
    if kind == "list":
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{where}: expected a list of strings")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return _parse_bool(value, where)
        raise ConfigError(f"{where}: expected true or false")
    if kind == "int":
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        raise ConfigError(f"{where}: expected an integer")
    if kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        raise ConfigError(f"{where}: expected a number")
    if kind == "path":
        if isinstance(value, str) and value:
            return Path(value).expanduser()
        raise ConfigError(f"{where}: expected a path")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string")
    return value


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings of a `linguachain.toml`; unknown keys are errors (a typo must not pass silently)."""
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    _refuse_readable_secrets(path, doc)
    out: dict[str, Any] = {}
    for key, value in _flatten_training(path, doc).items():
        if key == "network":
            if not isinstance(value, str):
                raise ConfigError(f"{path}: network must be a string")
            out[key] = value
            continue
        if key not in _SETTABLE:
            raise ConfigError(f"{path}: unknown setting {key!r} (known: {', '.join(_SETTABLE)})")
        out[key] = _coerce(key, value, f"{path}: {key}")
    return out


def _flatten_training(path: Path, doc: Mapping[str, Any]) -> dict[str, Any]:
    """A `[training]` table's keys become the flat settings: `data` -> `train_data`, `device` stays."""
    out = {k: v for k, v in doc.items() if k != "training"}
    table = doc.get("training")
    if table is None:
        return out
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [training] must be a table")
    for key, value in table.items():
        name = key if key == "device" else f"train_{key}"
        if name in out:
            raise ConfigError(f"{path}: {name} is set both in [training] and at the top level")
        out[name] = value
    return out


def _refuse_readable_secrets(path: Path, doc: Mapping[str, Any]) -> None:
    """A config file that holds a password must not be readable by the group or other users."""
    secrets = [k for k in SECRET_KEYS if k in doc]
    if not secrets:
        return
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(
            f"{path} holds {', '.join(secrets)} but is readable by other users (mode {mode:03o}); "
            f"run: chmod 600 {path}"
        )


def read_environment(env: Mapping[str, str]) -> dict[str, Any]:
    """`LINGUACHAIN_<FIELD>` variables for the known fields (others, like the passphrase, are ignored)."""
    out: dict[str, Any] = {}
    for key in _SETTABLE:
        name = ENV_PREFIX + key.upper()
        if name in env:
            out[key] = _coerce(key, env[name], name)
    if ENV_PREFIX + "DEBUG" in env and "log_debug" not in out:
        out["log_debug"] = env[ENV_PREFIX + "DEBUG"]
    return out


def resolve_network_and_datadir(flags: Mapping[str, Any], env: Mapping[str, str]) -> tuple[str, Path]:
    """Network and datadir come first: the datadir holds the config file. Flags beat environment."""
    network = flags.get("network") or env.get(ENV_PREFIX + "NETWORK") or None
    datadir_raw = flags.get("datadir") or env.get(ENV_PREFIX + "DATADIR") or None
    if network is None and datadir_raw is not None:
        # An initialised datadir knows its own network.
        file_net = read_config_file(Path(datadir_raw).expanduser() / CONFIG_FILE).get("network")
        network = file_net if isinstance(file_net, str) else None
    network = network or "devnet"
    if network not in NETWORKS:
        raise ConfigError(f"unknown network {network!r} (expected one of {', '.join(NETWORKS)})")
    datadir = Path(datadir_raw).expanduser() if datadir_raw else default_datadir(network)
    return network, datadir.absolute()


def defaults_for(network: str, datadir: Path) -> dict[str, Any]:
    p2p_port, rpc_port = DEFAULT_PORTS[network]
    host = "127.0.0.1" if network == "devnet" else "0.0.0.0"
    return {
        "network": network,
        "datadir": datadir,
        "listen": (f"/ip4/{host}/tcp/{p2p_port}",),
        "rpc_port": rpc_port,
        "validator": network == "devnet",
        "allow_test_rpcs": network == "devnet",
    }


def build_config(
    flags: Mapping[str, Any], env: Mapping[str, str] | None = None, *, read_file: bool = True
) -> NodeConfig:
    """defaults < linguachain.toml < LINGUACHAIN_* environment < flags, then `validate`.

    `flags` holds only the options the user gave (None values are ignored)."""
    env = os.environ if env is None else env
    network, datadir = resolve_network_and_datadir(flags, env)
    layers: dict[str, Any] = defaults_for(network, datadir)
    if read_file:
        file_values = read_config_file(datadir / CONFIG_FILE)
        file_net = file_values.pop("network", network)
        if file_net != network:
            raise ConfigError(
                f"{datadir / CONFIG_FILE} is for network {file_net!r}, but {network!r} was asked for"
            )
        layers.update(file_values)
    layers.update(read_environment(env))
    for key, value in flags.items():
        if key in ("network", "datadir") or value is None:
            continue
        if key not in _SETTABLE:
            raise ConfigError(f"unknown option {key!r}")
        layers[key] = _coerce(key, value, f"--{key.replace('_', '-')}") if isinstance(value, str) else value
    config = NodeConfig(**layers)
    validate(config)
    return config


def validate(config: NodeConfig) -> None:
    """Raise `ConfigError` naming the first bad setting and what to do about it."""
    if config.network not in NETWORKS:
        raise ConfigError(f"network must be one of {', '.join(NETWORKS)}")
    if not 0 <= config.rpc_port <= 65535:
        raise ConfigError(f"rpc_port must be in 0..65535 (0: any free port), got {config.rpc_port}")
    if (config.rpc_user is None) != (config.rpc_password is None):
        raise ConfigError("set both rpc_user and rpc_password, or neither (then the cookie file is used)")
    if config.rpc_password is not None and len(config.rpc_password) < 8:
        raise ConfigError("rpc_password must be at least 8 characters")
    if config.rpc_max_request_bytes < 1024:
        raise ConfigError("rpc_max_request_bytes must be at least 1024")
    if not (math.isfinite(config.rpc_read_timeout_s) and 0 < config.rpc_read_timeout_s <= MAX_READ_TIMEOUT_S):
        raise ConfigError(
            f"rpc_read_timeout_s must be a number of seconds in (0, {MAX_READ_TIMEOUT_S:g}], "
            f"got {config.rpc_read_timeout_s!r}"
        )
    _validate_gossip(config)
    if config.device not in DEVICES:
        raise ConfigError(f"device must be cpu or cuda, got {config.device!r}")
    if config.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {config.log_level!r}")
    if config.allow_test_rpcs and config.network != "devnet":
        raise ConfigError("allow_test_rpcs (setmocktime) is only allowed on devnet")
    for addr in (*config.listen, *config.bootstrap):
        if not addr.startswith("/"):
            raise ConfigError(f"{addr!r} is not a multiaddr (expected e.g. /ip4/127.0.0.1/tcp/29333)")
    for addr in config.bootstrap:
        if "/p2p/" not in addr:
            raise ConfigError(f"bootstrap address {addr!r} needs a /p2p/<peer id> part")
    if config.checkpoint:
        parse_checkpoint(config.checkpoint)
    if not 0 <= config.checkpoint_peers <= 64:
        raise ConfigError(
            f"checkpoint_peers must be in 0..64 (0: never ask peers), got {config.checkpoint_peers}"
        )
    if not (math.isfinite(config.checkpoint_wait_s) and 0 < config.checkpoint_wait_s <= MAX_READ_TIMEOUT_S):
        raise ConfigError(f"checkpoint_wait_s must be in (0, {MAX_READ_TIMEOUT_S:g}] seconds")
    _validate_training(config)
    for item in filter(None, (s.strip() for s in config.log_debug.split(","))):
        _, sep, level = item.partition("=")
        if not sep or level.upper() not in LOG_LEVELS:
            raise ConfigError(f"LINGUACHAIN_DEBUG item {item!r} must look like module=LEVEL")


ADVERSARIES: Final = ("sign-flip", "scale", "noise")
MAX_GOSSIP_TIMEOUT_S: Final = 600.0


def _validate_gossip(config: NodeConfig) -> None:
    validation, fetch = config.gossip_validation_timeout_s, config.unit_blob_fetch_s
    if not (math.isfinite(validation) and 0 < validation <= MAX_GOSSIP_TIMEOUT_S):
        raise ConfigError(
            f"gossip_validation_timeout_s must be in (0, {MAX_GOSSIP_TIMEOUT_S:g}], got {validation!r}"
        )
    if not (math.isfinite(fetch) and 0 < fetch < validation):
        raise ConfigError(
            f"unit_blob_fetch_s must be above 0 and below gossip_validation_timeout_s ({validation:g}): "
            f"the fetch runs inside the validation, got {fetch!r}"
        )


def _validate_training(config: NodeConfig) -> None:
    if config.train_data is not None and not config.train_data.is_file():
        raise ConfigError(f"train_data {config.train_data} is not a file (a JSONL file of examples)")
    if config.train_key_file is not None and not config.train_key_file.is_file():
        raise ConfigError(f"train_key_file {config.train_key_file} is not a file (64 hex chars, mode 0600)")
    if not 1 <= config.train_steps <= 100_000:
        raise ConfigError(f"train_steps must be in 1..100000, got {config.train_steps}")
    if not 1 <= config.train_batch_size <= 4096:
        raise ConfigError(f"train_batch_size must be in 1..4096, got {config.train_batch_size}")
    if not (math.isfinite(config.train_lr) and 0 < config.train_lr <= 1):
        raise ConfigError(f"train_lr must be a learning rate in (0, 1], got {config.train_lr!r}")
    if not 0 <= config.train_threads <= 1024:
        raise ConfigError(f"train_threads must be in 0..1024 (0: cores - 1), got {config.train_threads}")
    if not (math.isfinite(config.train_dp_epsilon) and 0 <= config.train_dp_epsilon <= 1000):
        raise ConfigError(f"train_dp_epsilon must be in [0, 1000] (0: no DP), got {config.train_dp_epsilon}")
    if config.train_adversary:
        if config.train_adversary not in ADVERSARIES:
            raise ConfigError(f"train_adversary must be one of {', '.join(ADVERSARIES)}")
        if config.network != "devnet":
            raise ConfigError("train_adversary (a dishonest trainer, for experiments) is devnet only")
        if config.train_data is None:
            raise ConfigError("train_adversary needs train_data (the adversary distorts its own update)")


def parse_checkpoint(text: str) -> tuple[int, bytes]:
    """`HEIGHT:HASH` (decimal height, 64 hex digits) of a weak-subjectivity checkpoint: a final block
    a syncing node must find on its chain (PROTOCOL §5.3), taken from a node or explorer you trust."""
    height, sep, digest = text.strip().partition(":")
    try:
        value = bytes.fromhex(digest)
        number = int(height)
    except ValueError:
        value, number = b"", -1
    if not sep or number < 1 or len(value) != 32:
        raise ConfigError(f"checkpoint {text!r} must look like HEIGHT:HASH (a height >= 1, 64 hex digits)")
    return number, value


def config_file_text(values: Mapping[str, Any]) -> str:
    """A `linguachain.toml` for `init` (written with `tomli_w`)."""
    import tomli_w

    clean = {
        k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
        for k, v in values.items()
    }
    header = (
        "# LinguaChain node configuration. Precedence: defaults < this file < LINGUACHAIN_* env < flags.\n"
    )
    return header + tomli_w.dumps(clean)
