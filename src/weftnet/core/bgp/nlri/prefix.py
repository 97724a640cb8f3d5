"""IP prefixes as NLRI (RFC 4271 section 4.3 for IPv4, RFC 4760 section 5 for IPv6): length in bits, then
the fewest octets that hold it. Bits past the length are ignored (RFC 4271 says "irrelevant")."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from weftnet.core.bgp.family import IPV4_UNICAST, IPV6_UNICAST, Family
from weftnet.core.bgp.nlri.base import MalformedNlri, Nlri

__all__ = ["Prefix", "decode_prefixes", "pack_prefix", "unpack_prefix"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def pack_prefix(net: IPNetwork) -> bytes:
    plen = net.prefixlen
    return bytes([plen]) + net.network_address.packed[: (plen + 7) // 8]


def unpack_prefix(data: bytes, pos: int, version: int, plen: int) -> tuple[IPNetwork, int]:
    """The prefix of ``plen`` bits at ``pos``; returns it and the position after it."""
    width = 4 if version == 4 else 16
    if plen > width * 8:
        raise MalformedNlri(f"prefix length {plen} is longer than an IPv{version} address")
    n = (plen + 7) // 8
    if pos + n > len(data):
        raise MalformedNlri("prefix runs past the end of the NLRI field")
    raw = data[pos:pos + n] + bytes(width - n)
    if plen % 8:
        raw = bytearray(raw)
        raw[n - 1] &= (0xFF << (8 - plen % 8)) & 0xFF
        raw = bytes(raw)
    cls = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    return cls((raw, plen)), pos + n


@dataclass(frozen=True, slots=True)
class Prefix(Nlri):
    network: IPNetwork

    @property
    def family(self) -> Family:  # type: ignore[override]
        return IPV4_UNICAST if self.network.version == 4 else IPV6_UNICAST

    @classmethod
    def parse(cls, text: str) -> "Prefix":
        return cls(ipaddress.ip_network(text, strict=False))

    @property
    def key(self) -> bytes:
        return pack_prefix(self.network)

    def encode(self) -> bytes:
        return pack_prefix(self.network)

    def __str__(self) -> str:
        return str(self.network)

    def to_dict(self) -> dict:
        return {"prefix": str(self.network)}


def decode_prefixes(data: bytes, version: int) -> list[Prefix]:
    out, pos, end = [], 0, len(data)
    while pos < end:
        net, pos = unpack_prefix(data, pos + 1, version, data[pos])
        out.append(Prefix(net))
    return out
