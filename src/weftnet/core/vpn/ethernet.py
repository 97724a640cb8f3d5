"""Ethernet frames, ARP and IPv6 neighbour discovery: just enough to switch, check and answer them.

Layer-2 networks (docs/l2.md) carry whole Ethernet II frames (IEEE 802.3
without the FCS, as a TAP device hands them over): ``dst:6 | src:6 |
ethertype:2 | payload``. This module reads the parts a switch and its
anti-spoofing checks need, and builds the two answers the switch gives on a
host's behalf:

* an ARP reply (RFC 826) to an ARP request for an IPv4 address whose MAC is
  known, and
* a neighbour advertisement (RFC 4861 section 4.4, with the target
  link-layer address option of section 4.6.1) to a neighbour solicitation for
  an IPv6 address whose MAC is known,

so that such broadcasts and solicited-node multicasts never cross the WAN.

MAC addresses are 6-byte ``bytes`` throughout; :func:`mac_text` and
:func:`parse_mac` convert to and from ``aa:bb:cc:dd:ee:ff``. Nothing here
does I/O; malformed input raises :class:`MalformedFrame` with a short
``reason`` tag that callers count.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

from weftnet.errors import NetworkError

__all__ = [
    "ETH_HLEN",
    "ETH_P_IPV4",
    "ETH_P_ARP",
    "ETH_P_IPV6",
    "ETH_P_8021Q",
    "BROADCAST",
    "MalformedFrame",
    "Arp",
    "NeighborMessage",
    "mac_text",
    "parse_mac",
    "parse_mac_prefix",
    "is_multicast",
    "member_mac",
    "eui64_link_local",
    "parse_arp",
    "arp_reply",
    "parse_nd",
    "neighbor_advert",
]

ETH_HLEN = 14
ETH_P_IPV4 = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
BROADCAST = b"\xff" * 6
ZERO_MAC = bytes(6)

ARP_REQUEST, ARP_REPLY = 1, 2
ND_NS, ND_NA = 135, 136
_ND_OPT_SOURCE_LL, _ND_OPT_TARGET_LL = 1, 2
_NA_SOLICITED, _NA_OVERRIDE = 0x40, 0x20
_ARP = struct.Struct("!HHBBH6s4s6s4s")  # htype ptype hlen plen oper sha spa tha tpa (28 bytes)
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


class MalformedFrame(NetworkError):
    """A frame too short or inconsistent to switch. ``reason`` is a short tag."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"malformed frame ({reason}){': ' + detail if detail else ''}")
        self.reason = reason


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` (either case) -> 6 bytes; ValueError otherwise."""
    if not isinstance(text, str) or not _MAC_RE.match(text):
        raise ValueError(f"{text!r} is not a MAC address (six hex pairs separated by ':')")
    return bytes(int(x, 16) for x in text.split(":"))


def parse_mac_prefix(text: str) -> tuple[bytes, int]:
    """``aa:bb:cc:00:00:00/24`` or a plain MAC (/48) -> (6 bytes, length); host bits must be zero."""
    mac, _, length = text.partition("/")
    raw = parse_mac(mac)
    n = 48
    if length:
        if not length.isdigit() or not 0 <= int(length) <= 48:
            raise ValueError(f"{text!r}: a MAC prefix length is 0-48")
        n = int(length)
    if int.from_bytes(raw, "big") & ((1 << (48 - n)) - 1):
        raise ValueError(f"{text!r}: bits after the prefix length must be zero")
    return raw, n


def is_multicast(mac: bytes) -> bool:
    """Group address (broadcast included): the I/G bit, the lowest bit of the first octet."""
    return bool(mac[0] & 1)


def member_mac(network_id: bytes, node_id: bytes) -> bytes:
    """The MAC of a member's own bridge in a layer-2 network, derived from the network and node IDs.

    A locally administered unicast address (IEEE 802: second-lowest bit of
    the first octet set, lowest clear), so it never collides with a vendor's.
    Every member computes every other member's, so a certificate need not list it.
    """
    h = hashlib.sha256(b"weftnet-l2-mac\x00" + network_id + node_id).digest()
    return bytes(((h[0] & 0xFC) | 0x02,)) + h[1:6]


def eui64_link_local(mac: bytes) -> bytes:
    """The IPv6 link-local address a host derives from ``mac`` (RFC 4291 appendix A, modified EUI-64)."""
    return b"\xfe\x80" + bytes(6) + bytes((mac[0] ^ 0x02,)) + mac[1:3] + b"\xff\xfe" + mac[3:6]


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@dataclass(frozen=True, slots=True)
class Arp:
    """An Ethernet/IPv4 ARP message (RFC 826): operation, sender and target hardware/protocol addresses."""

    op: int
    sha: bytes
    spa: bytes
    tha: bytes
    tpa: bytes

    @property
    def is_probe(self) -> bool:
        """Address conflict detection (RFC 5227): a request from 0.0.0.0."""
        return self.spa == b"\x00\x00\x00\x00"

    @property
    def is_gratuitous(self) -> bool:
        return self.spa == self.tpa


def parse_arp(payload: bytes | memoryview) -> Arp:
    """The ARP message after the Ethernet header; only Ethernet/IPv4 requests and replies."""
    if len(payload) < _ARP.size:
        raise MalformedFrame("short-arp", f"ARP needs {_ARP.size} bytes, got {len(payload)}")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(payload, 0)
    if htype != 1 or ptype != ETH_P_IPV4 or hlen != 6 or plen != 4:
        raise MalformedFrame("arp-not-ethernet-ipv4")
    if op not in (ARP_REQUEST, ARP_REPLY):
        raise MalformedFrame("arp-op", f"operation {op}")
    return Arp(op, sha, spa, tha, tpa)


def arp_reply(request: Arp, mac: bytes) -> bytes:
    """The frame that answers ``request`` (for ``request.tpa``) with ``mac``, addressed to the asker."""
    body = _ARP.pack(1, ETH_P_IPV4, 6, 4, ARP_REPLY, mac, request.tpa, request.sha, request.spa)
    return request.sha + mac + struct.pack("!H", ETH_P_ARP) + body + bytes(18)  # padded to 60 bytes


@dataclass(frozen=True, slots=True)
class NeighborMessage:
    """An IPv6 neighbour solicitation or advertisement (RFC 4861 sections 4.3, 4.4).

    ``src`` is the IPv6 source (``::`` for duplicate address detection),
    ``target`` the address asked about or announced, ``lladdr`` the
    source (NS) or target (NA) link-layer address option, if present.
    """

    kind: int  # ND_NS or ND_NA
    src: bytes
    dst: bytes
    target: bytes
    lladdr: bytes | None


def parse_nd(ip: bytes | memoryview) -> NeighborMessage | None:
    """An NS or NA inside the IPv6 packet ``ip`` (no extension headers), else None.

    Only messages a host would accept are returned: hop limit 255 and ICMP
    code 0 (RFC 4861 sections 7.1.1, 7.1.2); the checksum is left to the host.
    """
    if len(ip) < 40 + 24 or ip[0] >> 4 != 6 or ip[6] != 58 or ip[7] != 255:
        return None
    kind = ip[40]
    if kind not in (ND_NS, ND_NA) or ip[41] != 0:
        return None
    end = min(len(ip), 40 + ((ip[4] << 8) | ip[5]))
    target = bytes(ip[48:64])
    lladdr = None
    off = 64
    want = _ND_OPT_SOURCE_LL if kind == ND_NS else _ND_OPT_TARGET_LL
    while off + 2 <= end:
        otype, olen = ip[off], ip[off + 1] * 8
        if olen == 0 or off + olen > end:
            return None  # RFC 4861 section 4.6: a zero-length option invalidates the message
        if otype == want and olen == 8:
            lladdr = bytes(ip[off + 2 : off + 8])
        off += olen
    return NeighborMessage(kind, bytes(ip[8:24]), bytes(ip[24:40]), target, lladdr)


def neighbor_advert(ns: NeighborMessage, asker_mac: bytes, mac: bytes) -> bytes:
    """The frame answering solicitation ``ns`` (for ``ns.target``) with ``mac``.

    Solicited and override flags set, the target link-layer address option
    carrying ``mac``, hop limit 255, sent from the target address to the
    asker's address and MAC. Not for duplicate address detection (``src``
    ``::``), which the caller does not answer.
    """
    icmp = bytearray(struct.pack("!BBHB3x16s", ND_NA, 0, 0, _NA_SOLICITED | _NA_OVERRIDE, ns.target))
    icmp += bytes((_ND_OPT_TARGET_LL, 1)) + mac
    pseudo = ns.target + ns.src + struct.pack("!I3xB", len(icmp), 58)
    struct.pack_into("!H", icmp, 2, _checksum(pseudo + bytes(icmp)))
    ip = struct.pack("!IHBB16s16s", 6 << 28, len(icmp), 58, 255, ns.target, ns.src) + bytes(icmp)
    return asker_mac + mac + struct.pack("!H", ETH_P_IPV6) + ip
