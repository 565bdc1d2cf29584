"""The datadir on disk (ARCHITECTURE.md §5): layout, the process lock, hot keys and the RPC cookie.

Owns: path names inside a datadir, `DatadirLock` (`fcntl.flock` on `<datadir>/.lock`), atomic private
file writes (O_EXCL temp + fchmod + fsync + rename, mode 0600 in a 0700 dir), the datadir's own mode
(0700, tightened with a warning), the p2p and validator key files (mode checked on load), the
cookie. Must not: open stores or sockets, or hold wallet keys (those live in the CLI's keystore).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

from chain.crypto import SecretKey
from chain.errors import ConfigError, LinguaChainError

log = logging.getLogger(__name__)

COOKIE_USER: Final = "__cookie__"


class DatadirLockedError(LinguaChainError):
    """Raised when another linguachaind already runs on this datadir."""


@dataclass(frozen=True, slots=True)
class Layout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "linguachain.toml"

    @property
    def genesis(self) -> Path:
        return self.root / "genesis.json"

    @property
    def chain(self) -> Path:
        return self.root / "chain"

    @property
    def mempool(self) -> Path:
        return self.root / "mempool"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def p2p_key(self) -> Path:
        return self.keys / "p2p.key"

    @property
    def validator_key(self) -> Path:
        return self.keys / "validator.key"

    @property
    def cookie(self) -> Path:
        return self.root / ".cookie"

    @property
    def rpc_port_file(self) -> Path:
        """The port the RPC server listens on, written at start so the CLI finds it (`--datadir`)."""
        return self.root / ".rpcport"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def pid(self) -> Path:
        return self.root / "linguachaind.pid"

    @property
    def debug_log(self) -> Path:
        return self.root / "debug.log"

    @property
    def slashing_protection(self) -> Path:
        return self.root / "slashing_protection"


def write_private(path: Path, data: bytes, *, mode: int = 0o600, exclusive: bool = False) -> None:
    """Write `data` atomically: temp file + fsync + rename + fsync of the directory.

    The temp file has a random name and is created with `O_EXCL` and `fchmod`ed to `mode` before a
    byte is written: a leftover or planted file is never reused, so it cannot lend its mode (or its
    owner) to the result. `exclusive`: fail with FileExistsError instead of replacing an existing
    `path` (`os.link` is atomic: of two concurrent writers exactly one wins).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.fchmod(fd, mode)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            os.link(tmp, path)  # FileExistsError if another writer got there first
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def ensure_private_dir(path: Path) -> None:
    """`path` exists with mode 0700: created so, or tightened (with a warning) if others could enter it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("%s was accessible to other users (mode %03o); set to 0700", path, mode)
        os.chmod(path, 0o700)


def ensure_dirs(layout: Layout) -> None:
    ensure_private_dir(layout.root)
    ensure_private_dir(layout.keys)


def _read_seed(path: Path) -> bytes:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
    text = path.read_text().strip()
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{path} does not hold a hex key") from None
    if len(seed) != 32:
        raise ConfigError(f"{path} must hold a 32-byte key (64 hex characters)")
    return seed


def load_or_create_seed(path: Path, *, seed: bytes | None = None) -> bytes:
    """The 32-byte key seed stored as hex in `path`, created (random or `seed`) if missing."""
    if path.exists():
        return _read_seed(path)
    new = seed if seed is not None else secrets.token_bytes(32)
    write_private(path, new.hex().encode() + b"\n")
    log.info("created key file %s", path)
    return new


def load_validator_key(layout: Layout) -> SecretKey:
    return SecretKey(load_or_create_seed(layout.validator_key))


def write_cookie(layout: Layout) -> str:
    """A fresh `__cookie__:<hex>` at every start (mode 0600); returns the password part."""
    password = secrets.token_hex(32)
    write_private(layout.cookie, f"{COOKIE_USER}:{password}".encode())
    return password


def remove_cookie(layout: Layout) -> None:
    with contextlib.suppress(FileNotFoundError):
        layout.cookie.unlink()


class DatadirLock:
    """An exclusive `flock` on `<datadir>/.lock`, held for the daemon's lifetime.

    The kernel drops it when the process dies (SIGKILL included), so a stale lock never blocks a restart.
    """

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._fd: int | None = None

    def acquire(self) -> None:
        self._layout.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._layout.lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise DatadirLockedError(
                f"datadir {self._layout.root} is in use by another linguachaind{who}; "
                "stop it first or choose another --datadir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DatadirLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
