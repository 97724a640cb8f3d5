"""Session-layer wire messages: handshake, cookie, transport framing, hello, ping.

Types 0x01-0x0F travel in the clear as whole UDP datagrams; 0x10-0x1F travel
inside an encrypted session. Byte layouts: docs/wire/packets.md; the
cryptography that fills the fields: docs/handshake.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from weftnet.core.wire import U8, U32, U64, Bytes, Fixed, Message, Rest, register

__all__ = [
    "HandshakeInit",
    "HandshakeResponse",
    "CookieReply",
    "TransportFragment",
    "MAX_FRAGMENTS",
    "TransportData",
    "Hello",
    "HelloReply",
    "Ping",
    "Pong",
    "MAX_EARLY_DATA",
    "HELLO_MIN_SIZE",
    "TRANSPORT_HEADER",
    "EarlyData",
]

#: Largest upper-layer payload that may ride inside a handshake message.
MAX_EARLY_DATA = 1200
AEAD_TAG = 16
#: A payload larger than one datagram is sent in at most this many fragments.
MAX_FRAGMENTS = 64
#: A Hello is padded to at least this many bytes, more than a HelloReply, so
#: answering one never amplifies traffic towards a spoofed source.
HELLO_MIN_SIZE = 64
#: version, type, receiver index, counter
TRANSPORT_HEADER = 2 + 4 + 8


@register
@dataclass(frozen=True)
class HandshakeInit(Message):
    TYPE: ClassVar = 0x01
    sender_index: int
    ephemeral: bytes
    encrypted_static: bytes
    encrypted_timestamp: bytes
    encrypted_payload: bytes
    mac1: bytes
    mac2: bytes
    FIELDS: ClassVar = (
        ("sender_index", U32),
        ("ephemeral", Fixed(32)),
        ("encrypted_static", Fixed(32 + AEAD_TAG)),
        ("encrypted_timestamp", Fixed(12 + AEAD_TAG)),
        ("encrypted_payload", Bytes(MAX_EARLY_DATA + AEAD_TAG)),
        ("mac1", Fixed(16)),
        ("mac2", Fixed(16)),
    )


@register
@dataclass(frozen=True)
class HandshakeResponse(Message):
    TYPE: ClassVar = 0x02
    sender_index: int
    receiver_index: int
    ephemeral: bytes
    encrypted_payload: bytes
    mac1: bytes
    mac2: bytes
    FIELDS: ClassVar = (
        ("sender_index", U32),
        ("receiver_index", U32),
        ("ephemeral", Fixed(32)),
        ("encrypted_payload", Bytes(MAX_EARLY_DATA + AEAD_TAG)),
        ("mac1", Fixed(16)),
        ("mac2", Fixed(16)),
    )


@register
@dataclass(frozen=True)
class CookieReply(Message):
    TYPE: ClassVar = 0x03
    receiver_index: int
    nonce: bytes
    encrypted_cookie: bytes
    FIELDS: ClassVar = (
        ("receiver_index", U32),
        ("nonce", Fixed(12)),
        ("encrypted_cookie", Fixed(16 + AEAD_TAG)),
    )


@register
@dataclass(frozen=True)
class TransportData(Message):
    TYPE: ClassVar = 0x04
    receiver_index: int
    counter: int
    ciphertext: bytes
    FIELDS: ClassVar = (
        ("receiver_index", U32),
        ("counter", U64),
        ("ciphertext", Rest(min_len=AEAD_TAG)),
    )


@register
@dataclass(frozen=True)
class TransportFragment(Message):
    """One piece of a payload too large for one datagram: the pieces of one
    ``counter`` concatenate to the ciphertext (tag included) that a
    TransportData with that counter would carry (docs/handshake.md)."""

    TYPE: ClassVar = 0x07
    receiver_index: int
    counter: int
    index: int
    count: int
    piece: bytes
    FIELDS: ClassVar = (
        ("receiver_index", U32),
        ("counter", U64),
        ("index", U8),
        ("count", U8),
        ("piece", Rest(min_len=1)),
    )

    def __post_init__(self) -> None:
        if not 2 <= self.count <= MAX_FRAGMENTS or not 0 <= self.index < self.count:
            raise ValueError(f"fragment {self.index} of {self.count}: count is 2-{MAX_FRAGMENTS}, index below it")


@register
@dataclass(frozen=True)
class Hello(Message):
    """Asks an endpoint for its public key (trust on first use; docs/handshake.md)."""

    TYPE: ClassVar = 0x05
    nonce: int
    padding: bytes
    FIELDS: ClassVar = (("nonce", U64), ("padding", Rest(max_len=1200)))


@register
@dataclass(frozen=True)
class HelloReply(Message):
    TYPE: ClassVar = 0x06
    nonce: int
    public_key: bytes
    FIELDS: ClassVar = (("nonce", U64), ("public_key", Fixed(32)))


@register
@dataclass(frozen=True)
class EarlyData(Message):
    """Early data padded to make its HandshakeInit larger (inside the Init's encryption).

    A responder that does not know the initiator may send it only as many bytes
    as its Init weighed until it proves its address (docs/handshake.md, "Return
    routability"); an initiator that expects a large answer (a FIND_NODE's 20
    contacts) pads its Init so the answer fits and comes in the same round trip.
    Unpadded early data is the payload itself."""

    TYPE: ClassVar = 0x08
    payload: bytes
    padding: bytes
    FIELDS: ClassVar = (("payload", Bytes(MAX_EARLY_DATA)), ("padding", Rest(max_len=MAX_EARLY_DATA)))


@register
@dataclass(frozen=True)
class Ping(Message):
    """Inside a session: asks for a Pong (RTT measurement, ``weft ping``)."""

    TYPE: ClassVar = 0x10
    ping_id: int
    padding: bytes
    FIELDS: ClassVar = (("ping_id", U64), ("padding", Bytes(1200)))


@register
@dataclass(frozen=True)
class Pong(Message):
    TYPE: ClassVar = 0x11
    ping_id: int
    FIELDS: ClassVar = (("ping_id", U64),)
