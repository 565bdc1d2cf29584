"""The training worker's wire protocol: versioned, size-limited msgpack frames with a job id.

Owns: every message between the daemon's supervisor and `python -m training.worker` (requests,
progress events, results, errors), their numeric kinds, and the frame format. Must not: import torch,
trio or the daemon; do I/O beyond splitting bytes into frames (the worker reads a pipe synchronously,
the supervisor through trio; both use `FrameBuffer`).

Frame: a 4-byte big-endian length, then msgpack `[PROTOCOL_VERSION, kind, job_id, body]` where `body`
is the message dataclass as a canonical chain.codec array (PROTOCOL §1.1: no floats, explicit
limits). Real numbers travel in fixed point like everywhere on the chain: `_micro` is x 10^6,
`_milli` x 10^3, `_nano` x 10^9. Job id 0 is the worker's own (`Ready`); the parent numbers its jobs
from 1, and every event and reply carries the id of the job it belongs to.

Handshake: the worker loads the base model, then sends `Ready` (protocol version, model id = the
base's weights hash, device, dtype, threads, and the LoRA layout it applied); the parent checks the
version and model id before sending any job. `Cancel` carries the id of the job to stop; the worker
stops it between two steps and answers that job with `JobError(CANCELLED)`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, Final, TypeAlias

from chain import codec
from chain.codec import U8, U16, U32, U64, MaxItems, TextLen
from chain.errors import ErrorCode
from chain.params import AggregationScheme
from chain.types import Hash32, Micro

PROTOCOL_VERSION: Final = 1
MAX_FRAME_BYTES: Final = 1 << 20
_LEN: Final = struct.Struct(">I")

Path_ = Annotated[str, TextLen(4096)]
Name = Annotated[str, TextLen(256)]
Text = Annotated[str, TextLen(64 * 1024)]


class Kind(IntEnum):
    """Message kinds: stable numbers, never reused. 1-31 requests, 32-63 worker messages."""

    TRAIN = 1
    EVALUATE = 2
    GENERATE = 3
    EXPORT = 4
    CANCEL = 5
    SHUTDOWN = 6
    READY = 32
    PROGRESS = 33
    TRAIN_RESULT = 34
    EVALUATE_RESULT = 35
    GENERATE_RESULT = 36
    EXPORT_RESULT = 37
    JOB_ERROR = 38


class JobErrorCode(IntEnum):
    """Why a job failed (`JobError.code`)."""

    BAD_REQUEST = 1  # a malformed frame or impossible parameters
    BAD_DATA = 2  # the JSONL file (the message names file and line)
    BAD_ADAPTER = 3  # the global adapter blob fails check_update_blob or cannot be read
    CANCELLED = 4
    UNSUPPORTED = 5  # e.g. 4-bit quantisation without CUDA
    BUSY = 6  # a second job while one runs
    INTERNAL = 7  # a bug or broken infrastructure in the worker (the message says what)
    WORKER_DIED = 8  # set by the supervisor: the worker process exited mid-job
    MODEL_MISMATCH = 9  # the base model's weights hash is not the pinned one


# -- shared values -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """One adapted linear module: name and shape (chain.lora.LoraModule on the wire)."""

    name: Name
    in_features: U32
    out_features: U32


# -- requests (parent -> worker) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Train:
    """Train from the global adapter (`adapter_path`, "" = version 0) on a JSONL file; write the
    clipped (and with `dp_noise_milli > 0`, noised) update blob to `out_path`."""

    data_path: Path_
    adapter_path: Path_
    out_path: Path_
    steps: U32  # optimizer steps; 0 = `epochs` passes over the data
    epochs: U16
    batch_size: U16
    lr_nano: U64
    seed: U64
    clip_norm_micro: U64
    dp_noise_milli: U32  # noise multiplier sigma x 1000 (std = sigma * clip_norm); 0 = no DP
    dp_delta_nano: U64  # the delta of (epsilon, delta)-DP, x 10^9


@dataclass(frozen=True, slots=True)
class Evaluate:
    """Per-example mean token loss of base + adapter on a JSONL file, in `n_batches` contiguous
    batches of examples in file order (PROTOCOL §6.5)."""

    data_path: Path_
    adapter_path: Path_
    n_batches: U16
    batch_size: U16  # examples per forward pass (memory only: results do not depend on it)


@dataclass(frozen=True, slots=True)
class Generate:
    """Text after `prompt` with base + adapter: greedy when `temperature_milli` is 0."""

    prompt: Text
    adapter_path: Path_
    max_new_tokens: U16
    temperature_milli: U32
    seed: U64


@dataclass(frozen=True, slots=True)
class Export:
    """A PEFT adapter directory at `out_dir` (and with `merged`, a full model in `out_dir/merged`)."""

    adapter_path: Path_
    out_dir: Path_
    merged: bool


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop the job whose id the frame carries, between two steps."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Finish nothing more and exit 0 (a graceful stop)."""


# -- worker messages (worker -> parent) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    protocol_version: U16
    model_id: Hash32  # training.base_model.weights_hash of the loaded base
    model_dir: Path_
    device: Name  # "cpu", "cuda:0 (NVIDIA H100 ...)"
    dtype: Name  # "float32", "bfloat16", "4bit"
    threads: U16
    rank: U16
    alpha: U16
    scheme: AggregationScheme
    fp_shift: U8
    modules: Annotated[tuple[ModuleInfo, ...], MaxItems(4096)]


@dataclass(frozen=True, slots=True)
class Progress:
    step: U32
    total_steps: U32
    loss_micro: Micro
    tokens_per_s_milli: U64


@dataclass(frozen=True, slots=True)
class TrainResult:
    blob_hash: Hash32  # H(blob), the learning unit's adapter_blob_hash
    byte_size: U64
    n_examples: U32
    steps: U32
    tokens: U64
    train_loss_micro: Micro  # mean loss over the training steps
    update_norm_micro: U64  # L2 norm of the encoded update (after clipping and noise)
    dp_epsilon_micro: U64  # 0 = no DP
    tokens_per_s_milli: U64


@dataclass(frozen=True, slots=True)
class EvaluateResult:
    batch_losses_micro: Annotated[tuple[Micro, ...], MaxItems(65535)]
    n_examples: U32
    n_tokens: U64
    n_pairs: U32  # prompt/completion examples
    n_exact: U32  # of those, exactly matched by greedy decoding
    tokens_per_s_milli: U64


@dataclass(frozen=True, slots=True)
class GenerateResult:
    text: Text
    n_tokens: U32


@dataclass(frozen=True, slots=True)
class ExportResult:
    adapter_dir: Path_
    merged_dir: Path_  # "" unless merged


@dataclass(frozen=True, slots=True)
class JobError:
    code: JobErrorCode
    message: Text


Request: TypeAlias = Train | Evaluate | Generate | Export | Cancel | Shutdown
Reply: TypeAlias = TrainResult | EvaluateResult | GenerateResult | ExportResult | JobError
WorkerMessage: TypeAlias = Ready | Progress | Reply
Message: TypeAlias = Request | WorkerMessage

KINDS: Final[dict[Kind, type[Any]]] = {
    Kind.TRAIN: Train,
    Kind.EVALUATE: Evaluate,
    Kind.GENERATE: Generate,
    Kind.EXPORT: Export,
    Kind.CANCEL: Cancel,
    Kind.SHUTDOWN: Shutdown,
    Kind.READY: Ready,
    Kind.PROGRESS: Progress,
    Kind.TRAIN_RESULT: TrainResult,
    Kind.EVALUATE_RESULT: EvaluateResult,
    Kind.GENERATE_RESULT: GenerateResult,
    Kind.EXPORT_RESULT: ExportResult,
    Kind.JOB_ERROR: JobError,
}
_KIND_OF: Final = {cls: kind for kind, cls in KINDS.items()}
REQUEST_KINDS: Final = frozenset(k for k in Kind if k < 32)


@dataclass(frozen=True, slots=True)
class Frame:
    job_id: int
    message: Message

    @property
    def kind(self) -> Kind:
        return _KIND_OF[type(self.message)]


# -- frames --------------------------------------------------------------------------------------


def encode_frame(job_id: int, message: Message) -> bytes:
    """Length prefix + msgpack body. Raises `ValueError` if the frame is over `MAX_FRAME_BYTES`."""
    payload = codec.pack([PROTOCOL_VERSION, int(_KIND_OF[type(message)]), job_id, codec.to_plain(message)])
    if len(payload) > MAX_FRAME_BYTES:
        raise ValueError(f"a {type(message).__name__} frame of {len(payload)} bytes is over the limit")
    return _LEN.pack(len(payload)) + payload


def decode_frame(payload: bytes) -> Frame | ErrorCode:
    """One frame's body (without its length prefix), checked; never raises."""
    plain = codec.unpack(payload, max_bytes=MAX_FRAME_BYTES)
    if isinstance(plain, ErrorCode):
        return plain
    if not isinstance(plain, list) or len(plain) != 4:
        return ErrorCode.WRONG_ARITY
    version, kind, job_id, body = plain
    if version != PROTOCOL_VERSION:
        return ErrorCode.PROTOCOL_VERSION
    if type(kind) is not int or kind not in Kind._value2member_map_:
        return ErrorCode.UNKNOWN_ENUM
    if type(job_id) is not int or not 0 <= job_id < 2**63:
        return ErrorCode.INT_OUT_OF_RANGE
    message = codec.from_plain(KINDS[Kind(kind)], body)
    if isinstance(message, ErrorCode):
        return message
    return Frame(job_id, message)


class FrameBuffer:
    """Bytes in, frames out: `feed` what the pipe gave, then `next_frame` until it says None."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_frame(self) -> Frame | ErrorCode | None:
        """The next complete frame, an `ErrorCode` for a bad one (TOO_LARGE poisons the stream:
        the caller must close it), or None when more bytes are needed."""
        if len(self._buf) < _LEN.size:
            return None
        (n,) = _LEN.unpack_from(self._buf)
        if n > MAX_FRAME_BYTES:
            return ErrorCode.TOO_LARGE
        if len(self._buf) < _LEN.size + n:
            return None
        payload = bytes(self._buf[_LEN.size : _LEN.size + n])
        del self._buf[: _LEN.size + n]
        return decode_frame(payload)

    @property
    def pending(self) -> int:
        return len(self._buf)


# -- fixed-point helpers -------------------------------------------------------------------------


def micro(x: float) -> int:
    return round(x * 1_000_000)


def milli(x: float) -> int:
    return round(x * 1_000)


def nano(x: float) -> int:
    return round(x * 1_000_000_000)
