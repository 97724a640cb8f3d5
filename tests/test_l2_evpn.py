"""The EVPN dataplane driver of layer-2 networks (runtime/l2evpn.py) without a BGP session: where the
EVPN instance puts a MAC becomes a switch entry for the member whose address is the route's next hop,
every MAC/IP route becomes a binding that answers ARP, routes for members not known yet wait for them,
routes a certificate does not grant are refused, and withdrawals take entries back."""

import ipaddress
from types import SimpleNamespace

from test_l2_core import MAC_C1, C, L2Lab, arp_request, node, parse_arp
from weftnet.core.bgp.family import L2VPN_EVPN
from weftnet.core.bgp.nlri import EvpnMacIp, RouteDistinguisher
from weftnet.core.vpn.ethernet import parse_mac
from weftnet.core.vpn.netcert import L2Grant, MacPrefix
from weftnet.runtime.l2evpn import L2EvpnDataplane

T0 = 1_800_000_000.0
ASKER = parse_mac("02:aa:00:00:00:01")


def bound(lab):
    dp = L2EvpnDataplane({"wb-lab": (lab.a, "wt-lab")})
    dp.by_vni[100] = lab.a  # what setup_instance does once it found the bridge and the TAP
    return dp


def ip(text):
    return ipaddress.ip_address(text)


def mac_ip_route(mac, address, next_hop):
    """A best path as the speaker hands it to listeners: a type-2 route from another PE."""
    nlri = EvpnMacIp(RouteDistinguisher.parse("10.1.0.3:100"), mac, ip(address), label=100)
    return SimpleNamespace(nlri=nlri, local=False, next_hop=next_hop)


def test_routes_name_their_member_by_next_hop_and_mac_ip_routes_answer_arp():
    lab = L2Lab()
    dp = bound(lab)
    host = parse_mac("02:cc:00:00:00:42")
    dp.setup_dataplane_for_remote_endpoint(100, host, None, ip("10.1.0.3"))  # C's address in the network
    assert lab.a.member_of(host, T0) == C.node_id.raw
    route = mac_ip_route(host, "10.1.0.52", ip("10.1.0.3"))
    dp._on_best(L2VPN_EVPN, b"k", None, route, T0)
    answer = lab.a.outbound(arp_request(ASKER, "10.1.0.17", "10.1.0.52"), T0)
    assert parse_arp(answer.packet[14:]).sha == host
    # The route withdrawn: the binding goes, the MAC entry (the instance's) stays.
    dp._on_best(L2VPN_EVPN, b"k", route, None, T0)
    assert lab.a.neighbor(ip("10.1.0.52").packed, T0) is None and lab.a.member_of(host, T0) == C.node_id.raw
    # The member's overlay address names it too (VTEPs on overlay addresses).
    dp.setup_dataplane_for_remote_endpoint(100, parse_mac("02:cc:00:00:00:43"), None, C.node_id.address())
    assert lab.a.member_of(parse_mac("02:cc:00:00:00:43"), T0) == C.node_id.raw
    dp.remove_dataplane_for_remote_endpoint(100, host, None, ip("10.1.0.3"))
    assert lab.a.member_of(host, T0) is None
    assert dp.stats["remote_installed"] == 3 and dp.stats["remote_withdrawn"] == 2


def test_routes_wait_for_their_member_and_never_widen_a_certificate():
    lab = L2Lab()
    dp = bound(lab)
    # A route from a VTEP no member holds yet waits ...
    later = parse_mac("02:cc:00:00:00:44")
    dp.setup_dataplane_for_remote_endpoint(100, later, None, ip("10.1.0.99"))
    assert lab.a.member_of(later, T0) is None and dp.stats["remote_waiting"] == 1
    assert dp.retry_waiting() == 0
    # ... until the member holding 10.1.0.99 is known (the member scan found it): then it is installed.
    d = node(4)
    lab.serial += 1
    cert = lab.auth.sign_member(d.node_id, ["10.1.0.99"], not_before=int(T0) - 1, not_after=int(T0) + 3600,
                                serial=lab.serial, l2=L2Grant((MacPrefix(parse_mac("02:cc:00:00:00:00"), 40),)))
    lab.a.add_certificate(cert, T0)
    assert dp.retry_waiting() == 1 and lab.a.member_of(later, T0) == d.node_id.raw
    assert dp.stats["remote_waiting"] == 0
    # A route for a MAC or an IP outside the member's grant is refused.
    dp.setup_dataplane_for_remote_endpoint(100, parse_mac("02:bb:00:00:00:44"), None, ip("10.1.0.3"))
    dp._on_best(L2VPN_EVPN, b"k", None, mac_ip_route(MAC_C1, "10.1.0.20", ip("10.1.0.3")), T0)  # A's range
    assert lab.a.member_of(parse_mac("02:bb:00:00:00:44"), T0) is None
    assert lab.a.neighbor(ip("10.1.0.20").packed, T0) is None and dp.stats["remote_refused"] == 2
    # A route that moves a bound MAC is taken back again without losing the certificate's binding.
    dp.setup_dataplane_for_remote_endpoint(100, MAC_C1, None, ip("10.1.0.3"))
    dp.remove_dataplane_for_remote_endpoint(100, MAC_C1, None, ip("10.1.0.3"))
    assert lab.a.member_of(MAC_C1, T0) == C.node_id.raw
