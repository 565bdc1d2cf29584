"""The CLI's encrypted wallet keystore: one file per key, argon2id + XSalsa20-Poly1305 (PyNaCl).

Owns: the file format (`<wallet dir>/<network>/<name>.json`, mode 0600 in a 0700 dir, written
atomically), key derivation (`nacl.pwhash.argon2id.kdf`), sealing with `nacl.secret.SecretBox`, and
unlocking. Private keys never leave this module unencrypted except as a `SecretKey` used to sign
locally; nothing here talks to the daemon. Must not: import click or trio.

File: {"version": 1, "name", "network", "address", "pubkey", "kdf": "argon2id", "opslimit",
"memlimit", "salt", "ciphertext"} (hex fields). The ciphertext is SecretBox(nonce || box) of the
32-byte Ed25519 seed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from chain.address import HRP_BY_NETWORK, address_of
from chain.crypto import SecretKey
from chain.types import PubKey

FORMAT_VERSION: Final = 1
NAME_RE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Interactive limits (64 MiB, about 0.1-0.3 s): a CLI unlock per command must stay quick. An operator
# who wants the sensitive limits sets LINGUACHAIN_KDF=sensitive when creating the key.
KDF_LIMITS: Final = {
    "interactive": (nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE, nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE),
    "moderate": (nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE),
    "sensitive": (nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE, nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE),
}


def _hex_of(doc: dict[str, Any], field: str, size: int) -> str | None:
    value = doc.get(field)
    if not isinstance(value, str) or len(value) != 2 * size:
        return f"{field} must be {size} bytes of hex"
    try:
        bytes.fromhex(value)
    except ValueError:
        return f"{field} is not hex"
    return None


def _damage(doc: dict[str, Any]) -> str | None:
    """What is wrong with a wallet document's fields, or None: checked before any key derivation."""
    for field, size in (
        ("pubkey", 32),
        ("salt", nacl.pwhash.argon2id.SALTBYTES),
        ("ciphertext", nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES + 32),
    ):
        problem = _hex_of(doc, field, size)
        if problem is not None:
            return problem
    ops, mem = doc.get("opslimit"), doc.get("memlimit")
    a = nacl.pwhash.argon2id
    if not (isinstance(ops, int) and not isinstance(ops, bool) and a.OPSLIMIT_MIN <= ops <= a.OPSLIMIT_MAX):
        return "opslimit is not a valid argon2id operations limit"
    if not (
        isinstance(mem, int)
        and not isinstance(mem, bool)
        and a.MEMLIMIT_MIN <= mem <= KDF_LIMITS["sensitive"][1]
    ):
        return "memlimit is not a valid argon2id memory limit (at most the 'sensitive' 1 GiB)"
    if not isinstance(doc.get("name"), str) or not isinstance(doc.get("address"), str):
        return "name and address must be strings"
    return None


class KeystoreError(Exception):
    """Raised for a missing, duplicate, unreadable or wrongly unlocked wallet key."""


@dataclass(frozen=True, slots=True)
class WalletEntry:
    name: str
    network: str
    address: str
    pubkey: PubKey
    path: Path


def default_wallet_dir() -> Path:
    env = os.environ.get("LINGUACHAIN_WALLET_DIR")
    return Path(env).expanduser() if env else Path.home() / ".linguachain" / "wallets"


class Keystore:
    def __init__(self, root: Path, network: str) -> None:
        if network not in HRP_BY_NETWORK:
            raise KeystoreError(f"unknown network {network!r}")
        self.root = root
        self.network = network
        self.dir = root / network
        self.hrp = HRP_BY_NETWORK[network]

    def _path(self, name: str) -> Path:
        if not NAME_RE.match(name):
            raise KeystoreError(f"invalid wallet name {name!r} (letters, digits, '_', '.', '-'; at most 64)")
        return self.dir / f"{name}.json"

    def _write(self, path: Path, doc: dict[str, Any]) -> None:
        """Write a new wallet file atomically; never replaces one (two concurrent creates: one wins).

        The temp file has a random name, is created with O_EXCL and fchmod'ed 0600 before a byte is
        written: a leftover file cannot lend its mode to the wallet. `os.link` publishes it only if
        no file of that name exists, atomically."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, (json.dumps(doc, indent=2) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.link(tmp, path)
        except FileExistsError:
            raise KeystoreError(f"a wallet named {doc['name']!r} already exists in {self.dir}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def add(self, name: str, key: SecretKey, passphrase: str, *, kdf: str = "interactive") -> WalletEntry:
        path = self._path(name)
        if not passphrase:
            raise KeystoreError(
                "an empty passphrase is not allowed (is LINGUACHAIN_PASSPHRASE set but empty?)"
            )
        if path.exists():
            raise KeystoreError(f"a wallet named {name!r} already exists in {self.dir}")
        if kdf not in KDF_LIMITS:
            raise KeystoreError(f"unknown kdf strength {kdf!r} (interactive, moderate, sensitive)")
        opslimit, memlimit = KDF_LIMITS[kdf]
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        box = nacl.secret.SecretBox(
            nacl.pwhash.argon2id.kdf(
                nacl.secret.SecretBox.KEY_SIZE, passphrase.encode(), salt, opslimit, memlimit
            )
        )
        sealed = bytes(box.encrypt(key.seed))
        address = address_of(key.pubkey, self.hrp)
        doc = {
            "version": FORMAT_VERSION,
            "name": name,
            "network": self.network,
            "address": address,
            "pubkey": key.pubkey.hex(),
            "kdf": "argon2id",
            "opslimit": opslimit,
            "memlimit": memlimit,
            "salt": salt.hex(),
            "ciphertext": sealed.hex(),
        }
        self._write(path, doc)
        return WalletEntry(name, self.network, address, key.pubkey, path)

    def _load(self, name: str) -> dict[str, Any]:
        path = self._path(name)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise KeystoreError(
                f"no wallet named {name!r} on {self.network} (see `linguachain-cli wallet list`)"
            ) from None
        except (OSError, json.JSONDecodeError) as exc:
            raise KeystoreError(f"cannot read wallet {path}: {exc}") from None
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION or doc.get("kdf") != "argon2id":
            raise KeystoreError(f"{path} is not a version-{FORMAT_VERSION} LinguaChain wallet file")
        problem = _damage(doc)
        if problem is not None:
            raise KeystoreError(f"wallet file {path} is damaged: {problem}")
        return doc

    def get(self, name: str) -> WalletEntry:
        doc = self._load(name)
        pubkey = PubKey(bytes.fromhex(doc["pubkey"]))
        return WalletEntry(name, self.network, address_of(pubkey, self.hrp), pubkey, self._path(name))

    def list(self) -> list[WalletEntry]:
        if not self.dir.is_dir():
            return []
        out = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                out.append(self.get(path.stem))
            except (KeystoreError, KeyError, ValueError):
                continue
        return out

    def unlock(self, name: str, passphrase: str) -> SecretKey:
        """The signing key of wallet `name`; `KeystoreError` for a wrong passphrase or a damaged file.

        Every field is checked before the key derivation (`_damage`), so a damaged file says so; a
        ciphertext altered in place cannot be told from a wrong passphrase (the MAC fails either way),
        and the message names both."""
        if not passphrase:
            raise KeystoreError(
                "an empty passphrase is not allowed (is LINGUACHAIN_PASSPHRASE set but empty?)"
            )
        doc = self._load(name)
        key_bytes = nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE,
            passphrase.encode(),
            bytes.fromhex(doc["salt"]),
            doc["opslimit"],
            doc["memlimit"],
        )
        try:
            seed = nacl.secret.SecretBox(key_bytes).decrypt(bytes.fromhex(doc["ciphertext"]))
        except nacl.exceptions.CryptoError:
            raise KeystoreError(
                f"wrong passphrase for wallet {name!r} (or its ciphertext was altered)"
            ) from None
        key = SecretKey(seed)
        if key.pubkey.hex() != doc["pubkey"]:
            raise KeystoreError(f"wallet {name!r} is damaged: its key does not match its public key")
        return key
