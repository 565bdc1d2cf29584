"""bech32m addresses (BIP-350) over H(pubkey)[:20] (PROTOCOL §1.2).

Owns: human-readable parts per network, `encode_address`, `decode_address` with one clear error per
kind of mistake. Uses the maintained `bech32m` package (the BIP-350 reference code).
Must not: touch keys beyond hashing a public key.
"""

from __future__ import annotations

from typing import Final

from bech32m import codecs

from chain.crypto import account_id
from chain.errors import LinguaChainError
from chain.types import ACCOUNT_ID_LEN, AccountId, PubKey

HRP_BY_NETWORK: Final = {"mainnet": "lc", "testnet": "tlc", "devnet": "rlc"}


class AddressError(LinguaChainError):
    """Raised when a text is not a valid address for the expected network."""


def encode_address(account: AccountId, hrp: str) -> str:
    if len(account) != ACCOUNT_ID_LEN:
        raise AddressError(f"an account id is {ACCOUNT_ID_LEN} bytes, got {len(account)}")
    data = bytes(codecs.convertbits(account, 8, 5, True))
    text: str = codecs.bech32_encode(hrp, data, codecs.Encoding.BECH32M)
    return text


def address_of(pubkey: PubKey, hrp: str) -> str:
    return encode_address(account_id(pubkey), hrp)


def decode_address(text: str, hrp: str | None = None) -> AccountId:
    """The account id of `text`; raises `AddressError` with a message a user can act on."""
    text = text.strip()
    try:
        got_hrp, data, spec = codecs.bech32_decode(text)
    except codecs.DecodeError:
        raise AddressError(
            f"{text!r} is not a valid address (bad checksum, character or length: check for a typo)"
        ) from None
    if spec is not codecs.Encoding.BECH32M:
        raise AddressError(f"{text!r} uses the old bech32 checksum; LinguaChain addresses use bech32m")
    if hrp is not None and got_hrp != hrp:
        raise AddressError(f"{text!r} is an address for prefix {got_hrp!r}, this network uses {hrp!r}")
    if got_hrp not in HRP_BY_NETWORK.values():
        raise AddressError(f"{text!r} has unknown prefix {got_hrp!r} (expected lc, tlc or rlc)")
    try:
        raw = bytes(codecs.convertbits(data, 5, 8, False))
    except codecs.DecodeError:
        raise AddressError(f"{text!r} has invalid padding") from None
    if len(raw) != ACCOUNT_ID_LEN:
        raise AddressError(f"{text!r} holds {len(raw)} bytes, an address holds {ACCOUNT_ID_LEN}")
    return AccountId(raw)
