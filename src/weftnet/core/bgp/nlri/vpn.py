"""Labelled VPN prefixes: VPN-IPv4 (RFC 4364 section 4.3.4) and VPN-IPv6 (RFC 4659), labels per RFC 8277.

Wire: length in bits (labels, RD and prefix together), a label stack of
3-octet entries (20-bit label, 3 bits TC, bottom-of-stack bit), the 8-octet
RD, the prefix. A withdrawal's label field is ignored; 0x800000 is sent there
(RFC 8277 section 2.4).
"""

from __future__ import annotations

from dataclasses import dataclass

from weftnet.core.bgp.family import VPNV4, VPNV6, Family
from weftnet.core.bgp.nlri.base import MalformedNlri, Nlri
from weftnet.core.bgp.nlri.prefix import IPNetwork, unpack_prefix
from weftnet.core.bgp.nlri.rd import RouteDistinguisher

__all__ = ["VpnPrefix", "decode_vpn", "WITHDRAW_LABEL"]

WITHDRAW_LABEL = 0x800000  # the whole 3-octet field, RFC 8277 section 2.4
MAX_LABELS = 8


@dataclass(frozen=True, slots=True)
class VpnPrefix(Nlri):
    rd: RouteDistinguisher
    network: IPNetwork
    labels: tuple[int, ...] = (0,)  # 20-bit MPLS label values, top of stack first

    @property
    def family(self) -> Family:  # type: ignore[override]
        return VPNV4 if self.network.version == 4 else VPNV6

    @property
    def key(self) -> bytes:
        plen = self.network.prefixlen
        return self.rd.packed + bytes([plen]) + self.network.network_address.packed[: (plen + 7) // 8]

    def encode(self, withdraw: bool = False) -> bytes:
        if withdraw:
            stack = WITHDRAW_LABEL.to_bytes(3, "big")
        else:
            labels = self.labels or (0,)
            stack = b"".join(((lab & 0xFFFFF) << 4 | (1 if i == len(labels) - 1 else 0)).to_bytes(3, "big")
                             for i, lab in enumerate(labels))
        plen = self.network.prefixlen
        bits = len(stack) * 8 + 64 + plen
        return bytes([bits]) + stack + self.rd.packed + self.network.network_address.packed[: (plen + 7) // 8]

    def __str__(self) -> str:
        return f"{self.rd}:{self.network}"

    def to_dict(self) -> dict:
        return {"rd": str(self.rd), "prefix": str(self.network), "labels": list(self.labels)}


def decode_vpn(data: bytes, version: int) -> list[VpnPrefix]:
    out, pos, end = [], 0, len(data)
    while pos < end:
        bits = data[pos]
        pos += 1
        labels: list[int] = []
        while True:  # the stack ends at the bottom-of-stack bit, or at a withdrawal's special value
            if bits < 24 or pos + 3 > end:
                raise MalformedNlri("VPN NLRI ends inside its label stack")
            raw = int.from_bytes(data[pos:pos + 3], "big")
            pos += 3
            bits -= 24
            labels.append(raw >> 4)
            if raw & 1 or raw in (WITHDRAW_LABEL, 0):
                break
            if len(labels) >= MAX_LABELS:
                raise MalformedNlri("VPN NLRI label stack has no bottom")
        if bits < 64 or pos + 8 > end:
            raise MalformedNlri("VPN NLRI too short for its route distinguisher")
        rd = RouteDistinguisher(bytes(data[pos:pos + 8]))
        pos += 8
        net, pos = unpack_prefix(data, pos, version, bits - 64)
        out.append(VpnPrefix(rd, net, tuple(labels)))
    return out
