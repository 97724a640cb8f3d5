"""The VPNv4/VPNv6 routes a weftnet PE sends, read back by an independent decoder (exabgp), and
exabgp's own VPN UPDATEs read by weftnet's parser into the same routes (docs/l3vpn.md)."""

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

exabgp = pytest.importorskip("exabgp", reason="the test extra installs exabgp (pip install -e '.[test]')")

from exabgp.bgp.message import Action  # noqa: E402
from exabgp.bgp.message.direction import Direction  # noqa: E402
from exabgp.bgp.message.open.capability.negotiated import Negotiated  # noqa: E402
from exabgp.bgp.message.update import Update as XUpdate  # noqa: E402
from exabgp.logger import log  # noqa: E402
from exabgp.protocol.family import AFI, SAFI  # noqa: E402

from weftnet.core.bgp.attributes import Attributes, MpReach, MpUnreach  # noqa: E402
from weftnet.core.bgp.family import VPNV4, VPNV6  # noqa: E402
from weftnet.core.bgp.rib import Path, PeerInfo  # noqa: E402
from weftnet.core.bgp.update import Update, UpdateContext, parse_update  # noqa: E402
from weftnet.core.l3vpn.bgp import export_route, vpn_route_from_path, withdrawal  # noqa: E402
from weftnet.core.l3vpn.ids import format_rd, format_rt, parse_rd, parse_rt  # noqa: E402
from weftnet.core.l3vpn.vrf import VpnRoute  # noqa: E402

log.disable()


def exa_negotiated():
    neg = Negotiated({"capability": {"aigp": False}})
    neg.asn4 = True
    neg.families = [(AFI.ipv4, SAFI.mpls_vpn), (AFI.ipv6, SAFI.mpls_vpn)]
    return neg


def exa_decode(message: bytes):
    return XUpdate.unpack_message(message[19:], Direction.IN, exa_negotiated())


def weft_message(route: VpnRoute, nexthop: str) -> bytes:
    nlri, attrs, nh = export_route(route, nexthop)
    fam = VPNV4 if route.prefix.version == 4 else VPNV6
    return Update(attributes=attrs.replace(MpReach(fam, nh, (nlri,)))).encode(True)


rds = st.one_of(st.tuples(st.integers(1, 65535), st.integers(0, 2**32 - 1)).map(lambda t: f"{t[0]}:{t[1]}"),
                st.tuples(st.ip_addresses(v=4), st.integers(0, 65535)).map(lambda t: f"{t[0]}:{t[1]}"),
                st.tuples(st.integers(65536, 2**32 - 1), st.integers(0, 65535)).map(lambda t: f"{t[0]}:{t[1]}"))
rts = st.tuples(st.integers(1, 65535), st.integers(0, 2**32 - 1)).map(lambda t: f"{t[0]}:{t[1]}")


@st.composite
def routes(draw):
    v6 = draw(st.booleans())
    plen = draw(st.integers(0, 128 if v6 else 32))
    addr = draw(st.ip_addresses(v=6 if v6 else 4))
    prefix = ipaddress.ip_network(f"{addr}/{plen}", strict=False)
    return VpnRoute(parse_rd(draw(rds)), prefix, draw(st.integers(16, 2**20 - 1)),
                    frozenset(parse_rt(t) for t in draw(st.lists(rts, min_size=1, max_size=4))), "192.0.2.1")


def check_same(route: VpnRoute, nexthop: str, decoded) -> None:
    (nl,) = decoded.nlris
    assert nl.action == Action.ANNOUNCE
    assert str(nl.rd).split()[-1] == format_rd(route.rd)
    assert nl.labels.labels == [route.label]
    assert ipaddress.ip_network(nl.cidr.prefix()) == route.prefix
    ext = decoded.attributes[0x10]
    assert sorted(str(c).removeprefix("target:") for c in ext.communities) == sorted(format_rt(r) for r in route.rts)
    want = nexthop if route.prefix.version == 4 else f"::ffff:{nexthop}"
    assert ipaddress.ip_address(str(nl.nexthop)) == ipaddress.ip_address(want)


def test_a_pe_export_decodes_the_same_in_exabgp_v4_and_v6():
    for prefix in ("10.0.0.0/25", "2001:db8:7::/48"):
        r = VpnRoute(parse_rd("65000:11"), ipaddress.ip_network(prefix), 16,
                     frozenset({parse_rt("65000:100"), parse_rt("10.0.0.1:5")}), "")
        msg = weft_message(r, "10.251.0.1")
        check_same(r, "10.251.0.1", exa_decode(msg))


@settings(max_examples=300, deadline=None)
@given(routes())
def test_any_vpn_route_decodes_the_same_in_exabgp(route):
    check_same(route, "10.251.0.1", exa_decode(weft_message(route, "10.251.0.1")))


@settings(max_examples=100, deadline=None)
@given(routes())
def test_withdrawals_decode_the_same_in_exabgp(route):
    fam = VPNV4 if route.prefix.version == 4 else VPNV6
    msg = Update(attributes=Attributes([MpUnreach(fam, (withdrawal(route.rd, route.prefix),))])).encode(True)
    (nl,) = exa_decode(msg).nlris
    assert nl.action == Action.WITHDRAW
    assert (str(nl.rd).split()[-1], ipaddress.ip_network(nl.cidr.prefix())) == (format_rd(route.rd), route.prefix)


@settings(max_examples=200, deadline=None)
@given(routes())
def test_weftnet_reads_back_what_exabgp_reads_and_the_plane_gets_the_same_route(route):
    msg = weft_message(route, "10.251.0.1")
    parsed = parse_update(msg[19:], UpdateContext(families=frozenset({VPNV4, VPNV6})))
    assert not parsed.treat_as_withdraw and not parsed.errors
    fam = VPNV4 if route.prefix.version == 4 else VPNV6
    (nlri,) = parsed.announced[fam]
    src = PeerInfo("10.251.0.1", 65000, ipaddress.IPv4Address("10.251.0.1"), ipaddress.ip_address("10.251.0.1"), True)
    back = vpn_route_from_path(Path(nlri, parsed.attributes, parsed.next_hops[fam], src))
    assert (back.rd, back.prefix, back.label, back.rts, back.nexthop) == (
        route.rd, route.prefix, route.label, route.rts, "10.251.0.1")
