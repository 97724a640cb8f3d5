"""The L3VPN data-plane messages between weftnet PEs (docs/wire/l3vpn.md).

RFC 7510 carries an MPLS label stack and the packet after it in a UDP
datagram; a weftnet PE carries the same framing inside its encrypted session
with the remote PE, after the usual ``version | type`` header:

* :class:`MplsPacket` (0x5C): one label stack entry (RFC 3032 section 2.1:
  label 20 bits, traffic class 3, bottom-of-stack 1, TTL 8) then one IP packet.
* :class:`MplsChunk` (0x5D): one piece of an offloaded packet (a TCP
  superpacket from a TUN with segmentation offload, or a packet whose
  checksum the kernel left partial): the label stack entry, a packet ID,
  the piece's index and count, then ``virtio_net_hdr | IP packet`` cut in
  pieces. The receiver reassembles and hands the whole to its kernel.

The label is the one the *receiving* PE advertised for the route (RFC 4364
section 4.3.2), so it alone selects the VRF there. Exactly one entry, with
the bottom-of-stack bit set: a weftnet PE needs no transport label (the
session is the tunnel).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from weftnet.core.wire import MAX_MESSAGE_SIZE, U8, U32, VERSION, Message, Rest, register

__all__ = ["MplsPacket", "MplsChunk", "label_entry", "entry_label", "MPLS_HEADER", "CHUNK_HEADER",
           "MAX_CHUNKS", "CHUNK_SIZE", "DEFAULT_TTL"]

DEFAULT_TTL = 255
BOTTOM_OF_STACK = 0x100
MAX_CHUNKS = 64
#: Offloaded packets are cut in pieces of this size (the transport fragments each to datagram size).
CHUNK_SIZE = 60_000
#: version, type, label stack entry.
MPLS_HEADER = 6
#: MPLS_HEADER, packet ID u32, index u8, count u8.
CHUNK_HEADER = 12
_CHUNK_FIELDS = struct.Struct("!IBB")


def label_entry(label: int, ttl: int = DEFAULT_TTL, tc: int = 0) -> int:
    """The 32-bit label stack entry for ``label`` at the bottom of the stack."""
    if not 0 <= label < 1 << 20 or not 0 <= ttl <= 255 or not 0 <= tc <= 7:
        raise ValueError(f"label {label}, TC {tc}, TTL {ttl}: out of range")
    return label << 12 | tc << 9 | BOTTOM_OF_STACK | ttl


def entry_label(entry: int) -> int:
    return entry >> 12


def _check_entry(entry: int) -> None:
    if not entry & BOTTOM_OF_STACK:
        raise ValueError("the label stack entry must be the bottom of the stack (one label only)")
    if entry >> 12 < 16:
        raise ValueError(f"label {entry >> 12} is reserved (RFC 3032: 0-15)")
    if entry & 0xFF == 0:
        raise ValueError("label TTL 0")


@register
@dataclass(frozen=True)
class MplsPacket(Message):
    """One labelled IP packet from a PE to the PE that advertised the label."""

    TYPE: ClassVar = 0x5C
    entry: int
    packet: bytes
    FIELDS: ClassVar = (("entry", U32), ("packet", Rest(MAX_MESSAGE_SIZE - MPLS_HEADER, min_len=1)))

    def __post_init__(self) -> None:
        _check_entry(self.entry)

    @property
    def label(self) -> int:
        return entry_label(self.entry)

    @staticmethod
    def header(label: int) -> bytes:
        """The bytes before the IP packet: a sender keeps this per route and prepends it."""
        return bytes((VERSION, MplsPacket.TYPE)) + struct.pack("!I", label_entry(label))


@register
@dataclass(frozen=True)
class MplsChunk(Message):
    """One piece of an offloaded labelled packet: ``virtio_net_hdr (10) | IP packet`` in ``count`` pieces."""

    TYPE: ClassVar = 0x5D
    entry: int
    packet_id: int
    index: int
    count: int
    data: bytes
    FIELDS: ClassVar = (("entry", U32), ("packet_id", U32), ("index", U8), ("count", U8),
                        ("data", Rest(MAX_MESSAGE_SIZE - CHUNK_HEADER, min_len=1)))

    def __post_init__(self) -> None:
        _check_entry(self.entry)
        if not 1 <= self.count <= MAX_CHUNKS or not 0 <= self.index < self.count:
            raise ValueError(f"chunk {self.index} of {self.count}: count is 1-{MAX_CHUNKS} and index below it")

    @property
    def label(self) -> int:
        return entry_label(self.entry)

    @staticmethod
    def header(label: int) -> bytes:
        return bytes((VERSION, MplsChunk.TYPE)) + struct.pack("!I", label_entry(label))

    @staticmethod
    def fields(packet_id: int, index: int, count: int) -> bytes:
        return _CHUNK_FIELDS.pack(packet_id, index, count)
