"""DHT and key-based-routing wire messages (type codes 0x20-0x3F).

Byte layouts: docs/wire/dht.md. Requests carry a random 64-bit request ID;
a reply is matched only if it comes from the node that was asked and carries
the ID it was asked with.

0x2B-0x2E came with the hardening (docs/security.md): reports of routed
messages travel back along the path (RouteBack) instead of to an endpoint
the message names, and holders replicate with an inventory first
(ReplicaOffer / ReplicaWant) and carry the remaining lifetime (Replicate).
0x30 (Leave) came with issue 16: a node going away says so. 0x36/0x37
(FindNear / NearNodes) too: a node lookup's answer can say what its sender
measured to each contact it names, for proximity route selection.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from weftnet.core.contact import Contact, ContactSeq
from weftnet.core.wire import U8, U16, U32, U64, Bytes, Fixed, Message, Seq, Struct, Text, register
from weftnet.errors import DecodeError

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
    "RouteBack",
    "OfferItem",
    "MAX_OFFER",
    "ReplicaOffer",
    "ReplicaWant",
    "Replicate",
    "Leave",
    "FindNear",
    "NearNodes",
    "RTT_UNKNOWN",
]

MAX_CONTACTS = 20
MAX_VALUE = 1000
MAX_SALT = 64
MAX_ROUTE_PAYLOAD = 1100
#: Records offered in one ReplicaOffer (one datagram: 24 x 40 bytes).
MAX_OFFER = 24
_RECORD_BLOB = Bytes(1400)
_CONTACTS = ContactSeq(MAX_CONTACTS)


class _U16Seq(Seq):
    """``Seq(U16, max_count)`` with the same bytes and checks, packed and unpacked by one struct call
    instead of a codec call per item (a NearNodes' RTT hints: 20 in every node lookup's answer)."""

    __slots__ = ()

    def __init__(self, max_count: int):
        assert max_count <= 0xFF  # a u8 count
        super().__init__(U16, max_count)

    def pack(self, value, out: bytearray) -> None:
        items = value if type(value) is tuple else tuple(value)
        n = len(items)
        if n > self.max:
            raise ValueError(f"{n} items exceed the limit of {self.max}")
        try:
            out += struct.pack(f"!B{n}H", n, *items)
        except struct.error:
            raise ValueError(f"an item of {items!r} does not fit in u16") from None

    def unpack(self, buf, off: int):
        n, off = U8.unpack(buf, off)
        if n > self.max:
            raise DecodeError(f"oversized: {n} items exceed the limit of {self.max}")
        end = off + 2 * n
        if end > len(buf):
            raise DecodeError(f"truncated: {n} u16 items need {2 * n} bytes at offset {off}, {len(buf) - off} left")
        return struct.unpack_from(f"!{n}H", buf, off), end


@register
@dataclass(frozen=True, slots=True)
class FindNode(Message):
    TYPE: ClassVar = 0x20
    rid: int
    target: bytes
    FIELDS: ClassVar = (("rid", U64), ("target", Fixed(32)))


@register
@dataclass(frozen=True, slots=True)
class Nodes(Message):
    TYPE: ClassVar = 0x21
    rid: int
    contacts: tuple
    FIELDS: ClassVar = (("rid", U64), ("contacts", _CONTACTS))


@register
@dataclass(frozen=True, slots=True)
class FindValue(Message):
    TYPE: ClassVar = 0x22
    rid: int
    key: bytes
    FIELDS: ClassVar = (("rid", U64), ("key", Fixed(32)))


@register
@dataclass(frozen=True, slots=True)
class Value(Message):
    """A FIND_VALUE hit: the encoded record, plus closer contacts for the asker."""

    TYPE: ClassVar = 0x23
    rid: int
    record: bytes
    contacts: tuple
    FIELDS: ClassVar = (("rid", U64), ("record", _RECORD_BLOB), ("contacts", ContactSeq(8)))


@register
@dataclass(frozen=True, slots=True)
class Store(Message):
    TYPE: ClassVar = 0x24
    rid: int
    record: bytes
    FIELDS: ClassVar = (("rid", U64), ("record", _RECORD_BLOB))


@register
@dataclass(frozen=True, slots=True)
class StoreAck(Message):
    TYPE: ClassVar = 0x25
    rid: int
    ok: int
    reason: str
    FIELDS: ClassVar = (("rid", U64), ("ok", U8), ("reason", Text(120)))


@register
@dataclass(frozen=True, slots=True)
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
@dataclass(frozen=True, slots=True)
class RouteAck(Message):
    """From the node that delivered a routed message, straight to its origin."""

    TYPE: ClassVar = 0x27
    msg_id: int
    hops: int
    ok: int
    reason: str
    FIELDS: ClassVar = (("msg_id", U64), ("hops", U8), ("ok", U8), ("reason", Text(120)))


@register
@dataclass(frozen=True, slots=True)
class RouteHop(Message):
    """Trace mode: one hop reports to the origin that it has the message."""

    TYPE: ClassVar = 0x28
    msg_id: int
    hop: int
    FIELDS: ClassVar = (("msg_id", U64), ("hop", U8))


# Records themselves (0x29 ImmutableRecord, 0x2A MutableRecord) are wire messages
# too; they live in records.py with their validation.

#: RouteBack kinds: a hop's trace report, or the root's acknowledgement.
BACK_HOP, BACK_DELIVERED, BACK_FAILED = 0, 1, 2


@register
@dataclass(frozen=True, slots=True)
class RouteBack(Message):
    """A hop report or acknowledgement of a routed message, on its way back along the path.

    A node that forwarded message ``msg_id`` to N and hears a RouteHop or RouteAck
    from N sends this to the node it got the message from, naming N as it
    authenticated it; the nodes before it pass it on unchanged. Nothing is ever
    sent to an endpoint a routed message merely names.
    """

    TYPE: ClassVar = 0x2B
    msg_id: int
    hop: int
    kind: int  # BACK_HOP, BACK_DELIVERED or BACK_FAILED
    node: Contact
    reason: str
    FIELDS: ClassVar = (("msg_id", U64), ("hop", U8), ("kind", U8), ("node", Struct(Contact)), ("reason", Text(120)))

    def __post_init__(self) -> None:
        if self.kind not in (BACK_HOP, BACK_DELIVERED, BACK_FAILED):
            raise ValueError(f"RouteBack kind {self.kind} is not 0, 1 or 2")


@dataclass(frozen=True, slots=True)
class OfferItem(Message):
    """One record in a ReplicaOffer: its key and sequence number (0 for immutable records)."""

    key: bytes
    seq: int
    FIELDS: ClassVar = (("key", Fixed(32)), ("seq", U64))


@register
@dataclass(frozen=True, slots=True)
class ReplicaOffer(Message):
    """Replication, step 1: "I hold these records; which do you lack?" (answered by ReplicaWant)."""

    TYPE: ClassVar = 0x2C
    rid: int
    items: tuple
    FIELDS: ClassVar = (("rid", U64), ("items", Seq(Struct(OfferItem), MAX_OFFER)))


@register
@dataclass(frozen=True, slots=True)
class ReplicaWant(Message):
    """Replication, step 2: bit i set = send item i of the offer (missing here, or older)."""

    TYPE: ClassVar = 0x2D
    rid: int
    wanted: int
    FIELDS: ClassVar = (("rid", U64), ("wanted", U32))


@register
@dataclass(frozen=True, slots=True)
class Replicate(Message):
    """Replication, step 3: a record and the lifetime it has left (holders never extend it).

    Answered by StoreAck, like Store. ``remaining`` is in seconds."""

    TYPE: ClassVar = 0x2E
    rid: int
    remaining: int
    record: bytes
    FIELDS: ClassVar = (("rid", U64), ("remaining", U32), ("record", _RECORD_BLOB))


@register
@dataclass(frozen=True, slots=True)
class Leave(Message):
    """"I am going away": the sender (authenticated by its session) asks to be dropped
    from the receiver's routing table at once, instead of after its requests time out.

    It names no one but its sender, is never answered, and costs the receiver one
    table removal: the leaving node sends one to each contact it has (issue 16)."""

    TYPE: ClassVar = 0x30
    FIELDS: ClassVar = ()


#: A NearNodes RTT meaning "never measured".
RTT_UNKNOWN = 0xFFFF


@register
@dataclass(frozen=True, slots=True)
class FindNear(FindNode):
    """FindNode, asking the answer to say what the answerer measured to each contact it names
    (a subclass: whatever treats a FindNode as a node lookup's request treats this one so)."""

    TYPE: ClassVar = 0x36
    FIELDS: ClassVar = (("rid", U64), ("target", Fixed(32)))


@register
@dataclass(frozen=True, slots=True)
class NearNodes(Nodes):
    """The answer to FindNear: Nodes, plus the sender's smoothed RTT to each contact in
    units of 0.1 ms (``RTT_UNKNOWN``: never measured), in the order of ``contacts``.

    A hint, unverifiable: the asker uses it only to order candidates that are equally
    close to its target (docs/dht.md, "Proximity route selection")."""

    TYPE: ClassVar = 0x37
    rtts: tuple = ()
    FIELDS: ClassVar = (("rid", U64), ("contacts", _CONTACTS), ("rtts", _U16Seq(MAX_CONTACTS)))
