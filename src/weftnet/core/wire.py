"""The one binary encoding of every weftnet message (docs/wire-format.md).

Theory of operation
-------------------
Every message, whether it travels in the clear (handshake, cookie, transport
framing) or inside an encrypted session (ping, DHT, routing, VPN), is::

    version:u8 | type:u8 | body

The body is a fixed sequence of fields, declared on the message class as
``FIELDS = (("name", codec), ...)``. A codec knows how to pack and unpack one
field and carries its own limits (fixed sizes, maximum lengths, maximum item
counts). Decoding is strict:

* every length is checked against the bytes that remain *and* against the
  field's declared maximum before anything is sliced or allocated;
* trailing bytes after the last field are an error;
* unknown versions and unknown types are errors;
* any problem raises :class:`~weftnet.errors.DecodeError` - never another
  exception, never a hang.

Message classes register themselves by type code with :func:`register`; codes
are unique across the whole protocol (the registry refuses a duplicate), so
one decoder serves every layer. The registry is the table in
docs/wire-format.md.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import struct
from typing import Any, ClassVar, Iterable

from weftnet.errors import DecodeError

__all__ = [
    "VERSION",
    "MAX_MESSAGE_SIZE",
    "Codec",
    "U8",
    "U16",
    "U32",
    "U64",
    "Fixed",
    "Bytes",
    "Text",
    "Seq",
    "Optional",
    "Endpoint",
    "Struct",
    "Rest",
    "Message",
    "register",
    "registry",
    "encode",
    "decode",
    "decode_as",
    "peek_type",
]

VERSION = 1
#: No message, in the clear or inside a session, may be larger than this.
MAX_MESSAGE_SIZE = 65_000


class Codec:
    """Packs and unpacks one field. Subclasses keep their limits as attributes."""

    def pack(self, value: Any, out: bytearray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def unpack(self, buf: memoryview, off: int) -> tuple[Any, int]:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


def _need(buf: memoryview, off: int, n: int, what: str) -> None:
    if off + n > len(buf):
        raise DecodeError(f"truncated: {what} needs {n} bytes at offset {off}, {len(buf) - off} left")


class _Int(Codec):
    __slots__ = ("fmt", "size", "max")

    def __init__(self, fmt: str, size: int):
        self.fmt = struct.Struct("!" + fmt)
        self.size = size
        self.max = (1 << (8 * size)) - 1

    def pack(self, value: int, out: bytearray) -> None:
        if not isinstance(value, int) or not 0 <= value <= self.max:
            raise ValueError(f"integer {value!r} does not fit in u{self.size * 8}")
        out += self.fmt.pack(value)

    def unpack(self, buf: memoryview, off: int) -> tuple[int, int]:
        _need(buf, off, self.size, f"u{self.size * 8}")
        return self.fmt.unpack_from(buf, off)[0], off + self.size

    def describe(self) -> str:
        return f"u{self.size * 8}"


U8 = _Int("B", 1)
U16 = _Int("H", 2)
U32 = _Int("I", 4)
U64 = _Int("Q", 8)


class Fixed(Codec):
    """Exactly ``size`` bytes."""

    __slots__ = ("size",)

    def __init__(self, size: int):
        self.size = size

    def pack(self, value: bytes, out: bytearray) -> None:
        if len(value) != self.size:
            raise ValueError(f"expected {self.size} bytes, got {len(value)}")
        out += value

    def unpack(self, buf: memoryview, off: int) -> tuple[bytes, int]:
        _need(buf, off, self.size, f"bytes[{self.size}]")
        return bytes(buf[off : off + self.size]), off + self.size

    def describe(self) -> str:
        return f"bytes[{self.size}]"


class Bytes(Codec):
    """A length-prefixed byte string: ``len:u16 | bytes`` (``len:u8`` when max < 256)."""

    __slots__ = ("max", "len_codec")

    def __init__(self, max_len: int):
        if max_len > 0xFFFF:
            raise ValueError("Bytes max_len must fit in u16")
        self.max = max_len
        self.len_codec = U8 if max_len <= 0xFF else U16

    def pack(self, value: bytes, out: bytearray) -> None:
        if len(value) > self.max:
            raise ValueError(f"{len(value)} bytes exceeds the limit of {self.max}")
        self.len_codec.pack(len(value), out)
        out += value

    def unpack(self, buf: memoryview, off: int) -> tuple[bytes, int]:
        n, off = self.len_codec.unpack(buf, off)
        if n > self.max:
            raise DecodeError(f"oversized: length {n} exceeds the limit of {self.max}")
        _need(buf, off, n, "byte string")
        return bytes(buf[off : off + n]), off + n

    def describe(self) -> str:
        return f"{self.len_codec.describe()} length + bytes (max {self.max})"


class Text(Bytes):
    """UTF-8 text, length-prefixed like :class:`Bytes` (the limit counts bytes)."""

    def pack(self, value: str, out: bytearray) -> None:  # type: ignore[override]
        super().pack(value.encode("utf-8"), out)

    def unpack(self, buf: memoryview, off: int) -> tuple[str, int]:  # type: ignore[override]
        raw, off = super().unpack(buf, off)
        try:
            return raw.decode("utf-8"), off
        except UnicodeDecodeError as exc:
            raise DecodeError(f"bad field: text is not UTF-8 ({exc.reason})") from None

    def describe(self) -> str:
        return f"{self.len_codec.describe()} length + UTF-8 (max {self.max} bytes)"


class Rest(Codec):
    """All remaining bytes of the message (must be the last field)."""

    __slots__ = ("max", "min")

    def __init__(self, max_len: int = MAX_MESSAGE_SIZE, min_len: int = 0):
        self.max = max_len
        self.min = min_len

    def pack(self, value: bytes, out: bytearray) -> None:
        if not self.min <= len(value) <= self.max:
            raise ValueError(f"{len(value)} bytes outside {self.min}..{self.max}")
        out += value

    def unpack(self, buf: memoryview, off: int) -> tuple[bytes, int]:
        n = len(buf) - off
        if n > self.max:
            raise DecodeError(f"oversized: {n} trailing bytes exceed the limit of {self.max}")
        if n < self.min:
            raise DecodeError(f"truncated: {n} trailing bytes, need at least {self.min}")
        return bytes(buf[off:]), len(buf)

    def describe(self) -> str:
        return f"remaining bytes ({self.min}..{self.max})"


class Seq(Codec):
    """``count:u8|u16 | item*``, with at most ``max_count`` items."""

    __slots__ = ("item", "max", "count_codec")

    def __init__(self, item: Codec, max_count: int):
        self.item = item
        self.max = max_count
        self.count_codec = U8 if max_count <= 0xFF else U16

    def pack(self, value: Iterable[Any], out: bytearray) -> None:
        items = list(value)
        if len(items) > self.max:
            raise ValueError(f"{len(items)} items exceed the limit of {self.max}")
        self.count_codec.pack(len(items), out)
        for item in items:
            self.item.pack(item, out)

    def unpack(self, buf: memoryview, off: int) -> tuple[tuple[Any, ...], int]:
        n, off = self.count_codec.unpack(buf, off)
        if n > self.max:
            raise DecodeError(f"oversized: {n} items exceed the limit of {self.max}")
        items = []
        for _ in range(n):
            value, off = self.item.unpack(buf, off)
            items.append(value)
        return tuple(items), off

    def describe(self) -> str:
        return f"{self.count_codec.describe()} count + [{self.item.describe()}] (max {self.max})"


class Optional(Codec):
    """``present:u8 (0 or 1) | value if present``."""

    __slots__ = ("inner",)

    def __init__(self, inner: Codec):
        self.inner = inner

    def pack(self, value: Any, out: bytearray) -> None:
        if value is None:
            out.append(0)
        else:
            out.append(1)
            self.inner.pack(value, out)

    def unpack(self, buf: memoryview, off: int) -> tuple[Any, int]:
        flag, off = U8.unpack(buf, off)
        if flag == 0:
            return None, off
        if flag != 1:
            raise DecodeError(f"bad field: presence flag {flag} is not 0 or 1")
        return self.inner.unpack(buf, off)

    def describe(self) -> str:
        return f"u8 flag + optional {self.inner.describe()}"


@functools.lru_cache(maxsize=4096)
def _host_bytes(host: str) -> bytes:
    ip = ipaddress.ip_address(host)
    return bytes((ip.version,)) + ip.packed


@functools.lru_cache(maxsize=4096)
def _host_text(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw) if len(raw) == 4 else ipaddress.IPv6Address(raw))


class _Endpoint(Codec):
    """An underlay UDP endpoint ``(host, port)``: ``family:u8 (4|6) | addr | port:u16``.

    Host text <-> bytes conversions are cached: DHT replies carry the same
    few hundred endpoints over and over.
    """

    def pack(self, value: tuple[str, int], out: bytearray) -> None:
        out += _host_bytes(value[0])
        U16.pack(value[1], out)

    def unpack(self, buf: memoryview, off: int) -> tuple[tuple[str, int], int]:
        fam, off = U8.unpack(buf, off)
        if fam == 4:
            n = 4
        elif fam == 6:
            n = 16
        else:
            raise DecodeError(f"bad field: address family {fam} is not 4 or 6")
        _need(buf, off, n + 2, "endpoint")
        host = _host_text(bytes(buf[off : off + n]))
        port = int.from_bytes(buf[off + n : off + n + 2], "big")
        return (host, port), off + n + 2

    def describe(self) -> str:
        return "endpoint (u8 family 4|6, 4|16 address bytes, u16 port)"


Endpoint = _Endpoint()


class Struct(Codec):
    """A nested record: the fields of a :class:`Message` subclass, without header."""

    __slots__ = ("cls",)

    def __init__(self, cls: type["Message"]):
        self.cls = cls

    def pack(self, value: "Message", out: bytearray) -> None:
        if not isinstance(value, self.cls):
            raise ValueError(f"expected {self.cls.__name__}, got {type(value).__name__}")
        value._pack_body(out)

    def unpack(self, buf: memoryview, off: int) -> tuple["Message", int]:
        return self.cls._unpack_body(buf, off)

    def describe(self) -> str:
        return self.cls.__name__


class Message:
    """Base of every wire message. Subclasses are frozen dataclasses (but :class:`Contact`, a
    slotted class written out by hand, core/contact.py).

    ``TYPE`` is the registered type code (``None`` for a record used only
    nested via :class:`Struct`); ``FIELDS`` lists ``(name, codec)`` pairs
    in wire order and must match the dataclass fields.

    No instance dict here: a subclass declared ``dataclass(slots=True)`` (the DHT's messages), or
    with ``__slots__`` of its own (Contact), holds its fields in slots only. One without keeps its
    own ``__dict__``.
    """

    __slots__ = ()

    TYPE: ClassVar[int | None] = None
    FIELDS: ClassVar[tuple[tuple[str, Codec], ...]] = ()

    def _pack_body(self, out: bytearray) -> None:
        for name, codec in self.FIELDS:
            codec.pack(getattr(self, name), out)

    @classmethod
    def _unpack_body(cls, buf: memoryview, off: int) -> tuple["Message", int]:
        values = []
        for _name, codec in cls.FIELDS:
            value, off = codec.unpack(buf, off)
            values.append(value)
        try:
            obj = cls(*values)
        except (ValueError, TypeError) as exc:  # a validating __post_init__ refused it
            raise DecodeError(f"bad field in {cls.__name__}: {exc}") from None
        return obj, off

    def encode(self) -> bytes:
        return encode(self)


_REGISTRY: dict[int, type[Message]] = {}


def register(cls: type[Message]) -> type[Message]:
    """Class decorator: add a message type to the registry (codes are unique)."""
    code = cls.TYPE
    if code is None or not 0 < code <= 0xFF:
        raise ValueError(f"{cls.__name__}: TYPE must be 1..255")
    other = _REGISTRY.get(code)
    if other is not None and other is not cls:
        raise ValueError(f"type 0x{code:02x} is taken by {other.__name__}")
    names = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else None
    if names is not None and names != [n for n, _ in cls.FIELDS]:
        raise ValueError(f"{cls.__name__}: FIELDS {[n for n, _ in cls.FIELDS]} != dataclass {names}")
    _REGISTRY[code] = cls
    return cls


def registry() -> dict[int, type[Message]]:
    """A copy of the type registry, ``{code: class}``, sorted by code."""
    return dict(sorted(_REGISTRY.items()))


def encode(msg: Message) -> bytes:
    """Encode a registered message: ``version | type | body``."""
    if msg.TYPE is None or _REGISTRY.get(msg.TYPE) is not type(msg):
        raise ValueError(f"{type(msg).__name__} is not a registered message type")
    out = bytearray((VERSION, msg.TYPE))
    msg._pack_body(out)
    if len(out) > MAX_MESSAGE_SIZE:
        raise ValueError(f"message of {len(out)} bytes exceeds {MAX_MESSAGE_SIZE}")
    return bytes(out)


def peek_type(data: bytes | memoryview) -> int:
    """The type code of a message, checking only the header."""
    if len(data) < 2:
        raise DecodeError(f"truncated: {len(data)} bytes is shorter than the 2-byte header")
    if data[0] != VERSION:
        raise DecodeError(f"unknown version {data[0]} (this node speaks {VERSION})")
    return data[1]


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Decode any registered message. Raises :class:`DecodeError` on any problem."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise DecodeError(f"oversized: {len(data)} bytes exceed {MAX_MESSAGE_SIZE}")
    code = peek_type(data)
    cls = _REGISTRY.get(code)
    if cls is None:
        raise DecodeError(f"unknown message type 0x{code:02x}")
    return _decode_body(cls, data)


def decode_as(cls: type[Message], data: bytes | bytearray | memoryview) -> Message:
    """Decode, insisting on one message class."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise DecodeError(f"oversized: {len(data)} bytes exceed {MAX_MESSAGE_SIZE}")
    code = peek_type(data)
    if code != cls.TYPE:
        raise DecodeError(f"expected {cls.__name__} (0x{cls.TYPE:02x}), got type 0x{code:02x}")
    return _decode_body(cls, data)


def _decode_body(cls: type[Message], data: bytes | bytearray | memoryview) -> Message:
    buf = memoryview(data)
    try:
        msg, off = cls._unpack_body(buf, 2)
    except DecodeError as exc:
        raise DecodeError(f"{cls.__name__}: {exc}") from None
    if off != len(buf):
        raise DecodeError(f"{cls.__name__}: {len(buf) - off} trailing bytes")
    return msg
