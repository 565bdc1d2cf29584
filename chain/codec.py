"""The one canonical msgpack codec of every consensus and wire object (PROTOCOL §1.1).

Owns: turning frozen dataclasses into msgpack arrays in declared field order and back, with size
limits, type and range checks, and the re-encode (canonical) check. Decoding returns the object or an
`ErrorCode`; no exception escapes `decode`. Must not: know any concrete object type (they declare
their schema with annotations: NewTypes from `chain.types` carry default constraints, `Annotated`
adds `IntRange`, `ByteLen`, `TextLen`, `MaxItems`; a field whose type depends on an earlier field
declares `variant(resolver)` in its metadata).

The schema of each class is compiled once into a tree of small node objects; encoding and decoding
walk that tree, which keeps the per-object cost to a few Python calls per field.
"""

from __future__ import annotations

import abc
import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, Final, TypeVar, Union, get_args, get_origin, get_type_hints

import msgpack

from chain import types as t
from chain.errors import ErrorCode, InvalidObjectError, LinguaChainError

T = TypeVar("T")

# Limits applied by msgpack itself while parsing, before any schema check (PROTOCOL §1.1).
DEFAULT_MAX_BYTES: Final = 4 * 1024 * 1024
MAX_BIN_LEN: Final = 4 * 1024 * 1024
MAX_STR_LEN: Final = 64 * 1024
MAX_ARRAY_LEN: Final = 100_000


# -- constraints -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntRange:
    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class ByteLen:
    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class TextLen:
    hi: int
    pattern: str | None = None


@dataclass(frozen=True, slots=True)
class MaxItems:
    hi: int


U8 = Annotated[int, IntRange(0, 0xFF)]
U16 = Annotated[int, IntRange(0, 0xFFFF)]
U32 = Annotated[int, IntRange(0, 0xFFFF_FFFF)]
U64 = Annotated[int, IntRange(0, t.U64_MAX)]
I64 = Annotated[int, IntRange(t.I64_MIN, t.I64_MAX)]

NEWTYPE_CONSTRAINTS: Final[Mapping[object, IntRange | ByteLen | TextLen]] = {
    t.Hash32: ByteLen(t.HASH_LEN, t.HASH_LEN),
    t.BlockHash: ByteLen(t.HASH_LEN, t.HASH_LEN),
    t.TxId: ByteLen(t.HASH_LEN, t.HASH_LEN),
    t.UnitId: ByteLen(t.HASH_LEN, t.HASH_LEN),
    t.BlobHash: ByteLen(t.HASH_LEN, t.HASH_LEN),
    t.StateRoot: ByteLen(t.HASH_LEN, t.HASH_LEN),
    t.PubKey: ByteLen(t.PUBKEY_LEN, t.PUBKEY_LEN),
    t.Signature: ByteLen(t.SIGNATURE_LEN, t.SIGNATURE_LEN),
    t.AccountId: ByteLen(t.ACCOUNT_ID_LEN, t.ACCOUNT_ID_LEN),
    t.Height: IntRange(0, t.I64_MAX),
    t.Round: IntRange(0, t.I64_MAX),
    t.Amount: IntRange(0, t.MAX_AMOUNT),
    t.Nonce: IntRange(0, t.I64_MAX),
    t.TimestampMs: IntRange(0, t.I64_MAX),
    t.ChainId: TextLen(32, r"[a-z0-9][a-z0-9-]{0,31}"),
    t.Micro: IntRange(t.I64_MIN, t.I64_MAX),
}

VariantResolver = Callable[[Mapping[str, Any]], "type[Any] | None"]


def variant(resolver: VariantResolver) -> dict[str, Any]:
    """Field metadata: the field's class is chosen by `resolver(earlier_fields)` (None: invalid)."""
    return {"lc_variant": resolver}


class CodecError(LinguaChainError):
    """Raised inside the codec to carry an `ErrorCode` to `decode`; never escapes it."""

    def __init__(self, code: ErrorCode) -> None:
        super().__init__(code.name)
        self.code = code


class SchemaError(LinguaChainError):
    """Raised when a dataclass cannot be compiled into a codec schema (a programming error)."""


# -- nodes -------------------------------------------------------------------------------------


class _Node(abc.ABC):
    """One field's codec: to msgpack-ready values, and back with checks."""

    __slots__ = ()

    @abc.abstractmethod
    def to_plain(self, value: Any) -> Any: ...

    @abc.abstractmethod
    def from_plain(self, plain: Any) -> Any: ...


class _IntNode(_Node):
    __slots__ = ("enum", "hi", "lo", "wrap")

    def __init__(self, lo: int, hi: int, enum: type[IntEnum] | None) -> None:
        self.lo, self.hi, self.enum = lo, hi, enum

    def to_plain(self, value: Any) -> Any:
        if type(value) is bool or not isinstance(value, int):
            raise SchemaError(f"expected int, got {type(value).__name__}")
        if not self.lo <= value <= self.hi:
            raise SchemaError(f"integer {value} outside [{self.lo}, {self.hi}]")
        return int(value)

    def from_plain(self, plain: Any) -> Any:
        if type(plain) is not int:
            raise CodecError(ErrorCode.FLOAT_FORBIDDEN if isinstance(plain, float) else ErrorCode.WRONG_TYPE)
        if self.enum is not None:  # any value that is not a member is an unknown enum (§1.1)
            try:
                return self.enum(plain)
            except ValueError:
                raise CodecError(ErrorCode.UNKNOWN_ENUM) from None
        if not self.lo <= plain <= self.hi:
            raise CodecError(ErrorCode.INT_OUT_OF_RANGE)
        return plain


class _BoolNode(_Node):
    __slots__ = ()

    def to_plain(self, value: Any) -> Any:
        if type(value) is not bool:
            raise SchemaError("expected bool")
        return value

    def from_plain(self, plain: Any) -> Any:
        if type(plain) is not bool:
            raise CodecError(ErrorCode.WRONG_TYPE)
        return plain


class _BytesNode(_Node):
    __slots__ = ("hi", "lo")

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi

    def to_plain(self, value: Any) -> Any:
        if not isinstance(value, bytes):
            raise SchemaError(f"expected bytes, got {type(value).__name__}")
        if not self.lo <= len(value) <= self.hi:
            raise SchemaError(f"byte string of length {len(value)} outside [{self.lo}, {self.hi}]")
        return value

    def from_plain(self, plain: Any) -> Any:
        if type(plain) is not bytes:
            raise CodecError(ErrorCode.WRONG_TYPE)
        if not self.lo <= len(plain) <= self.hi:
            raise CodecError(ErrorCode.BAD_LENGTH if self.lo == self.hi else ErrorCode.TOO_LARGE)
        return plain


class _TextNode(_Node):
    __slots__ = ("hi", "pattern")

    def __init__(self, hi: int, pattern: str | None) -> None:
        self.hi = hi
        self.pattern = re.compile(pattern) if pattern else None

    def to_plain(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise SchemaError(f"expected str, got {type(value).__name__}")
        if len(value.encode()) > self.hi or (self.pattern and not self.pattern.fullmatch(value)):
            raise SchemaError(f"text {value!r} breaks its constraint")
        return value

    def from_plain(self, plain: Any) -> Any:
        if type(plain) is not str:
            raise CodecError(ErrorCode.WRONG_TYPE)
        if len(plain.encode()) > self.hi:
            raise CodecError(ErrorCode.TOO_LARGE)
        if self.pattern is not None and not self.pattern.fullmatch(plain):
            raise CodecError(ErrorCode.BAD_TEXT)
        return plain


class _ListNode(_Node):
    __slots__ = ("hi", "item")

    def __init__(self, item: _Node, hi: int) -> None:
        self.item, self.hi = item, hi

    def to_plain(self, value: Any) -> Any:
        if not isinstance(value, tuple | list):
            raise SchemaError("expected a tuple")
        if len(value) > self.hi:
            raise SchemaError(f"{len(value)} items, at most {self.hi} allowed")
        return [self.item.to_plain(v) for v in value]

    def from_plain(self, plain: Any) -> Any:
        if type(plain) is not list:
            raise CodecError(ErrorCode.WRONG_TYPE)
        if len(plain) > self.hi:
            raise CodecError(ErrorCode.TOO_LARGE)
        return tuple(self.item.from_plain(p) for p in plain)


class _TupleNode(_Node):
    __slots__ = ("items",)

    def __init__(self, items: Sequence[_Node]) -> None:
        self.items = tuple(items)

    def to_plain(self, value: Any) -> Any:
        if not isinstance(value, tuple) or len(value) != len(self.items):
            raise SchemaError("expected a fixed-size tuple")
        return [n.to_plain(v) for n, v in zip(self.items, value, strict=True)]

    def from_plain(self, plain: Any) -> Any:
        if type(plain) is not list:
            raise CodecError(ErrorCode.WRONG_TYPE)
        if len(plain) != len(self.items):
            raise CodecError(ErrorCode.WRONG_ARITY)
        return tuple(n.from_plain(p) for n, p in zip(self.items, plain, strict=True))


class _StructNode(_Node):
    __slots__ = ("cls", "fields", "names", "resolvers")

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls
        self.names: tuple[str, ...] = ()
        self.fields: tuple[_Node | None, ...] = ()
        self.resolvers: tuple[VariantResolver | None, ...] = ()

    def to_plain(self, value: Any) -> Any:
        if type(value) is not self.cls:
            raise SchemaError(f"expected {self.cls.__name__}, got {type(value).__name__}")
        out = []
        for name, node in zip(self.names, self.fields, strict=True):
            v = getattr(value, name)
            out.append(node.to_plain(v) if node is not None else _node_for(type(v)).to_plain(v))
        return out

    def from_plain(self, plain: Any) -> Any:
        if type(plain) is not list:
            raise CodecError(ErrorCode.WRONG_TYPE)
        if len(plain) != len(self.names):
            raise CodecError(ErrorCode.WRONG_ARITY)
        values: dict[str, Any] = {}
        for name, node, resolver, p in zip(self.names, self.fields, self.resolvers, plain, strict=True):
            if node is None:
                assert resolver is not None
                cls = resolver(values)
                if cls is None:
                    raise CodecError(ErrorCode.UNKNOWN_ENUM)
                node = _node_for(cls)
            values[name] = node.from_plain(p)
        return self.cls(**values)


# -- schema compilation ------------------------------------------------------------------------

_NODES: dict[Any, _Node] = {}


def _node_for(tp: Any, constraint: object | None = None) -> _Node:
    key = (tp, constraint)
    node = _NODES.get(key)
    if node is None:
        node = _compile(tp, constraint)
        _NODES[key] = node
    return node


def _compile(tp: Any, constraint: object | None) -> _Node:
    if get_origin(tp) is Annotated:
        base, *extras = get_args(tp)
        found = [e for e in extras if isinstance(e, IntRange | ByteLen | TextLen | MaxItems)]
        if len(found) != 1:
            raise SchemaError(f"{tp}: expected exactly one codec constraint")
        return _node_for(base, found[0])
    if hasattr(tp, "__supertype__"):  # a NewType
        if constraint is None:
            constraint = NEWTYPE_CONSTRAINTS.get(tp)
        return _node_for(tp.__supertype__, constraint)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        node = _StructNode(tp)
        _NODES[(tp, constraint)] = node  # allow recursive types
        hints = get_type_hints(tp, include_extras=True)
        names, fields, resolvers = [], [], []
        for f in dataclasses.fields(tp):
            names.append(f.name)
            resolver = f.metadata.get("lc_variant")
            resolvers.append(resolver)
            fields.append(None if resolver is not None else _node_for(hints[f.name]))
        node.names, node.fields, node.resolvers = tuple(names), tuple(fields), tuple(resolvers)
        return node
    origin = get_origin(tp)
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            hi = constraint.hi if isinstance(constraint, MaxItems) else MAX_ARRAY_LEN
            return _ListNode(_node_for(args[0]), hi)
        return _TupleNode([_node_for(a) for a in args])
    if origin in (Union, types.UnionType):
        raise SchemaError(f"{tp}: unions need variant() metadata")
    if isinstance(tp, type) and issubclass(tp, IntEnum):
        values = [int(m) for m in tp]
        return _IntNode(min(values), max(values), tp)
    if tp is bool:
        return _BoolNode()
    if tp is int:
        if isinstance(constraint, IntRange):
            return _IntNode(constraint.lo, constraint.hi, None)
        raise SchemaError("an int field needs a range (U8, U64, I64, or a NewType)")
    if tp is bytes:
        if isinstance(constraint, ByteLen):
            return _BytesNode(constraint.lo, constraint.hi)
        raise SchemaError("a bytes field needs ByteLen or a NewType")
    if tp is str:
        if isinstance(constraint, TextLen):
            return _TextNode(constraint.hi, constraint.pattern)
        raise SchemaError("a str field needs TextLen or a NewType")
    raise SchemaError(f"cannot encode type {tp!r}")


# -- public API --------------------------------------------------------------------------------


def to_plain(obj: Any) -> list[Any]:
    """The msgpack-ready nested lists of `obj` (raises `SchemaError` for an invalid object)."""
    plain = _node_for(type(obj)).to_plain(obj)
    assert isinstance(plain, list)
    return plain


def pack(plain: Any) -> bytes:
    """msgpack bytes of an already plain value, in the canonical settings."""
    out = msgpack.packb(plain, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


def encode(obj: Any) -> bytes:
    """The canonical encoding of a codec dataclass."""
    return pack(to_plain(obj))


def encode_fields(obj: Any, n: int) -> bytes:
    """The encoding of the array of the first `n` fields (signature and PoW preimages)."""
    return pack(to_plain(obj)[:n])


# msgpack type byte -> (size of the length field, kind) for headers that declare a length
_SIZED: Final = {
    0xC4: (1, "bin"), 0xC5: (2, "bin"), 0xC6: (4, "bin"),
    0xD9: (1, "str"), 0xDA: (2, "str"), 0xDB: (4, "str"),
    0xDC: (2, "array"), 0xDD: (4, "array"),
}  # fmt: skip
_FIXED: Final = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,
                 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}  # fmt: skip
SCAN_BYTES: Final = 64 * 1024


def _first_header_error(data: bytes, max_array: int, max_bin: int, max_str: int) -> ErrorCode:
    """The error of the first header (in stream order) that breaks a limit, for input that ran out.

    What `msgpack.unpackb` would report (TOO_LARGE for a declared length over its limit, WRONG_TYPE for
    a map or ext), found by reading headers only: nothing is allocated. MALFORMED when the first
    `SCAN_BYTES` hold no such header (the input is merely truncated).
    """
    limits = {"array": max_array, "bin": max_bin, "str": max_str}
    pos, end = 0, min(len(data), SCAN_BYTES)
    while pos < end:
        t = data[pos]
        pos += 1
        if t <= 0x7F or t >= 0xE0 or 0x90 <= t <= 0x9F:  # fixint, negative fixint, fixarray (<= 15)
            continue
        if 0xA0 <= t <= 0xBF:
            pos += t & 0x1F
        elif t in _FIXED:
            pos += _FIXED[t]
        elif t in _SIZED:
            width, kind = _SIZED[t]
            n = int.from_bytes(data[pos : pos + width], "big")
            pos += width
            if n > limits[kind]:
                return ErrorCode.TOO_LARGE
            pos += 0 if kind == "array" else n
        elif 0x80 <= t <= 0x8F or t in (0xDE, 0xDF) or 0xC7 <= t <= 0xC9 or 0xD4 <= t <= 0xD8:
            return ErrorCode.WRONG_TYPE  # maps and ext are never allowed
        else:
            return ErrorCode.MALFORMED  # 0xC1
    return ErrorCode.MALFORMED


def unpack(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any | ErrorCode:
    """Parse msgpack with the limits of PROTOCOL §1.1; an `ErrorCode` for anything malformed."""
    if len(data) > max_bytes:
        return ErrorCode.TOO_LARGE
    # msgpack allocates each array at its declared length before reading its items, so every limit is
    # also bounded by the input's length (an item takes at least one byte), and a first pass that only
    # skips (allocates nothing, ~4% of a decode) rejects nested headers whose items never arrive: a
    # 5 KB message of 1,000 nested headers declaring 5,000 items each allocated 40 MB without it.
    limits = {
        "max_bin_len": min(MAX_BIN_LEN, max_bytes, len(data)),
        "max_str_len": min(MAX_STR_LEN, max_bytes, len(data)),
        "max_array_len": min(MAX_ARRAY_LEN, max_bytes, len(data)),
        "max_map_len": 0,
        "max_ext_len": 0,
    }
    try:
        scan = msgpack.Unpacker(max_buffer_size=max(len(data), 1), **limits)
        scan.feed(data)
        scan.skip()
        return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True, **limits)
    except msgpack.OutOfData:  # the skip pass does not check limits: say which one was broken
        return _first_header_error(data, min(MAX_ARRAY_LEN, max_bytes), min(MAX_BIN_LEN, max_bytes),
                                   min(MAX_STR_LEN, max_bytes))  # fmt: skip
    except msgpack.ExtraData:
        return ErrorCode.TRAILING_BYTES
    except UnicodeDecodeError:
        return ErrorCode.BAD_TEXT
    except ValueError as exc:  # msgpack reports limit breaches as ValueError
        message = str(exc)
        if "max_map_len" in message or "max_ext_len" in message:
            return ErrorCode.WRONG_TYPE
        if "exceeds" in message:
            return ErrorCode.TOO_LARGE
        return ErrorCode.MALFORMED
    except Exception:
        return ErrorCode.MALFORMED


def decode(cls: type[T], data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> T | ErrorCode:
    """Decode `data` as `cls`, enforcing limits, schema and canonical form. Never raises."""
    plain = unpack(data, max_bytes=max_bytes)
    if isinstance(plain, ErrorCode):
        return plain
    obj = from_plain(cls, plain)
    if isinstance(obj, ErrorCode):
        return obj
    try:
        if encode(obj) != bytes(data):
            return ErrorCode.NON_CANONICAL
    except SchemaError:
        return ErrorCode.NON_CANONICAL
    return obj


def from_plain(cls: type[T], plain: Any) -> T | ErrorCode:
    """Build `cls` from parsed msgpack values (no canonical check). Never raises."""
    try:
        node = _node_for(cls)
        obj: T = node.from_plain(plain)
    except CodecError as exc:
        return exc.code
    except RecursionError:
        return ErrorCode.MALFORMED
    except (TypeError, ValueError):  # a __post_init__ rejecting a value
        return ErrorCode.BAD_LENGTH
    return obj


def decode_or_raise(cls: type[T], data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> T:
    """Like `decode`, for trusted bytes (our own store): raises `InvalidObjectError` instead."""
    obj = decode(cls, data, max_bytes=max_bytes)
    if isinstance(obj, ErrorCode):
        raise InvalidObjectError(obj, cls.__name__)
    return obj


def field_error(cls: type[Any], name: str, value: Any) -> str | None:
    """Why `value` cannot be field `name` of the codec dataclass `cls` (None if it can).

    For config loaders (genesis overrides) that must name the bad field instead of failing later
    with a bare `SchemaError` from `encode`.
    """
    node = _node_for(cls)
    if not isinstance(node, _StructNode) or name not in node.names:
        return f"{cls.__name__} has no field {name!r}"
    index = node.names.index(name)
    field_node = node.fields[index]
    if field_node is None:
        return None  # a variant field: checked when the whole object is encoded
    try:
        field_node.to_plain(value)
    except SchemaError as exc:
        return str(exc)
    return None


def is_error(value: object) -> typing.TypeGuard[ErrorCode]:
    return isinstance(value, ErrorCode)
