"""bech32m addresses over H(pubkey)[:20] (PROTOCOL §1.2, BIP-350).

Owns: tests of `chain.address`: round trip per network, one clear `AddressError` per mistake
(mistyped character, wrong prefix, old bech32 checksum, bad length or padding), case handling.
Must not: pin specific addresses (tests/vectors/addresses.json does, through test_vectors.py).
"""

from __future__ import annotations

import contextlib

import pytest
from bech32m import codecs
from hypothesis import given
from hypothesis import strategies as st

from chain.address import HRP_BY_NETWORK, AddressError, address_of, decode_address, encode_address
from chain.crypto import SecretKey, account_id
from chain.types import AccountId

ALICE = SecretKey.from_label("alice")
CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"  # the bech32 alphabet
HRPS = sorted(HRP_BY_NETWORK.values())


def _encode(hrp: str, data: bytes, spec: codecs.Encoding = codecs.Encoding.BECH32M) -> str:
    text: str = codecs.bech32_encode(hrp, bytes(codecs.convertbits(data, 8, 5, True)), spec)
    return text


@pytest.mark.parametrize(("network", "hrp"), sorted(HRP_BY_NETWORK.items()))
def test_round_trip_per_network(network: str, hrp: str) -> None:
    text = address_of(ALICE.pubkey, hrp)
    assert text.startswith(hrp + "1")
    assert text == text.lower()
    assert decode_address(text, hrp) == account_id(ALICE.pubkey)
    assert decode_address(text) == account_id(ALICE.pubkey)


@given(st.binary(min_size=20, max_size=20), st.sampled_from(HRPS))
def test_any_account_round_trips(raw: bytes, hrp: str) -> None:
    assert decode_address(encode_address(AccountId(raw), hrp), hrp) == raw


def test_networks_have_distinct_prefixes() -> None:
    assert HRP_BY_NETWORK == {"mainnet": "lc", "testnet": "tlc", "devnet": "rlc"}
    addresses = {address_of(ALICE.pubkey, hrp) for hrp in HRPS}
    assert len(addresses) == 3


@given(st.binary(min_size=20, max_size=20), st.sampled_from(HRPS), st.data())
def test_one_changed_character_fails_the_checksum(raw: bytes, hrp: str, data: st.DataObject) -> None:
    text = encode_address(AccountId(raw), hrp)
    pos = data.draw(st.integers(len(hrp) + 1, len(text) - 1))
    new = data.draw(st.sampled_from([c for c in CHARSET if c != text[pos]]))
    typo = text[:pos] + new + text[pos + 1 :]
    with pytest.raises(AddressError, match="check for a typo"):
        decode_address(typo, hrp)


def test_swapped_adjacent_characters_fail() -> None:
    text = address_of(ALICE.pubkey, "rlc")
    for i in range(4, len(text) - 1):
        if text[i] != text[i + 1]:
            swapped = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
            with pytest.raises(AddressError):
                decode_address(swapped, "rlc")


def test_wrong_prefix_for_the_network() -> None:
    text = address_of(ALICE.pubkey, "lc")
    with pytest.raises(AddressError, match="prefix 'lc', this network uses 'rlc'"):
        decode_address(text, "rlc")


def test_unknown_prefix() -> None:
    with pytest.raises(AddressError, match="unknown prefix 'bc'"):
        decode_address(_encode("bc", account_id(ALICE.pubkey)))


def test_bech32_checksum_is_rejected() -> None:
    old = _encode("lc", account_id(ALICE.pubkey), codecs.Encoding.BECH32)
    with pytest.raises(AddressError, match="old bech32 checksum"):
        decode_address(old)


@pytest.mark.parametrize("length", [0, 19, 21, 32])
def test_wrong_payload_length(length: int) -> None:
    with pytest.raises(AddressError):
        decode_address(_encode("lc", b"\x01" * length), "lc")


def test_upper_case_is_accepted_mixed_case_is_not() -> None:
    text = address_of(ALICE.pubkey, "tlc")
    assert decode_address(text.upper(), "tlc") == account_id(ALICE.pubkey)
    pos = next(i for i, c in enumerate(text) if i > 4 and c.isalpha())
    mixed = text[:pos] + text[pos].upper() + text[pos + 1 :]
    with pytest.raises(AddressError, match="not a valid address"):
        decode_address(mixed, "tlc")


def test_surrounding_whitespace_is_ignored() -> None:
    text = address_of(ALICE.pubkey, "rlc")
    assert decode_address(f"  {text}\n", "rlc") == account_id(ALICE.pubkey)


@pytest.mark.parametrize("text", ["", "rlc1", "rlc", "1qqqq", "rlc1" + "q" * 100, "rlc1\x00abc", "rlc1bio"])
def test_garbage_is_an_address_error(text: str) -> None:
    with pytest.raises(AddressError):
        decode_address(text, "rlc")


@given(st.text(max_size=120))
def test_decode_raises_only_address_error(text: str) -> None:
    with contextlib.suppress(AddressError):
        decode_address(text)


def test_encode_refuses_a_wrong_size_account() -> None:
    with pytest.raises(AddressError, match="20 bytes"):
        encode_address(AccountId(b"\x00" * 19), "lc")
