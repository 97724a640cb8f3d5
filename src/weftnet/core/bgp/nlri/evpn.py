"""EVPN NLRI (AFI 25 / SAFI 70): route type, length, value (RFC 7432 section 7).

Implemented route types:

* 2, MAC/IP Advertisement (RFC 7432 7.2): RD, ESI, Ethernet tag, MAC, optional
  IP, label 1 and optional label 2. Route key: RD, tag, MAC, IP (7.2 says the
  ESI and labels are not part of it).
* 3, Inclusive Multicast Ethernet Tag (7.3): RD, tag, originating router's IP.
* 5, IP Prefix (RFC 9136 section 3.1): RD, ESI, tag, prefix, gateway IP, label;
  the IPv4 and IPv6 forms are told apart by the route length (34 or 58).

Other types (1, 4, and any later one) are kept whole as :class:`EvpnOther`, so
they are carried and withdrawn intact. With VXLAN (RFC 8365 section 5.1.3) the
3-octet label fields hold the 24-bit VNI; :attr:`label` keeps the raw field and
``mpls_label`` gives the MPLS reading (the top 20 bits).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from weftnet.core.bgp.family import L2VPN_EVPN, Family
from weftnet.core.bgp.nlri.base import MalformedNlri, Nlri
from weftnet.core.bgp.nlri.prefix import IPNetwork
from weftnet.core.bgp.nlri.rd import RouteDistinguisher

__all__ = ["EvpnRoute", "EvpnMacIp", "EvpnInclusiveMulticast", "EvpnIpPrefix", "EvpnOther", "decode_evpn",
           "ZERO_ESI", "format_mac"]

ZERO_ESI = bytes(10)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def format_mac(mac: bytes) -> str:
    return mac.hex(":")


def _ip(raw: bytes) -> IPAddress:
    return ipaddress.IPv4Address(raw) if len(raw) == 4 else ipaddress.IPv6Address(raw)


class EvpnRoute(Nlri):
    __slots__ = ()
    family: Family = L2VPN_EVPN  # type: ignore[misc]
    ROUTE_TYPE = 0

    def encode(self) -> bytes:
        body = self._body()
        return bytes([self.ROUTE_TYPE, len(body)]) + body

    def _body(self) -> bytes:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class EvpnMacIp(EvpnRoute):
    ROUTE_TYPE = 2
    rd: RouteDistinguisher
    mac: bytes
    ip: IPAddress | None = None
    label: int = 0
    label2: int | None = None
    ethernet_tag: int = 0
    esi: bytes = ZERO_ESI

    def _body(self) -> bytes:
        ip = self.ip.packed if self.ip is not None else b""
        out = (self.rd.packed + self.esi + self.ethernet_tag.to_bytes(4, "big") + b"\x30" + self.mac
               + bytes([len(ip) * 8]) + ip + self.label.to_bytes(3, "big"))
        return out if self.label2 is None else out + self.label2.to_bytes(3, "big")

    @property
    def key(self) -> bytes:
        ip = self.ip.packed if self.ip is not None else b""
        return b"\x02" + self.rd.packed + self.ethernet_tag.to_bytes(4, "big") + self.mac + ip

    @property
    def vni(self) -> int:
        return self.label

    def __str__(self) -> str:
        ip = f" {self.ip}" if self.ip is not None else ""
        return f"[2][{self.rd}][{self.ethernet_tag}][{format_mac(self.mac)}]{ip}"

    def to_dict(self) -> dict:
        return {"type": 2, "rd": str(self.rd), "esi": self.esi.hex(), "ethernet_tag": self.ethernet_tag,
                "mac": format_mac(self.mac), "ip": None if self.ip is None else str(self.ip), "label": self.label,
                "label2": self.label2}


@dataclass(frozen=True, slots=True)
class EvpnInclusiveMulticast(EvpnRoute):
    ROUTE_TYPE = 3
    rd: RouteDistinguisher
    originator: IPAddress
    ethernet_tag: int = 0

    def _body(self) -> bytes:
        ip = self.originator.packed
        return self.rd.packed + self.ethernet_tag.to_bytes(4, "big") + bytes([len(ip) * 8]) + ip

    @property
    def key(self) -> bytes:
        return b"\x03" + self._body()

    def __str__(self) -> str:
        return f"[3][{self.rd}][{self.ethernet_tag}][{self.originator}]"

    def to_dict(self) -> dict:
        return {"type": 3, "rd": str(self.rd), "ethernet_tag": self.ethernet_tag, "originator": str(self.originator)}


@dataclass(frozen=True, slots=True)
class EvpnIpPrefix(EvpnRoute):
    ROUTE_TYPE = 5
    rd: RouteDistinguisher
    prefix: IPNetwork
    gateway: IPAddress | None = None  # None: all zeros of the prefix's family
    label: int = 0
    ethernet_tag: int = 0
    esi: bytes = ZERO_ESI

    def _body(self) -> bytes:
        width = 4 if self.prefix.version == 4 else 16
        gw = self.gateway.packed if self.gateway is not None else bytes(width)
        return (self.rd.packed + self.esi + self.ethernet_tag.to_bytes(4, "big") + bytes([self.prefix.prefixlen])
                + self.prefix.network_address.packed + gw + self.label.to_bytes(3, "big"))

    @property
    def key(self) -> bytes:
        return (b"\x05" + self.rd.packed + self.ethernet_tag.to_bytes(4, "big") + bytes([self.prefix.prefixlen])
                + self.prefix.network_address.packed)

    def __str__(self) -> str:
        return f"[5][{self.rd}][{self.ethernet_tag}][{self.prefix}]"

    def to_dict(self) -> dict:
        return {"type": 5, "rd": str(self.rd), "esi": self.esi.hex(), "ethernet_tag": self.ethernet_tag,
                "prefix": str(self.prefix), "gateway": None if self.gateway is None else str(self.gateway),
                "label": self.label}


@dataclass(frozen=True, slots=True)
class EvpnOther(EvpnRoute):
    """A route type this speaker does not interpret (1, 4, ...): carried as its raw value."""

    route_type: int
    value: bytes

    def encode(self) -> bytes:
        return bytes([self.route_type, len(self.value)]) + self.value

    @property
    def key(self) -> bytes:
        return bytes([self.route_type]) + self.value

    @property
    def rd(self) -> RouteDistinguisher | None:
        return RouteDistinguisher(self.value[:8]) if len(self.value) >= 8 else None

    def __str__(self) -> str:
        return f"[{self.route_type}][{self.value.hex()}]"

    def to_dict(self) -> dict:
        return {"type": self.route_type, "value": self.value.hex()}


def _mac_ip(v: bytes) -> EvpnMacIp:
    if len(v) < 33:
        raise MalformedNlri("EVPN MAC/IP route shorter than 33 octets")
    if v[22] != 48:
        raise MalformedNlri(f"EVPN MAC/IP route: MAC length {v[22]}, not 48")
    iplen = v[29]
    if iplen not in (0, 32, 128):
        raise MalformedNlri(f"EVPN MAC/IP route: IP length {iplen}")
    n = iplen // 8
    rest = len(v) - 30 - n
    if rest not in (3, 6):
        raise MalformedNlri(f"EVPN MAC/IP route: length {len(v)} does not fit IP length {iplen}")
    p = 30 + n
    return EvpnMacIp(RouteDistinguisher(v[:8]), v[23:29], _ip(v[30:p]) if n else None,
                     int.from_bytes(v[p:p + 3], "big"), int.from_bytes(v[p + 3:p + 6], "big") if rest == 6 else None,
                     int.from_bytes(v[18:22], "big"), v[8:18])


def _imet(v: bytes) -> EvpnInclusiveMulticast:
    if len(v) not in (17, 29) or v[12] != (len(v) - 13) * 8:
        raise MalformedNlri(f"EVPN inclusive multicast route: length {len(v)} / IP length {v[12] if len(v) > 12 else '-'}")
    return EvpnInclusiveMulticast(RouteDistinguisher(v[:8]), _ip(v[13:]), int.from_bytes(v[8:12], "big"))


def _ip_prefix(v: bytes) -> EvpnIpPrefix:
    if len(v) == 34:
        width, cls = 4, ipaddress.IPv4Network
    elif len(v) == 58:
        width, cls = 16, ipaddress.IPv6Network
    else:
        raise MalformedNlri(f"EVPN IP prefix route: length {len(v)}, not 34 or 58")
    plen = v[22]
    if plen > width * 8:
        raise MalformedNlri(f"EVPN IP prefix route: prefix length {plen}")
    addr = v[23:23 + width]
    try:
        net = cls((addr, plen))
    except ValueError:  # host bits set: keep the network part, as for plain prefixes
        net = cls((addr, plen), strict=False)
    gw = v[23 + width:23 + 2 * width]
    return EvpnIpPrefix(RouteDistinguisher(v[:8]), net, None if gw == bytes(width) else _ip(gw),
                        int.from_bytes(v[-3:], "big"), int.from_bytes(v[18:22], "big"), v[8:18])


_TYPES = {2: _mac_ip, 3: _imet, 5: _ip_prefix}


def decode_evpn(data: bytes) -> list[EvpnRoute]:
    out: list[EvpnRoute] = []
    pos, end = 0, len(data)
    while pos < end:
        if pos + 2 > end:
            raise MalformedNlri("EVPN NLRI header runs past the field")
        rtype, rlen = data[pos], data[pos + 1]
        pos += 2
        if pos + rlen > end:
            raise MalformedNlri("EVPN route runs past the field")
        value = bytes(data[pos:pos + rlen])
        pos += rlen
        dec = _TYPES.get(rtype)
        out.append(dec(value) if dec else EvpnOther(rtype, value))
    return out
