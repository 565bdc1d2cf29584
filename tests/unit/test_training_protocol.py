"""training.protocol: every message round-trips; bad frames are error codes, never exceptions."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain import codec
from chain.errors import ErrorCode
from chain.params import AggregationScheme
from chain.types import Hash32, Micro
from training import protocol as p

SAMPLES: list[p.Message] = [
    p.Train("/d.jsonl", "", "/out.safetensors", 10, 0, 4, 2_000_000, 7, 1_000_000, 1_100, 10_000),
    p.Evaluate("/t.jsonl", "/a.safetensors", 8, 16),
    p.Generate("Hello", "", 32, 0, 1),
    p.Export("/a.safetensors", "/out", True),
    p.Cancel(),
    p.Shutdown(),
    p.Ready(
        1,
        Hash32(bytes(32)),
        "/m",
        "cpu",
        "float32",
        1,
        4,
        8,
        AggregationScheme.FFA_LORA,
        24,
        (p.ModuleInfo("model.layers.0.self_attn.q_proj", 64, 64),),
    ),
    p.Progress(3, 10, Micro(2_500_000), 12_345),
    p.TrainResult(Hash32(bytes(32)), 1000, 5, 10, 640, Micro(2_000_000), 999_999, 0, 5),
    p.EvaluateResult((Micro(1), Micro(-2)), 2, 30, 1, 1, 4),
    p.GenerateResult("world", 2),
    p.ExportResult("/out/adapter", ""),
    p.JobError(p.JobErrorCode.BAD_DATA, "d.jsonl:3: not JSON"),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_a_frame(message: p.Message) -> None:
    buffer = p.FrameBuffer()
    data = p.encode_frame(42, message)
    buffer.feed(data[:5])
    assert buffer.next_frame() is None  # incomplete
    buffer.feed(data[5:])
    frame = buffer.next_frame()
    assert isinstance(frame, p.Frame)
    assert frame.job_id == 42
    assert frame.message == message
    assert p.KINDS[frame.kind] is type(message)
    assert buffer.pending == 0


def test_every_kind_has_a_sample() -> None:
    assert {type(m) for m in SAMPLES} == set(p.KINDS.values())


def _payload(version: int, kind: int, job: object, body: object) -> bytes:
    return codec.pack([version, kind, job, body])


def test_bad_frames_are_error_codes() -> None:
    body = codec.to_plain(p.Generate("x", "", 1, 0, 0))
    assert p.decode_frame(_payload(2, 3, 1, body)) == ErrorCode.PROTOCOL_VERSION
    assert p.decode_frame(_payload(1, 99, 1, body)) == ErrorCode.UNKNOWN_ENUM
    assert p.decode_frame(_payload(1, 3, -1, body)) == ErrorCode.INT_OUT_OF_RANGE
    assert p.decode_frame(_payload(1, 3, 1, body[:-1])) == ErrorCode.WRONG_ARITY
    assert p.decode_frame(_payload(1, 3, 1, [*body[:-1], 1.5])) == ErrorCode.FLOAT_FORBIDDEN
    assert p.decode_frame(codec.pack([1, 3, 1])) == ErrorCode.WRONG_ARITY
    assert p.decode_frame(b"\xc1") == ErrorCode.MALFORMED


def test_an_oversized_frame_is_refused_both_ways() -> None:
    buffer = p.FrameBuffer()
    buffer.feed(struct.pack(">I", p.MAX_FRAME_BYTES + 1))
    assert buffer.next_frame() == ErrorCode.TOO_LARGE
    modules = tuple(p.ModuleInfo(f"{i:04d}" + "m" * 250, 1, 1) for i in range(4096))
    huge = p.Ready(1, Hash32(bytes(32)), "/m", "cpu", "f", 1, 4, 8, AggregationScheme.FFA_LORA, 24, modules)
    with pytest.raises(ValueError, match="over the limit"):
        p.encode_frame(1, huge)


@given(st.binary(max_size=300))
def test_garbage_never_raises(garbage: bytes) -> None:
    buffer = p.FrameBuffer()
    buffer.feed(struct.pack(">I", len(garbage)) + garbage)
    result = buffer.next_frame()
    assert isinstance(result, p.Frame | ErrorCode)
