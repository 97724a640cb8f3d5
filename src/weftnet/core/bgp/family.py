"""Address families (AFI/SAFI pairs, RFC 4760) and the names the config and CLI use for them."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Family", "IPV4_UNICAST", "IPV6_UNICAST", "L2VPN_EVPN", "VPNV4", "VPNV6", "FAMILY_BY_NAME",
           "family_name", "parse_family", "AFI_IPV4", "AFI_IPV6", "AFI_L2VPN"]

AFI_IPV4, AFI_IPV6, AFI_L2VPN = 1, 2, 25
SAFI_UNICAST, SAFI_EVPN, SAFI_VPN = 1, 70, 128


class Family(NamedTuple):
    afi: int
    safi: int

    def __str__(self) -> str:
        return family_name(self)


IPV4_UNICAST = Family(AFI_IPV4, SAFI_UNICAST)
IPV6_UNICAST = Family(AFI_IPV6, SAFI_UNICAST)
L2VPN_EVPN = Family(AFI_L2VPN, SAFI_EVPN)  # RFC 7432 section 7
VPNV4 = Family(AFI_IPV4, SAFI_VPN)  # RFC 4364 section 4.3.4
VPNV6 = Family(AFI_IPV6, SAFI_VPN)  # RFC 4659

FAMILY_BY_NAME = {"ipv4": IPV4_UNICAST, "ipv6": IPV6_UNICAST, "evpn": L2VPN_EVPN, "vpnv4": VPNV4, "vpnv6": VPNV6}
_NAMES = {f: n for n, f in FAMILY_BY_NAME.items()}


def family_name(f: Family) -> str:
    return _NAMES.get(f, f"afi{f.afi}/safi{f.safi}")


def parse_family(text: str) -> Family:
    try:
        return FAMILY_BY_NAME[text]
    except KeyError:
        raise ValueError(f"unknown address family {text!r} (known: {', '.join(FAMILY_BY_NAME)})") from None
