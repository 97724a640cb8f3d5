"""Traffic classes: which class an outgoing data-plane payload belongs to. Sans-IO, per packet.

A class matches on the IP packet inside a private-network payload
(``VpnPacket``/``VpnChunk``), an overlay-interface payload
(``OverlayPacket``/``OverlayChunk``) or an L3VPN provider edge's labelled
payload (``MplsPacket``/``MplsChunk``): protocol, source or destination port
ranges, DSCP, source and destination prefixes, and the network it travels
in (a private network's name, ``overlay`` or ``l3vpn``). Classes are tried in config
order; the first that matches wins, and a payload no class matches is
default traffic (the path the policy picked for the peer).

The pieces of one offloaded superpacket after the first carry no IP header:
they take the class of their first piece (remembered per packet ID, bounded),
so all of them travel the same way.

Besides the class, :meth:`Classifier.classify` returns a flow hash over the
addresses, protocol and ports, so a load-balanced class keeps each flow on
one path (TCP does not like reordering).
"""

from __future__ import annotations

import zlib
from typing import Callable

from weftnet.core.paths.config import ClassSpec

__all__ = ["Classifier", "DATA_TYPES", "packet_fields"]

_VPN_PACKET, _VPN_CHUNK, _OV_PACKET, _OV_CHUNK, _MPLS_PACKET, _MPLS_CHUNK = 0x52, 0x55, 0x58, 0x59, 0x5C, 0x5D
#: Payload types that are data-plane traffic (they make a peer "active").
DATA_TYPES = frozenset((_VPN_PACKET, _VPN_CHUNK, _OV_PACKET, _OV_CHUNK, _MPLS_PACKET, _MPLS_CHUNK))
_OVERLAY = b"overlay"
_L3VPN = b"l3vpn"
_NAMES = {_OVERLAY: "overlay", _L3VPN: "l3vpn"}
_VNET = 10  # virtio_net_hdr in front of an offloaded packet's first piece
_PORTED = (6, 17, 132)
_V6_EXT = (0, 43, 60)  # hop-by-hop, routing, destination options: skipped to find the ports


def packet_fields(buf: bytes, off: int):
    """(proto, dscp, src bytes, dst bytes, sport, dport) of the IP packet at ``off``, or None."""
    n = len(buf)
    if n < off + 20:
        return None
    b0 = buf[off]
    v = b0 >> 4
    if v == 4:
        ihl = (b0 & 0x0F) * 4
        if ihl < 20:
            return None
        dscp = buf[off + 1] >> 2
        proto = buf[off + 9]
        src, dst = buf[off + 12:off + 16], buf[off + 16:off + 20]
        frag = ((buf[off + 6] & 0x1F) << 8) | buf[off + 7]
        l4 = off + ihl if frag == 0 else -1
    elif v == 6:
        if n < off + 40:
            return None
        dscp = ((b0 & 0x0F) << 2) | (buf[off + 1] >> 6)
        proto = buf[off + 6]
        src, dst = buf[off + 8:off + 24], buf[off + 24:off + 40]
        l4 = off + 40
        for _ in range(3):
            if proto not in _V6_EXT or l4 + 2 > n:
                break
            proto, l4 = buf[l4], l4 + 8 * (buf[l4 + 1] + 1)
        if proto == 44:  # a fragment: no ports (only the first fragment has them)
            proto, l4 = (buf[l4] if l4 < n else 44), -1
    else:
        return None
    if proto in _PORTED and 0 <= l4 and l4 + 4 <= n:
        sport = (buf[l4] << 8) | buf[l4 + 1]
        dport = (buf[l4 + 2] << 8) | buf[l4 + 3]
    else:
        sport = dport = -1
    return proto, dscp, src, dst, sport, dport


class _Rule:
    __slots__ = ("proto", "ports", "sport", "dport", "dscp", "src", "dst", "network")

    def __init__(self, c: ClassSpec):
        self.proto = c.proto
        self.ports, self.sport, self.dport = c.ports, c.sport, c.dport
        self.dscp = c.dscp or None
        self.src = tuple((n.version, int(n.network_address), int(n.netmask)) for n in c.src)
        self.dst = tuple((n.version, int(n.network_address), int(n.netmask)) for n in c.dst)
        self.network = c.network

    def matches(self, f, net: str | None) -> bool:
        proto, dscp, src, dst, sport, dport = f
        if self.network is not None and self.network != net:
            return False
        if self.proto is not None and proto != self.proto:
            return False
        if self.dscp is not None and dscp not in self.dscp:
            return False
        if self.ports and not (_in(sport, self.ports) or _in(dport, self.ports)):
            return False
        if self.sport and not _in(sport, self.sport):
            return False
        if self.dport and not _in(dport, self.dport):
            return False
        if self.src and not _prefix(src, self.src):
            return False
        if self.dst and not _prefix(dst, self.dst):
            return False
        return True


def _in(port: int, ranges) -> bool:
    for lo, hi in ranges:
        if lo <= port <= hi:
            return True
    return False


def _prefix(addr: bytes, nets) -> bool:
    v = 4 if len(addr) == 4 else 6
    a = int.from_bytes(addr, "big")
    for ver, net, mask in nets:
        if ver == v and a & mask == net:
            return True
    return False


class Classifier:
    """Maps a data-plane payload to (class index, flow hash); None for default traffic."""

    MAX_CHUNKS = 256

    def __init__(self, classes: tuple, network_name: Callable[[bytes], str | None] | None = None):
        self.rules = [_Rule(c) for c in classes]
        self._network_name = network_name or (lambda nid: None)
        self._names: dict[bytes, str | None] = {}
        self._chunks: dict[tuple, tuple | None] = {}  # (network, packet id) -> first piece's answer

    def network(self, nid: bytes) -> str | None:
        name = self._names.get(nid)
        if name is None and nid not in self._names:
            name = self._network_name(nid)
            if len(self._names) >= 1024:
                self._names.clear()
            self._names[nid] = name
        return name

    def classify(self, payload: bytes):
        if not self.rules or len(payload) < 2:
            return None
        t = payload[1]
        if t == _VPN_PACKET:
            return self._match(payload, 34, payload[2:34])
        if t == _OV_PACKET:
            return self._match(payload, 2, _OVERLAY)
        if t == _VPN_CHUNK:
            if len(payload) < 41:
                return None
            nid, key = payload[2:34], (payload[2:34], payload[34:38])
            if payload[38] != 0:
                return self._chunks.get(key)
            return self._remember(key, self._match(payload, 40 + _VNET, nid))
        if t == _OV_CHUNK:
            if len(payload) < 9:
                return None
            key = (_OVERLAY, payload[2:6])
            if payload[6] != 0:
                return self._chunks.get(key)
            return self._remember(key, self._match(payload, 8 + _VNET, _OVERLAY))
        if t == _MPLS_PACKET:  # version, type, label entry u32, IP packet
            return self._match(payload, 6, _L3VPN)
        if t == _MPLS_CHUNK:  # ... label entry u32, packet id u32, index u8, count u8, data
            if len(payload) < 13:
                return None
            key = (_L3VPN, payload[6:10])
            if payload[10] != 0:
                return self._chunks.get(key)
            return self._remember(key, self._match(payload, 12 + _VNET, _L3VPN))
        return None

    def _remember(self, key, answer):
        chunks = self._chunks
        if len(chunks) >= self.MAX_CHUNKS:
            del chunks[next(iter(chunks))]
        chunks[key] = answer
        return answer

    def _match(self, payload: bytes, off: int, nid: bytes):
        f = packet_fields(payload, off)
        if f is None:
            return None
        net = _NAMES.get(nid) if nid is _OVERLAY or nid is _L3VPN else None
        for i, rule in enumerate(self.rules):
            if rule.network is not None and net is None:
                net = self.network(nid)
            if rule.matches(f, net):
                proto, _, src, dst, sport, dport = f
                return i, zlib.crc32(b"%b%b%d,%d,%d" % (src, dst, proto, sport, dport))
        return None
