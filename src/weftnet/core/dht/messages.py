"""DHT and key-based-routing wire messages (type codes 0x20-0x3F).

Byte layouts: docs/wire/dht.md. Requests carry a random 64-bit request ID;
a reply is matched only if it comes from the node that was asked and carries
the ID it was asked with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from weftnet.core.contact import Contact
from weftnet.core.wire import U8, U32, U64, Bytes, Fixed, Message, Seq, Struct, Text, register

__all__ = [
    "MAX_CONTACTS",
    "MAX_VALUE",
    "MAX_SALT",
    "MAX_ROUTE_PAYLOAD",
    "FindNode",
    "Nodes",
    "FindValue",
    "Value",
    "Store",
    "StoreAck",
    "Route",
    "RouteAck",
    "RouteHop",
]

MAX_CONTACTS = 20
MAX_VALUE = 1000
MAX_SALT = 64
MAX_ROUTE_PAYLOAD = 1100
_RECORD_BLOB = Bytes(1400)
_CONTACTS = Seq(Struct(Contact), MAX_CONTACTS)


@register
@dataclass(frozen=True)
class FindNode(Message):
    TYPE: ClassVar = 0x20
    rid: int
    target: bytes
    FIELDS: ClassVar = (("rid", U64), ("target", Fixed(32)))


@register
@dataclass(frozen=True)
class Nodes(Message):
    TYPE: ClassVar = 0x21
    rid: int
    contacts: tuple
    FIELDS: ClassVar = (("rid", U64), ("contacts", _CONTACTS))


@register
@dataclass(frozen=True)
class FindValue(Message):
    TYPE: ClassVar = 0x22
    rid: int
    key: bytes
    FIELDS: ClassVar = (("rid", U64), ("key", Fixed(32)))


@register
@dataclass(frozen=True)
class Value(Message):
    """A FIND_VALUE hit: the encoded record, plus closer contacts for the asker."""

    TYPE: ClassVar = 0x23
    rid: int
    record: bytes
    contacts: tuple
    FIELDS: ClassVar = (("rid", U64), ("record", _RECORD_BLOB), ("contacts", Seq(Struct(Contact), 8)))


@register
@dataclass(frozen=True)
class Store(Message):
    TYPE: ClassVar = 0x24
    rid: int
    record: bytes
    FIELDS: ClassVar = (("rid", U64), ("record", _RECORD_BLOB))


@register
@dataclass(frozen=True)
class StoreAck(Message):
    TYPE: ClassVar = 0x25
    rid: int
    ok: int
    reason: str
    FIELDS: ClassVar = (("rid", U64), ("ok", U8), ("reason", Text(120)))


@register
@dataclass(frozen=True)
class Route(Message):
    """Key-based routing: forwarded greedily towards ``key`` (docs/dht.md)."""

    TYPE: ClassVar = 0x26
    msg_id: int
    key: bytes
    origin: Contact
    hops: int
    hop_limit: int
    flags: int  # bit 0: trace (each hop reports to the origin)
    payload: bytes
    FIELDS: ClassVar = (
        ("msg_id", U64),
        ("key", Fixed(32)),
        ("origin", Struct(Contact)),
        ("hops", U8),
        ("hop_limit", U8),
        ("flags", U8),
        ("payload", Bytes(MAX_ROUTE_PAYLOAD)),
    )


@register
@dataclass(frozen=True)
class RouteAck(Message):
    """From the node that delivered a routed message, straight to its origin."""

    TYPE: ClassVar = 0x27
    msg_id: int
    hops: int
    ok: int
    reason: str
    FIELDS: ClassVar = (("msg_id", U64), ("hops", U8), ("ok", U8), ("reason", Text(120)))


@register
@dataclass(frozen=True)
class RouteHop(Message):
    """Trace mode: one hop reports to the origin that it has the message."""

    TYPE: ClassVar = 0x28
    msg_id: int
    hop: int
    FIELDS: ClassVar = (("msg_id", U64), ("hop", U8))


# Records themselves (0x29 ImmutableRecord, 0x2A MutableRecord) are wire messages
# too; they live in records.py with their validation.
