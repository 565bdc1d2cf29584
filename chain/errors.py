"""Error codes for expected invalidity, and the exception root for bugs and broken infrastructure.

Owns: `ErrorCode` (PROTOCOL §4.7: every validation failure is a value with a stable number, marked
transient or permanent) and `LinguaChainError`. Must not: import any other project package.

Numbers are stable and never reused. Ranges: 1-19 codec, 20-39 common object checks, 40-69
transactions and state, 70-99 blocks and consensus, 100-119 attestations and evidence, 120-139
mempool, 140-159 network, 160-179 units and learning.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Why an object was rejected. `is_transient` codes never penalise the sender."""

    # -- codec (PROTOCOL §1.1) ------------------------------------------------------------------
    MALFORMED = 1  # not msgpack at all, or truncated
    TOO_LARGE = 2  # over a size limit (whole object, a string, a byte string or an array)
    TRAILING_BYTES = 3
    WRONG_ARITY = 4  # an array with the wrong number of fields
    WRONG_TYPE = 5  # e.g. a map where an array is expected, str where bin is expected
    INT_OUT_OF_RANGE = 6
    UNKNOWN_ENUM = 7
    BAD_LENGTH = 8  # a byte string of the wrong length (hash, key, signature)
    NON_CANONICAL = 9  # re-encoding differs (non-minimal integer, str/bin confusion, ...)
    FLOAT_FORBIDDEN = 10
    BAD_TEXT = 11  # text that is not valid UTF-8 or breaks its pattern

    # -- common object checks -------------------------------------------------------------------
    WRONG_CHAIN = 20
    BAD_VERSION = 21
    BAD_POW = 22
    BAD_SIGNATURE = 23
    BAD_ADDRESS = 24

    # -- transactions and state transition (PROTOCOL §3.1, §3.5) ---------------------------------
    NONCE_TOO_LOW = 40
    NONCE_TOO_HIGH = 41  # transient: earlier nonces may still arrive
    INSUFFICIENT_BALANCE = 42  # transient for the mempool: an incoming payment may fix it
    FEE_TOO_LOW = 43
    ZERO_AMOUNT = 44
    OVERFLOW = 45
    STAKE_TOO_SMALL = 46
    UNKNOWN_STAKE = 47
    UNSTAKE_TOO_LARGE = 48
    DUPLICATE_EVIDENCE = 49
    BAD_EVIDENCE = 50
    VALIDATOR_JAILED = 51
    SELF_TRANSFER = 52
    DUPLICATE_TX = 53
    UNKNOWN_VALIDATOR = 54
    UNBONDING_LIMIT = 55  # a stake record already has 64 unbonding entries (wait for a release)

    # -- blocks and consensus (PROTOCOL §3.2, §4) ------------------------------------------------
    ORPHAN = 70  # transient: the parent is not known yet
    BAD_HEIGHT = 71
    BAD_KIND = 72
    BAD_TIMESTAMP = 73
    FUTURE_BLOCK = 74  # transient: more than max_future_drift_ms ahead of our clock
    BAD_VDF = 75
    BAD_RANK = 76
    NOT_ELIGIBLE = 77
    TOO_EARLY = 78  # the header timestamp is before the proposer's rank time
    BAD_BODY_ROOT = 79
    BAD_STATE_ROOT = 80
    BAD_BODY = 81
    BLOCK_TOO_LARGE = 82
    TOO_MANY_TXS = 83
    INVALID_TX_IN_BLOCK = 84
    ALREADY_KNOWN = 85  # transient: we have it already (not a fault)
    CONFLICTS_WITH_FINAL = 86
    BAD_PARENT = 87  # the parent is known to be invalid
    BAD_GENESIS = 88
    BAD_VRF = 89  # the header's VRF proof or the seed it claims (PROTOCOL §4.2, docs/consensus.md)

    # -- attestations, certificates, evidence (PROTOCOL §4.4, §5.3) ------------------------------
    BAD_CERTIFICATE = 100
    DUPLICATE_SIGNER = 101
    SIGNER_NOT_ELIGIBLE = 102
    BELOW_THRESHOLD = 103
    UNKNOWN_BLOCK = 104  # transient: attestation for a block we do not have yet
    EVIDENCE_NOT_A_FAULT = 105
    STALE = 106  # transient: too old to matter (below the final height)
    EVIDENCE_TOO_OLD = 107  # the fault is more than unbonding_blocks below the state's height
    BAD_SOURCE = 108  # a vote whose signed source is not the one its target's chain proves (§4.4)

    # -- mempool policy --------------------------------------------------------------------------
    POOL_FULL = 120  # transient
    REPLACEMENT_FEE_TOO_LOW = 121  # transient
    SENDER_LIMIT = 122  # transient
    RECENTLY_REJECTED = 123
    EXPIRED = 124  # transient

    # -- network ---------------------------------------------------------------------------------
    GENESIS_MISMATCH = 140
    RATE_LIMITED = 141  # transient
    TIMEOUT = 142  # transient
    BLOB_HASH_MISMATCH = 143
    BAD_MESSAGE = 144
    PROTOCOL_VERSION = 145
    STREAM_CLOSED = 146  # transient: the peer closed or reset the stream (it may have just left)

    # -- data and learning units (PROTOCOL §3.3, §3.4, §6) ---------------------------------------
    BLOB_TOO_LARGE = 160
    BLOB_MISSING = 161  # transient: fetch it first
    BAD_UNIT = 162
    FALSE_SCORE = 163
    BAD_UPDATE_HEADER = 164  # an update blob's safetensors header: length, JSON, offsets, metadata
    UPDATE_WRONG_TENSORS = 165  # a tensor missing, extra or misnamed for the chain's LoRA layout
    UPDATE_WRONG_SHAPE = 166
    UPDATE_WRONG_DTYPE = 167  # not int32 fixed point (PROTOCOL §1.4)
    BLOB_SIZE_MISMATCH = 168  # a unit's blob length differs from the unit's declared byte_size

    @property
    def is_transient(self) -> bool:
        """True if the sender is not provably at fault (the object may be valid later, or an honest
        peer may hold it, as a healed partition's branch), so the sender is never penalised."""
        return self in _TRANSIENT

    @property
    def is_permanent(self) -> bool:
        return self not in _TRANSIENT


_TRANSIENT = frozenset(
    {
        ErrorCode.NONCE_TOO_HIGH,
        ErrorCode.INSUFFICIENT_BALANCE,
        ErrorCode.ORPHAN,
        ErrorCode.FUTURE_BLOCK,
        ErrorCode.ALREADY_KNOWN,
        ErrorCode.UNKNOWN_BLOCK,
        ErrorCode.STALE,
        ErrorCode.POOL_FULL,
        ErrorCode.REPLACEMENT_FEE_TOO_LOW,
        ErrorCode.SENDER_LIMIT,
        ErrorCode.EXPIRED,
        ErrorCode.RATE_LIMITED,
        ErrorCode.TIMEOUT,
        ErrorCode.STREAM_CLOSED,
        ErrorCode.BLOB_MISSING,
        # Not the sender's provable fault: after a partition heals, honest nodes of the side that
        # did not finalise relay their branch; banning them (600 s) delayed convergence in the
        # netns partition runs. The block is still refused, and never adopted.
        ErrorCode.CONFLICTS_WITH_FINAL,
    }
)


class LinguaChainError(Exception):
    """Raised for bugs and broken infrastructure; expected invalidity is an `ErrorCode` instead."""


class InvalidObjectError(LinguaChainError):
    """Raised when a caller insists on a valid object (e.g. `decode_or_raise`) and gets an error code."""

    def __init__(self, code: ErrorCode, what: str = "") -> None:
        self.code = code
        super().__init__(f"{what + ': ' if what else ''}{code.name} ({int(code)})")


class ConfigError(LinguaChainError):
    """Raised when a parameter set, genesis file or node configuration is invalid."""


class StoreError(LinguaChainError):
    """Raised when the block store is unusable (corrupt, newer schema, locked, disk full)."""
