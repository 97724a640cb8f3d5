"""The wire codec: header, limits, strictness, and the registry as a whole."""

from dataclasses import dataclass
from typing import ClassVar

import pytest
from hypothesis import given, settings, strategies as st

from weftnet.core import wire
from weftnet.core.wire import (
    U8, U16, U32, U64, Bytes, Endpoint, Fixed, Message, Optional, Rest, Seq, Struct, Text,
    decode, decode_as, encode, peek_type, register,
)
from weftnet.errors import DecodeError


@dataclass(frozen=True)
class _Inner(Message):
    a: int
    b: bytes
    FIELDS: ClassVar = (("a", U16), ("b", Bytes(8)))


@register
@dataclass(frozen=True)
class _Sample(Message):
    """Type 0xF0 is reserved for tests (docs/wire-format.md)."""

    TYPE: ClassVar = 0xF0
    n8: int
    n16: int
    n32: int
    n64: int
    key: bytes
    blob: bytes
    name: str
    items: tuple
    maybe: object
    where: tuple
    tail: bytes
    FIELDS: ClassVar = (
        ("n8", U8), ("n16", U16), ("n32", U32), ("n64", U64), ("key", Fixed(4)),
        ("blob", Bytes(300)), ("name", Text(20)), ("items", Seq(Struct(_Inner), 3)),
        ("maybe", Optional(U32)), ("where", Endpoint), ("tail", Rest(64)),
    )


def sample(**kw):
    base = dict(
        n8=1, n16=2, n32=3, n64=2**64 - 1, key=b"abcd", blob=b"x" * 300, name="héllo",
        items=(_Inner(7, b"q"), _Inner(65535, b"")), maybe=None, where=("::1", 5), tail=b"end",
    )
    base.update(kw)
    return _Sample(**base)


def test_round_trip_and_header():
    msg = sample()
    data = encode(msg)
    assert data[0] == wire.VERSION and data[1] == 0xF0
    assert decode(data) == msg
    assert decode_as(_Sample, data) == msg
    assert peek_type(data) == 0xF0
    assert decode(encode(sample(maybe=9, where=("10.0.0.1", 65535), tail=b""))).maybe == 9


def test_golden_bytes_of_the_sample():
    msg = sample(blob=b"", items=(), name="", where=("127.0.0.1", 1), tail=b"")
    assert encode(msg).hex() == (
        "01f0" "01" "0002" "00000003" "ffffffffffffffff" "61626364" "0000" "00" "00" "00" "047f000001" "0001"
    )


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda d: d[:1], "truncated"),
        (lambda d: b"\x02" + d[1:], "unknown version 2"),
        (lambda d: d[:1] + b"\xee" + d[2:], "unknown message type 0xee"),
        (lambda d: d[:-10], "truncated"),
        (lambda d: d + b"\x00" * 100, "trailing"),
        (lambda d: b"\x01" * 70_000, "oversized"),
    ],
)
def test_malformed_inputs_raise_decode_error_saying_why(mutate, words):
    data = encode(sample(tail=b""))
    with pytest.raises(DecodeError) as exc:
        decode(mutate(data))
    assert words in str(exc.value)


def test_declared_length_beyond_limit_is_refused_before_reading():
    # blob is Bytes(300): a length of 301 is refused even if the bytes are there
    msg = sample(blob=b"", tail=b"")
    data = bytearray(encode(msg))
    off = 2 + 1 + 2 + 4 + 8 + 4
    data[off : off + 2] = (301).to_bytes(2, "big")
    data[off + 2 : off + 2] = b"z" * 301
    with pytest.raises(DecodeError, match="oversized"):
        decode(bytes(data))


def test_bad_fields():
    data = bytearray(encode(sample(blob=b"", items=(), name="ab", tail=b"")))
    name_at = 2 + 1 + 2 + 4 + 8 + 4 + 2
    bad_utf8 = bytes(data[: name_at + 1]) + b"\xff\xfe" + bytes(data[name_at + 3 :])
    with pytest.raises(DecodeError, match="UTF-8"):
        decode(bad_utf8)
    maybe_at = name_at + 3 + 1
    bad_flag = bytes(data[:maybe_at]) + b"\x07" + bytes(data[maybe_at + 1 :])
    with pytest.raises(DecodeError, match="presence flag"):
        decode(bad_flag)
    fam_at = maybe_at + 1
    bad_fam = bytes(data[:fam_at]) + b"\x05" + bytes(data[fam_at + 1 :])
    with pytest.raises(DecodeError, match="address family"):
        decode(bad_fam)


def test_too_many_items_refused():
    data = bytearray(encode(sample(blob=b"", items=(), name="", tail=b"")))
    items_at = 2 + 1 + 2 + 4 + 8 + 4 + 2 + 1
    data[items_at] = 200
    with pytest.raises(DecodeError, match="oversized: 200 items"):
        decode(bytes(data))


def test_encoder_refuses_values_that_do_not_fit():
    with pytest.raises(ValueError):
        encode(sample(n8=256))
    with pytest.raises(ValueError):
        encode(sample(key=b"abc"))
    with pytest.raises(ValueError):
        encode(sample(blob=b"x" * 301))
    with pytest.raises(ValueError):
        encode(sample(items=(_Inner(1, b""),) * 4))


def test_registry_refuses_duplicate_codes_and_field_mismatch():
    with pytest.raises(ValueError, match="taken"):

        @register
        @dataclass(frozen=True)
        class _Dup(Message):
            TYPE: ClassVar = 0xF0
            FIELDS: ClassVar = ()

    with pytest.raises(ValueError, match="FIELDS"):

        @register
        @dataclass(frozen=True)
        class _Mismatch(Message):
            TYPE: ClassVar = 0xF1
            x: int
            FIELDS: ClassVar = (("y", U8),)


def _all_message_modules():
    """Import every module that registers message types, so the registry is whole."""
    import importlib
    import pkgutil

    import weftnet.core

    for m in pkgutil.walk_packages(weftnet.core.__path__, "weftnet.core."):
        importlib.import_module(m.name)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_only_ever_raise_decode_error(data):
    _all_message_modules()
    try:
        decode(data)
    except DecodeError:
        pass


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(sorted(wire.registry())), st.binary(max_size=400))
def test_random_bodies_for_every_registered_type(code, body):
    _all_message_modules()
    try:
        msg = decode(bytes((wire.VERSION, code)) + body)
    except DecodeError:
        return
    # Anything that decodes re-encodes to the same bytes (canonical encoding).
    assert encode(msg) == bytes((wire.VERSION, code)) + body
