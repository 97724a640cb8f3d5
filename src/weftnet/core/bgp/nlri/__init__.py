"""NLRI codecs, one module per family: plain prefixes (RFC 4271/4760), VPN (RFC 4364/4659/8277), EVPN (RFC 7432/9136).

Every NLRI class has ``family``, ``encode()`` and ``key`` (the bytes that name
the route in a RIB: for labelled and EVPN routes the key leaves out the label
and, for EVPN, the ESI, as the RFCs define route identity). ``decode_nlri(family,
data)`` parses a whole NLRI field and raises :class:`MalformedNlri`; the UPDATE
parser turns that into the NOTIFICATION RFC 7606 asks for.
"""

from __future__ import annotations

from weftnet.core.bgp.family import IPV4_UNICAST, IPV6_UNICAST, L2VPN_EVPN, VPNV4, VPNV6, Family
from weftnet.core.bgp.nlri.base import MalformedNlri, Nlri
from weftnet.core.bgp.nlri.evpn import (
    EvpnInclusiveMulticast, EvpnIpPrefix, EvpnMacIp, EvpnOther, EvpnRoute, decode_evpn,
)
from weftnet.core.bgp.nlri.prefix import Prefix, decode_prefixes
from weftnet.core.bgp.nlri.rd import RouteDistinguisher
from weftnet.core.bgp.nlri.vpn import VpnPrefix, decode_vpn

__all__ = ["Nlri", "MalformedNlri", "Prefix", "VpnPrefix", "RouteDistinguisher", "EvpnRoute", "EvpnMacIp",
           "EvpnInclusiveMulticast", "EvpnIpPrefix", "EvpnOther", "decode_nlri", "SUPPORTED_FAMILIES"]

_DECODERS = {
    IPV4_UNICAST: lambda d: decode_prefixes(d, 4),
    IPV6_UNICAST: lambda d: decode_prefixes(d, 6),
    VPNV4: lambda d: decode_vpn(d, 4),
    VPNV6: lambda d: decode_vpn(d, 6),
    L2VPN_EVPN: decode_evpn,
}
SUPPORTED_FAMILIES = tuple(_DECODERS)


def decode_nlri(family: Family, data: bytes) -> list[Nlri]:
    """Every NLRI in ``data`` (a whole NLRI field of one family); MalformedNlri if any does not parse."""
    try:
        dec = _DECODERS[family]
    except KeyError:
        raise MalformedNlri(f"unsupported family {family}") from None
    return dec(data)
