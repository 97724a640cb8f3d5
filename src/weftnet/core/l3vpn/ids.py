"""Route distinguishers and route targets as the VRF tables hold them: their eight wire octets.

RFC 4364 section 4.2 (RD) and RFC 4360 section 4 / RFC 5668 (route-target
extended community). Parsing and formatting are the BGP codec's
(``core/bgp/nlri/rd.py``, ``core/bgp/extcommunity.py``); the tables key on
the packed octets (cheap to hash, exactly what BGP carries), so text is
parsed once, at configuration time, and formatted only for display.
"""

from __future__ import annotations

from weftnet.core.bgp.extcommunity import RouteTarget, decode_ext_community
from weftnet.core.bgp.nlri.rd import RouteDistinguisher

__all__ = ["parse_rd", "format_rd", "parse_rt", "format_rt", "is_route_target"]


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string like \"65000:1\", not {value!r}")
    return value


def parse_rd(text: str) -> bytes:
    """The 8 octets of a route distinguisher (``ASN:N``, ``IPV4:N``, ``ASN4:N``); ValueError says why not."""
    return RouteDistinguisher.parse(_text(text, "route distinguisher")).packed


def format_rd(rd: bytes) -> str:
    return str(RouteDistinguisher(rd))


def parse_rt(text: str) -> bytes:
    """The 8 octets of a route-target extended community (type 0x00/0x01/0x02, sub-type 0x02)."""
    return RouteTarget.parse(_text(text, "route target")).encode()


def format_rt(rt: bytes) -> str:
    return str(decode_ext_community(rt))


def is_route_target(community: bytes) -> bool:
    """True for an 8-octet extended community that is a route target (transitive, sub-type 2)."""
    return len(community) == 8 and community[0] in (0, 1, 2) and community[1] == 0x02
