"""Labelled VPN prefixes: VPN-IPv4 (RFC 4364 section 4.3.4) and VPN-IPv6 (RFC 4659), labels per RFC 8277.

Wire: length in bits (label, RD and prefix together), one 3-octet label
field (20-bit label, 3 bits TC, bottom-of-stack bit), the 8-octet RD, the
prefix. Without the Multiple Labels capability (which this speaker does not
offer) the stack is exactly one label and the S bit is ignored on receipt
(RFC 8277 section 2.2); a withdrawal carries 0x800000 in that field (2.4).
"""

from __future__ import annotations

from dataclasses import dataclass

from weftnet.core.bgp.family import VPNV4, VPNV6, Family
from weftnet.core.bgp.nlri.base import MalformedNlri, Nlri
from weftnet.core.bgp.nlri.prefix import IPNetwork, unpack_prefix
from weftnet.core.bgp.nlri.rd import RouteDistinguisher

__all__ = ["VpnPrefix", "decode_vpn", "WITHDRAW_LABEL"]

WITHDRAW_LABEL = 0x800000  # the whole 3-octet field, RFC 8277 section 2.4


@dataclass(frozen=True, slots=True)
class VpnPrefix(Nlri):
    rd: RouteDistinguisher
    network: IPNetwork
    label: int = 0  # the 20-bit MPLS label

    @property
    def family(self) -> Family:  # type: ignore[override]
        return VPNV4 if self.network.version == 4 else VPNV6

    @property
    def key(self) -> bytes:
        plen = self.network.prefixlen
        return self.rd.packed + bytes([plen]) + self.network.network_address.packed[: (plen + 7) // 8]

    def encode(self, withdraw: bool = False) -> bytes:
        stack = (WITHDRAW_LABEL if withdraw else (self.label & 0xFFFFF) << 4 | 1).to_bytes(3, "big")
        plen = self.network.prefixlen
        bits = len(stack) * 8 + 64 + plen
        return bytes([bits]) + stack + self.rd.packed + self.network.network_address.packed[: (plen + 7) // 8]

    def __str__(self) -> str:
        return f"{self.rd}:{self.network}"

    def to_dict(self) -> dict:
        return {"rd": str(self.rd), "prefix": str(self.network), "label": self.label}


def decode_vpn(data: bytes, version: int) -> list[VpnPrefix]:
    out, pos, end = [], 0, len(data)
    while pos < end:
        bits = data[pos]
        pos += 1
        if bits < 24 + 64 or pos + 11 > end:
            raise MalformedNlri("VPN NLRI too short for a label and a route distinguisher")
        label = int.from_bytes(data[pos:pos + 3], "big") >> 4
        rd = RouteDistinguisher(bytes(data[pos + 3:pos + 11]))
        pos += 11
        net, pos = unpack_prefix(data, pos, version, bits - 88)
        out.append(VpnPrefix(rd, net, label))
    return out
