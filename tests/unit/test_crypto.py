"""Ed25519 signatures with domain separation, hashing and account ids (PROTOCOL §1.2).

Owns: tests of `chain.crypto`, `chain.hashing` and `chain.signed`: valid signatures verify, any other
key, chain id, domain or message does not, `verify` never raises on garbage, PoW helpers agree.
Must not: test object encodings (test_codec_*.py and test_vectors.py do).
"""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.crypto import (
    DOMAIN_ATTEST,
    DOMAIN_HEADER,
    DOMAIN_TX,
    DOMAIN_UNIT,
    DOMAIN_VDF,
    SecretKey,
    account_id,
    is_valid_pubkey,
    signing_digest,
    verify,
)
from chain.hashing import EMPTY_ROOT, H, H_many, leading_zero_bits, merkle_root
from chain.header import Attestation
from chain.signed import pow_digest, pow_ok, solve_pow, unsigned_bytes
from chain.tx import Transfer, make_tx
from chain.types import AccountId, Amount, BlockHash, ChainId, Height, PubKey, Signature
from tests.support import strategies as S

ALICE = SecretKey.from_label("alice")
BOB = SecretKey.from_label("bob")
DOMAINS = (DOMAIN_TX, DOMAIN_HEADER, DOMAIN_ATTEST, DOMAIN_UNIT, DOMAIN_VDF)
CHAINS = (ChainId("lc-devnet"), ChainId("lc-testnet-1"), ChainId("lc-mainnet"))
MSG = b"\x93\x01\x02\x03"


def test_signature_verifies_with_its_key_domain_chain_and_message() -> None:
    sig = ALICE.sign(DOMAIN_TX, CHAINS[0], MSG)
    assert len(sig) == 64
    assert verify(ALICE.pubkey, sig, DOMAIN_TX, CHAINS[0], MSG)


def test_signatures_are_deterministic() -> None:
    assert ALICE.sign(DOMAIN_TX, CHAINS[0], MSG) == ALICE.sign(DOMAIN_TX, CHAINS[0], MSG)
    assert SecretKey.from_label("alice").pubkey == ALICE.pubkey
    assert ALICE.pubkey != BOB.pubkey


def test_signature_is_invalid_with_another_key() -> None:
    sig = ALICE.sign(DOMAIN_TX, CHAINS[0], MSG)
    assert not verify(BOB.pubkey, sig, DOMAIN_TX, CHAINS[0], MSG)


@pytest.mark.parametrize(("domain", "other"), list(itertools.permutations(DOMAINS, 2)))
def test_signature_for_one_domain_is_never_valid_for_another(domain: bytes, other: bytes) -> None:
    sig = ALICE.sign(domain, CHAINS[0], MSG)
    assert not verify(ALICE.pubkey, sig, other, CHAINS[0], MSG)


@pytest.mark.parametrize(("chain", "other"), list(itertools.permutations(CHAINS, 2)))
def test_signature_on_one_chain_is_never_valid_on_another(chain: ChainId, other: ChainId) -> None:
    sig = ALICE.sign(DOMAIN_TX, chain, MSG)
    assert not verify(ALICE.pubkey, sig, DOMAIN_TX, other, MSG)


def test_chain_id_cannot_run_into_the_encoding() -> None:
    # without the length prefix, ("lc-a", b"b...") and ("lc-ab", b"...") would hash the same bytes
    assert signing_digest(DOMAIN_TX, ChainId("lc-a"), b"b" + MSG) != signing_digest(
        DOMAIN_TX, ChainId("lc-ab"), MSG
    )
    sig = ALICE.sign(DOMAIN_TX, ChainId("lc-a"), b"b" + MSG)
    assert not verify(ALICE.pubkey, sig, DOMAIN_TX, ChainId("lc-ab"), MSG)


def test_signing_digest_matches_protocol_definition() -> None:
    # PROTOCOL §1.2 (with crypto.py's length byte): H(domain || len(chain_id) || chain_id || encoding)
    expected = hashlib.blake2b(DOMAIN_TX + b"\x09lc-devnet" + MSG, digest_size=32).digest()
    assert signing_digest(DOMAIN_TX, CHAINS[0], MSG) == expected


@given(S.signed_txs(), st.sampled_from(CHAINS), st.sampled_from(DOMAINS))
def test_signed_tx_is_valid_only_for_its_chain_and_the_tx_domain(
    tx: object, chain: ChainId, domain: bytes
) -> None:
    from chain.tx import Tx

    assert isinstance(tx, Tx)
    assert tx.signature_valid()
    valid_here = chain == tx.chain_id and domain == DOMAIN_TX
    assert verify(tx.sender, tx.signature, domain, chain, unsigned_bytes(tx)) is valid_here


def test_any_change_to_a_signed_object_breaks_its_signature() -> None:
    tx = make_tx(ALICE, CHAINS[0], 0, 1_000, Transfer(AccountId(b"\x01" * 20), Amount(5)))
    assert tx.signature_valid()
    import dataclasses

    for change in (
        {"nonce": 1},
        {"fee": 1_001},
        {"chain_id": CHAINS[1]},
        {"payload": Transfer(AccountId(b"\x01" * 20), Amount(6))},
        {"sender": BOB.pubkey},
    ):
        assert not dataclasses.replace(tx, **change).signature_valid(), change
    att = Attestation(
        CHAINS[0],
        Height(3),
        BlockHash(b"\x07" * 32),
        Height(0),
        BlockHash(bytes(32)),
        ALICE.pubkey,
    ).signed(ALICE)
    assert att.signature_valid()
    assert not dataclasses.replace(att, height=Height(4)).signature_valid()


def test_signing_with_the_wrong_key_is_refused() -> None:
    tx = make_tx(ALICE, CHAINS[0], 0, 1_000, Transfer(AccountId(b"\x01" * 20), Amount(5)))
    with pytest.raises(ValueError, match="sender"):
        tx.signed(BOB)


@given(
    pubkey=st.binary(max_size=40),
    signature=st.binary(max_size=70),
    domain=st.binary(max_size=20),
    chain_id=st.text(max_size=300),
    message=st.binary(max_size=100),
)
def test_verify_never_raises_on_garbage(
    pubkey: bytes, signature: bytes, domain: bytes, chain_id: str, message: bytes
) -> None:
    assert verify(PubKey(pubkey), Signature(signature), domain, ChainId(chain_id), message) is False


@pytest.mark.parametrize(
    "pubkey",
    [
        b"\x00" * 32,  # small-order point
        b"\x01" + b"\x00" * 31,  # the identity
        b"\xff" * 32,  # not on the curve
        b"\xec" + b"\xff" * 30 + b"\x7f",  # non-canonical y
    ],
)
def test_verify_rejects_weak_and_invalid_keys(pubkey: bytes) -> None:
    assert not is_valid_pubkey(pubkey)
    assert not verify(PubKey(pubkey), Signature(b"\x00" * 64), DOMAIN_TX, CHAINS[0], MSG)
    assert not verify(PubKey(pubkey), ALICE.sign(DOMAIN_TX, CHAINS[0], MSG), DOMAIN_TX, CHAINS[0], MSG)


def test_secret_key_does_not_leak_in_repr_and_checks_seed_length() -> None:
    assert ALICE.seed.hex() not in repr(ALICE)
    with pytest.raises(ValueError, match="32 bytes"):
        SecretKey(b"\x00" * 31)
    assert SecretKey(ALICE.seed).pubkey == ALICE.pubkey


def test_account_id_is_the_first_20_bytes_of_the_pubkey_hash() -> None:
    assert account_id(ALICE.pubkey) == hashlib.blake2b(ALICE.pubkey, digest_size=32).digest()[:20]
    assert len(account_id(ALICE.pubkey)) == 20


def test_hash_is_blake2b_256() -> None:
    assert H(b"abc") == hashlib.blake2b(b"abc", digest_size=32).digest()
    assert H_many(b"a", b"bc") == H(b"abc")


def test_merkle_root_commits_to_order_and_count() -> None:
    a, b, c = b"a", b"b", b"c"
    assert merkle_root([]) == EMPTY_ROOT
    roots = {merkle_root(x) for x in ([a], [a, b], [b, a], [a, b, c], [a, b, c, c], [a, a])}
    assert len(roots) == 6  # duplicated last leaf (CVE-2012-2459) gives a different root
    assert merkle_root([a]) != H(a)


def test_pow_helpers_agree() -> None:
    pre = b"preimage"
    nonce = solve_pow(pre, 8)
    assert pow_ok(pre, nonce, 8)
    assert leading_zero_bits(pow_digest(pre, nonce)) >= 8
    assert all(not pow_ok(pre, n, 8) for n in range(nonce))
    assert pow_ok(pre, 12345, 0)
    assert leading_zero_bits(b"\x00\x80") == 8
    assert leading_zero_bits(b"\x00\x00") == 16


@given(signature=st.binary(min_size=64, max_size=64), chain_id=st.text(max_size=300), message=st.binary())
def test_verify_never_raises_with_a_real_key_and_garbage_rest(
    signature: bytes, chain_id: str, message: bytes
) -> None:
    assert verify(ALICE.pubkey, Signature(signature), DOMAIN_TX, ChainId(chain_id), message) is False


def test_verify_is_false_for_an_overlong_chain_id_or_non_bytes() -> None:
    sig = ALICE.sign(DOMAIN_TX, CHAINS[0], MSG)
    assert verify(ALICE.pubkey, sig, DOMAIN_TX, ChainId("x" * 300), MSG) is False
    assert verify("not bytes" * 4, sig, DOMAIN_TX, CHAINS[0], MSG) is False  # type: ignore[arg-type]
    assert verify(ALICE.pubkey, sig, DOMAIN_TX, CHAINS[0], "text") is False  # type: ignore[arg-type]
    assert verify(ALICE.pubkey, sig, "domain", CHAINS[0], MSG) is False  # type: ignore[arg-type]


ED25519_L = 2**252 + 27742317777372353535851937790883648493  # order of the base point


def test_malleated_signature_is_rejected_so_tx_ids_are_not_malleable() -> None:
    # (R, S + L) verifies under a lax verifier; libsodium requires S < L, so the tx id (which covers
    # the signature) cannot be changed by a third party.
    sig = ALICE.sign(DOMAIN_TX, CHAINS[0], MSG)
    s = int.from_bytes(sig[32:], "little")
    malleated = Signature(sig[:32] + (s + ED25519_L).to_bytes(32, "little"))
    assert malleated != sig
    assert not verify(ALICE.pubkey, malleated, DOMAIN_TX, CHAINS[0], MSG)


def test_real_keys_are_valid_pubkeys() -> None:
    assert is_valid_pubkey(ALICE.pubkey)
    assert is_valid_pubkey(BOB.pubkey)
    assert not is_valid_pubkey(ALICE.pubkey[:31])
    assert not is_valid_pubkey("x" * 32)  # type: ignore[arg-type]
