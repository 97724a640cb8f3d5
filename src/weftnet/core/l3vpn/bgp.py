"""The L3VPN plane's routes in BGP terms, both ways (RFC 4364 section 4.3; RFC 4659 for IPv6). Sans-IO.

* :func:`export_route`: one of this PE's VPN routes as the NLRI (RD, prefix,
  label), attributes (ORIGIN and AS_PATH as the CE gave them, MED if any,
  the route targets as extended communities) and next hop to originate.
  A VPN-IPv6 route from a PE with an IPv4 next hop carries it IPv4-mapped,
  as FRR does (RFC 4659 section 3.2.1.2).
* :func:`vpn_route_from_path`: a VPN path the BGP speaker selected, as the
  plane's :class:`~weftnet.core.l3vpn.vrf.VpnRoute`.
* :func:`site_route_from_path`: a CE's IPv4/IPv6 unicast path as a VRF site route.
* :func:`ce_attributes`: what a VRF advertises to its CEs for an imported
  route (ORIGIN and the AS_PATH of the far site; the speaker prepends our AS).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from weftnet.core.bgp.attributes import IGP, AsPath, Attributes, ExtendedCommunities, Med, Origin
from weftnet.core.bgp.extcommunity import RouteTarget, decode_ext_community
from weftnet.core.bgp.nlri import RouteDistinguisher, VpnPrefix
from weftnet.core.l3vpn.vrf import LEAK, LOCAL, REMOTE, FibEntry, LocalRoute, VpnRoute

__all__ = ["export_route", "withdrawal", "vpn_route_from_path", "site_route_from_path", "ce_attributes",
           "path_pref", "plain_address"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def plain_address(addr: Any) -> str:
    """A next hop as the PE map keys it: an IPv4-mapped IPv6 address is its IPv4 address."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def path_pref(attrs: Attributes) -> tuple:
    """An order among paths of different RDs for one prefix: LOCAL_PREF, AS_PATH length, ORIGIN, MED."""
    lp = attrs.local_pref.value if attrs.local_pref is not None else 100
    origin = attrs.origin.value if attrs.origin is not None else 2
    med = attrs.med.value if attrs.med is not None else 0
    return (-lp, attrs.as_path.length, origin, med)


def export_route(route: VpnRoute, nexthop: str) -> tuple[VpnPrefix, Attributes, IPAddress | None]:
    ce = route.attrs
    attrs = [Origin(ce.origin.value if ce is not None and ce.origin is not None else IGP),
             ce.as_path if ce is not None else AsPath(),
             ExtendedCommunities(tuple(decode_ext_community(rt) for rt in sorted(route.rts)))]
    if ce is not None and ce.med is not None:
        attrs.append(Med(ce.med.value))
    nh = ipaddress.ip_address(nexthop) if nexthop else None
    if nh is not None and route.prefix.version == 6 and nh.version == 4:
        nh = ipaddress.IPv6Address(b"\x00" * 10 + b"\xff\xff" + nh.packed)
    return VpnPrefix(RouteDistinguisher(route.rd), route.prefix, route.label), Attributes(attrs), nh


def withdrawal(rd: bytes, prefix) -> VpnPrefix:
    return VpnPrefix(RouteDistinguisher(rd), prefix)


def vpn_route_from_path(path: Any) -> VpnRoute:
    """A selected VPN path (``core.bgp.rib.Path`` with a VpnPrefix NLRI) as the plane's route."""
    n = path.nlri
    rts = frozenset(c.encode() for c in path.attrs.ext_communities if isinstance(c, RouteTarget))
    nh = plain_address(path.next_hop) if path.next_hop is not None else ""
    return VpnRoute(n.rd.packed, n.network, n.label, rts, nh, path.source.key,
                    path_pref(path.attrs), path.attrs)


def site_route_from_path(source: str, path: Any) -> LocalRoute:
    """A CE's unicast path as a VRF site route (``source`` is the CE peer's key)."""
    nh = plain_address(path.next_hop) if path.next_hop is not None else ""
    return LocalRoute(path.nlri.network, f"ce:{source}", nh, "", path_pref(path.attrs), path.attrs)


def ce_attributes(entry: FibEntry | None) -> Attributes | None:
    """The attributes to advertise an entry of a VRF's table to its CEs with, or None to withdraw it.

    Imported routes and static site routes are advertised; a CE's own routes reach the other CEs of
    the VRF as BGP paths already (and never go back to the CE they came from)."""
    if entry is None:
        return None
    if entry.kind in (REMOTE, LEAK):
        src = entry.candidate.route.attrs
    elif entry.kind == LOCAL and entry.local.source == "static":
        src = None
    else:
        return None
    return Attributes([Origin(src.origin.value if src is not None and src.origin is not None else IGP),
                       src.as_path if src is not None else AsPath()])
