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

import json
import os
import re
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
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (json.dumps(doc, indent=2) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def add(self, name: str, key: SecretKey, passphrase: str, *, kdf: str = "interactive") -> WalletEntry:
        path = self._path(name)
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
        """The signing key of wallet `name`; `KeystoreError` for a wrong passphrase."""
        doc = self._load(name)
        try:
            salt = bytes.fromhex(doc["salt"])
            sealed = bytes.fromhex(doc["ciphertext"])
            key_bytes = nacl.pwhash.argon2id.kdf(
                nacl.secret.SecretBox.KEY_SIZE,
                passphrase.encode(),
                salt,
                int(doc["opslimit"]),
                int(doc["memlimit"]),
            )
            seed = nacl.secret.SecretBox(key_bytes).decrypt(sealed)
        except nacl.exceptions.CryptoError:
            raise KeystoreError(f"wrong passphrase for wallet {name!r}") from None
        except (KeyError, ValueError) as exc:
            raise KeystoreError(f"wallet {name!r} is damaged: {exc}") from None
        key = SecretKey(seed)
        if key.pubkey.hex() != doc["pubkey"]:
            raise KeystoreError(f"wallet {name!r} is damaged: its key does not match its public key")
        return key
