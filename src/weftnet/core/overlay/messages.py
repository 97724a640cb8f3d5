"""Wire messages of the overlay interface (type codes 0x58-0x5B, docs/wire/overlay.md).

* :class:`OverlayPacket` (0x58) — one IPv6 packet between two overlay
  addresses, inside a session. There is no address in the header: the
  sender is the session's authenticated key, and the receiver checks that
  the inner source is that key's overlay address.
* :class:`OverlayChunk` (0x59) — one piece of an offloaded packet
  (``virtio_net_hdr | IPv6 packet``, a TCP superpacket or a packet with a
  partial checksum), inside a session; the receiver reassembles the pieces of
  one ``packet_id`` and checks the whole before its kernel sees it.
* :class:`LanBeacon` (0x5A) — "this key listens on UDP port P", broadcast in
  the clear on a LAN, signed by the key with a timestamp. It only ever makes
  the receiver start a Noise handshake to that key at the beacon's source
  address, which proves the key or fails (docs/overlay.md, "Discovery").

0x5B is :class:`~weftnet.core.session.pmtu.MtuProbe` (path MTU discovery on every session).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from weftnet.core.identity import Identity, verify_signature
from weftnet.core.wire import MAX_MESSAGE_SIZE, U8, U16, U32, U64, VERSION, Fixed, Message, Rest, register

__all__ = [
    "OverlayPacket",
    "OverlayChunk",
    "LanBeacon",
    "OVERLAY_TYPES",
    "PACKET_HEADER",
    "CHUNK_HEADER",
    "BEACON_SIZE",
    "MAX_CHUNKS",
]

#: ``version | 0x58``: what an inner packet costs inside a session.
PACKET_HEADER = bytes((VERSION, 0x58))
#: ``version | 0x59 | packet_id u32 | index u8 | count u8``.
CHUNK_HEADER = 8
CHUNK_FIELDS = struct.Struct("!IBB")
MAX_CHUNKS = 64
_BEACON_TAG = b"weftnet-lan-beacon-v1\x00"


@register
@dataclass(frozen=True)
class OverlayPacket(Message):
    """One IPv6 packet to or from an overlay address."""

    TYPE: ClassVar = 0x58
    packet: bytes
    FIELDS: ClassVar = (("packet", Rest(MAX_MESSAGE_SIZE - 2, min_len=1)),)


@register
@dataclass(frozen=True)
class OverlayChunk(Message):
    """Piece ``index`` of ``count`` of an offloaded packet (``virtio_net_hdr | IPv6 packet``)."""

    TYPE: ClassVar = 0x59
    packet_id: int
    index: int
    count: int
    data: bytes
    FIELDS: ClassVar = (("packet_id", U32), ("index", U8), ("count", U8),
                        ("data", Rest(MAX_MESSAGE_SIZE - CHUNK_HEADER, min_len=1)))

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_CHUNKS or not 0 <= self.index < self.count:
            raise ValueError(f"chunk {self.index} of {self.count}: count is 1-{MAX_CHUNKS} and index below it")


@register
@dataclass(frozen=True)
class LanBeacon(Message):
    """A signed "I am here": the key, its UDP port, and when (Unix milliseconds)."""

    TYPE: ClassVar = 0x5A
    public_key: bytes
    port: int
    timestamp_ms: int
    signature: bytes
    FIELDS: ClassVar = (("public_key", Fixed(32)), ("port", U16), ("timestamp_ms", U64), ("signature", Fixed(64)))

    def __post_init__(self) -> None:
        if self.port == 0:
            raise ValueError("a beacon names a UDP port from 1 to 65535")

    @staticmethod
    def signing_input(public_key: bytes, port: int, timestamp_ms: int) -> bytes:
        return _BEACON_TAG + public_key + struct.pack("!HQ", port, timestamp_ms)

    @classmethod
    def create(cls, identity: Identity, port: int, timestamp_ms: int) -> "LanBeacon":
        sig = identity.sign(cls.signing_input(identity.public_key, port, timestamp_ms))
        return cls(identity.public_key, port, timestamp_ms, sig)

    def verify(self) -> bool:
        return verify_signature(self.public_key, self.signature,
                                self.signing_input(self.public_key, self.port, self.timestamp_ms))


#: The payload types the overlay plane takes from the transport's sink.
OVERLAY_TYPES = frozenset({OverlayPacket.TYPE, OverlayChunk.TYPE})
#: An encoded beacon is exactly this long (anything else is dropped unread).
BEACON_SIZE = 2 + 32 + 2 + 8 + 64
