"""The L3VPN provider edge, sans-IO: RDs and RTs, policies, labels, VRF tables and the
labelled data plane between two whole nodes on the simulated network (docs/l3vpn.md)."""

import ipaddress
import random

import pytest
from vpn_packets import icmp_echo, tcp

from weftnet.core.identity import Identity
from weftnet.core.l3vpn.fib import PrefixTable
from weftnet.core.l3vpn.ids import format_rd, format_rt, parse_rd, parse_rt
from weftnet.core.l3vpn.labels import LabelAllocator
from weftnet.core.l3vpn.messages import MplsChunk, MplsPacket, label_entry
from weftnet.core.l3vpn.policy import VrfPolicy
from weftnet.core.l3vpn.vrf import LocalRoute, VrfConfig, VpnRoute, vrf_key
from weftnet.core.node import NodeCore
from weftnet.core.vpn.network import VNET_HDR, VNET_NONE, GSO_TCPV4
from weftnet.core.wire import decode, encode
from weftnet.errors import DecodeError, NetworkError
from weftnet.sim.harness import SimNetwork

N = ipaddress.ip_network


# -- identifiers, policy, labels, LPM ------------------------------------------------------

@pytest.mark.parametrize("text,hexed", [
    ("65000:1", "0000fde800000001"),
    ("192.0.2.1:7", "0001c00002010007"),
    ("4200000000:9", "0002fa56ea000009"),
])
def test_route_distinguishers_parse_to_their_wire_octets_and_back(text, hexed):
    assert parse_rd(text).hex() == hexed
    assert format_rd(parse_rd(text)) == text


def test_route_targets_are_extended_communities_of_subtype_2():
    assert parse_rt("65000:100").hex() == "0002fde800000064"
    assert parse_rt("10.0.0.1:5")[:2] == b"\x01\x02"
    assert format_rt(parse_rt("4200000000:9")) == "4200000000:9"


@pytest.mark.parametrize("bad", ["65000", "x:1", "1.2.3.4:70000", "4200000000:70000", ":5", "65000:-1", 7])
def test_bad_rd_text_says_what_is_wrong(bad):
    with pytest.raises(ValueError, match="route distinguisher"):
        parse_rd(bad)


def test_hub_and_spoke_policy_spokes_import_only_the_hub():
    hub = VrfPolicy.from_config(["65000:2"], ["65000:1"])
    spoke = VrfPolicy.from_config(["65000:1"], ["65000:2"])
    p = N("10.1.0.0/24")
    assert hub.imports(p, spoke.export_targets(p))
    assert spoke.imports(p, hub.export_targets(p))
    assert not spoke.imports(p, spoke.export_targets(p))


def test_extranet_export_map_adds_targets_and_import_map_filters():
    red = VrfPolicy.from_config(["65000:1"], ["65000:1"],
                                export_map=[{"prefixes": ["10.9.0.0/16"], "add_rt": ["65000:99"]}])
    assert red.export_targets(N("10.9.1.0/24")) == {parse_rt("65000:1"), parse_rt("65000:99")}
    assert red.export_targets(N("10.1.0.0/24")) == {parse_rt("65000:1")}
    partner = VrfPolicy.from_config(["65001:1", "65000:99"], ["65001:1"],
                                    import_map=[{"rt": ["65000:99"], "prefixes": ["10.9.0.0/16"]},
                                                {"rt": ["65001:1"]}])
    assert partner.imports(N("10.9.1.0/24"), red.export_targets(N("10.9.1.0/24")))
    assert not partner.imports(N("10.1.0.0/24"), red.export_targets(N("10.1.0.0/24")))
    # a route tagged 65000:99 outside the shared prefixes matches no rule: refused
    assert not partner.imports(N("10.2.0.0/24"), frozenset({parse_rt("65000:99")}))
    assert partner.imports(N("10.2.0.0/24"), frozenset({parse_rt("65001:1")}))


@pytest.mark.parametrize("kw,msg", [
    ({"import_rts": "65000:1"}, "list of route targets"),
    ({"import_map": [{"rt": ["65000:1"], "action": "maybe"}]}, "permit"),
    ({"import_map": [{"prefix": []}]}, "unknown key"),
    ({"export_map": [{"prefixes": ["10.0.0.0/8"]}]}, "add_rt"),
    ({"export_map": [{"prefixes": ["10.0.0.1/8"], "add_rt": ["1:1"]}]}, "host bits"),
])
def test_bad_policies_are_refused_with_a_reason(kw, msg):
    args = {"import_rts": ["65000:1"], "export_rts": ["65000:1"]} | kw
    with pytest.raises(ValueError, match=msg):
        VrfPolicy.from_config(**args)


def test_label_allocator_gives_lowest_free_and_refuses_reserved_and_clashes():
    a = LabelAllocator(100, 103)
    assert [a.allocate() for _ in range(3)] == [100, 101, 102]
    a.free(101)
    assert a.allocate() == 101
    a.reserve(103)
    assert a.allocate() is None
    with pytest.raises(NetworkError):
        a.reserve(103)
    with pytest.raises(NetworkError):
        LabelAllocator(3, 100)


def test_prefix_table_longest_match_v4_and_v6():
    t = PrefixTable()
    t.set(N("10.0.0.0/8"), "a")
    t.set(N("10.1.0.0/16"), "b")
    t.set(N("0.0.0.0/0"), "default")
    t.set(N("2001:db8::/32"), "v6")
    assert t.lookup(ipaddress.ip_address("10.1.2.3").packed) == "b"
    assert t.lookup(ipaddress.ip_address("10.2.2.3").packed) == "a"
    assert t.lookup(ipaddress.ip_address("192.0.2.1").packed) == "default"
    assert t.lookup(ipaddress.ip_address("2001:db8::1").packed) == "v6"
    assert t.lookup(ipaddress.ip_address("2001:db9::1").packed) is None
    assert t.remove(N("10.1.0.0/16")) == "b"
    assert t.lookup(ipaddress.ip_address("10.1.2.3").packed) == "a"
    assert len(t) == 3 and [str(p) for p, _ in t.items()][0] == "0.0.0.0/0"


# -- wire ------------------------------------------------------------------------------------

def test_mpls_packet_is_rfc7510_framing_after_the_weftnet_header():
    pkt = icmp_echo("10.0.0.10", "10.0.0.130", ident=1)
    msg = MplsPacket(label_entry(1000), pkt)
    raw = encode(msg)
    # version, type, then one label stack entry: label 1000, TC 0, S=1, TTL 255
    assert raw[:6].hex() == "015c" + "003e81ff"
    assert raw == MplsPacket.header(1000) + pkt
    assert decode(raw) == msg and decode(raw).label == 1000


@pytest.mark.parametrize("entry", [1000 << 12 | 255, 5 << 12 | 0x1FF, 1000 << 12 | 0x100])
def test_mpls_packet_refuses_stacks_reserved_labels_and_ttl_zero(entry):
    raw = bytes((1, 0x5C)) + entry.to_bytes(4, "big") + b"\x45"
    with pytest.raises(DecodeError):
        decode(raw)


def test_mpls_chunk_bounds():
    with pytest.raises(DecodeError):
        decode(bytes((1, 0x5D)) + label_entry(20).to_bytes(4, "big") + bytes(4) + bytes((3, 3)) + b"x")
    c = MplsChunk(label_entry(20), 7, 1, 2, b"abc")
    assert decode(encode(c)) == c


# -- the plane inside two nodes ------------------------------------------------------------

# Both customers inside 10.0.0.0/24: site 1 is 10.0.0.0/25 for both; site 2 is .192/26 (red) or .128/26 (blue).
RED_SITE1, RED_SITE2 = N("10.0.0.0/25"), N("10.0.0.192/26")
BLUE_SITE1, BLUE_SITE2 = N("10.0.0.0/25"), N("10.0.0.128/26")


def vrf(name, rd, rts, **kw):
    return VrfConfig(name, parse_rd(rd), VrfPolicy.from_config(rts, rts), **kw)


def build(seed=3):
    net = SimNetwork(seed)
    rng = random.Random(seed)
    pes = []
    for i in range(2):
        core = NodeCore(Identity.generate(rng), random.Random(seed * 10 + i), net.now)
        core.set_local_endpoint((f"198.18.{i}.1", 4500))
        net.add(core.endpoint, core)
        pes.append(core)
    pes[1].connect(pes[0].endpoint, net.now)
    net.flush(pes[1].endpoint)
    net.run_for(5.0)
    nh = ["192.0.2.1", "192.0.2.2"]
    for i, core in enumerate(pes):
        core.l3vpn.nexthop = nh[i]
        core.l3vpn.set_pes({nh[1 - i]: pes[1 - i].node_id})
        core.l3vpn.add_vrf(vrf("red", f"65000:{i + 1}", ["65000:100"]))
        core.l3vpn.add_vrf(vrf("blue", f"65000:{i + 11}", ["65000:200"]))
    pes[0].l3vpn.set_local_route("red", LocalRoute(RED_SITE1, "static", "192.168.1.2"))
    pes[0].l3vpn.set_local_route("blue", LocalRoute(BLUE_SITE1, "static", "192.168.1.2"))
    pes[1].l3vpn.set_local_route("red", LocalRoute(RED_SITE2, "static", "192.168.2.2"))
    pes[1].l3vpn.set_local_route("blue", LocalRoute(BLUE_SITE2, "static", "192.168.2.2"))
    exchange(pes)
    return net, pes


def exchange(pes):
    """What the BGP speakers do: each PE's exports become the other's VPN routes."""
    for i, core in enumerate(pes):
        changes = core.l3vpn.export_changes()
        other = pes[1 - i].l3vpn
        other.update_vpn([r for r in changes.values() if r is not None],
                         [k for k, r in changes.items() if r is None])


def send(net, core, name, packets):
    core.l3vpn_outbound(vrf_key(name), [VNET_NONE + p for p in packets], net.now)
    net.flush(core.endpoint)
    net.run_for(1.0)


def written(core):
    out = list(core.vpn.tun_out)
    core.vpn.tun_out.clear()
    return out


def test_two_customers_with_the_same_addresses_stay_apart_across_two_pes():
    net, (pe0, pe1) = build()
    assert pe0.l3vpn.vrfs["red"].fib.get(RED_SITE2).kind == "remote"
    ping = icmp_echo("10.0.0.10", "10.0.0.200", ident=1)
    send(net, pe0, "red", [ping])
    assert written(pe1) == [(vrf_key("red"), b"", ping)]
    # The blue customer uses 10.0.0.10 too; its packet lands in blue's VRF only.
    ping_b = icmp_echo("10.0.0.10", "10.0.0.130", ident=2)
    send(net, pe0, "blue", [ping_b])
    assert written(pe1) == [(vrf_key("blue"), b"", ping_b)]
    # Red asking for blue's site-2 address: no route in red's table, nothing crosses.
    send(net, pe0, "red", [icmp_echo("10.0.0.10", "10.0.0.130", ident=3)])
    assert written(pe1) == []
    red1 = pe1.l3vpn.vrfs["red"].counters
    blue1 = pe1.l3vpn.vrfs["blue"].counters
    assert (red1.packets_in, blue1.packets_in) == (1, 1)
    assert pe0.l3vpn.vrfs["red"].counters.drops == {"no-route": 1}
    assert red1.peers == {pe0.node_id.text(): [1, 0]}


def test_a_withdrawn_site_route_stops_forwarding_and_the_kernel_route_goes():
    net, (pe0, pe1) = build()
    pe0.l3vpn.kernel_changes()
    pe1.l3vpn.kernel_changes()
    pe1.l3vpn.remove_local_route("red", RED_SITE2, "static")
    assert pe1.l3vpn.kernel_changes() == {("red", RED_SITE2): None}
    exchange((pe0, pe1))
    assert pe0.l3vpn.kernel_changes() == {("red", RED_SITE2): None}
    send(net, pe0, "red", [icmp_echo("10.0.0.10", "10.0.0.200", ident=1)])
    assert written(pe1) == []


def test_packets_from_nodes_that_are_not_pes_or_with_foreign_labels_never_reach_a_vrf():
    net, (pe0, pe1) = build()
    rng = random.Random(9)
    stranger = NodeCore(Identity.generate(rng), random.Random(1), net.now)
    stranger.set_local_endpoint(("198.18.9.1", 4500))
    net.add(stranger.endpoint, stranger)
    stranger.connect(pe1.endpoint, net.now)
    net.flush(stranger.endpoint)
    net.run_for(3.0)
    label = pe1.l3vpn.vrfs["red"].label
    stranger.vpn.send_to_node(pe1.node_id, (MplsPacket.header(label) + icmp_echo("10.0.0.1", "10.0.0.200", 1),), net.now)
    net.flush(stranger.endpoint)
    net.run_for(1.0)
    assert written(pe1) == [] and pe1.l3vpn.drops == {"not-a-pe": 1}
    # A PE with a label nobody allocated, and a packet for a prefix the label's VRF does not hold here.
    pe0.vpn.send_to_node(pe1.node_id, (MplsPacket.header(4242) + icmp_echo("10.0.0.1", "10.0.0.200", 1),), net.now)
    pe0.vpn.send_to_node(pe1.node_id, (MplsPacket.header(label) + icmp_echo("10.0.0.1", "10.0.0.1", 1),), net.now)
    net.flush(pe0.endpoint)
    net.run_for(1.0)
    assert written(pe1) == []
    assert pe1.l3vpn.drops["unknown-label"] == 1
    assert pe1.l3vpn.vrfs["red"].counters.drops == {"no-local-route": 1}


def test_offloaded_superpackets_cross_in_chunks_and_keep_their_header():
    net, (pe0, pe1) = build()
    big = tcp("10.0.0.10", "10.0.0.200", 1000, 5201, flags=0x10, data=bytes(64_000))
    hdr = VNET_HDR.pack(1, GSO_TCPV4, 40, 1400, 34, 16)
    pe0.l3vpn_outbound(vrf_key("red"), [hdr + big], net.now)
    net.flush(pe0.endpoint)
    net.run_for(1.0)
    assert written(pe1) == [(vrf_key("red"), hdr, big)]


def test_hub_and_spoke_spokes_reach_the_hub_but_not_each_other():
    net, (pe0, pe1) = build()
    l0, l1 = pe0.l3vpn, pe1.l3vpn
    l0.add_vrf(VrfConfig("hub", parse_rd("65000:50"), VrfPolicy.from_config(["65000:2"], ["65000:1"])))
    l0.add_vrf(VrfConfig("spoke-a", parse_rd("65000:51"), VrfPolicy.from_config(["65000:1"], ["65000:2"])))
    l1.add_vrf(VrfConfig("spoke-b", parse_rd("65000:52"), VrfPolicy.from_config(["65000:1"], ["65000:2"])))
    l0.set_local_route("hub", LocalRoute(N("172.16.0.0/24"), "static", "192.168.5.2"))
    l0.set_local_route("spoke-a", LocalRoute(N("172.16.1.0/24"), "static", "192.168.6.2"))
    l1.set_local_route("spoke-b", LocalRoute(N("172.16.2.0/24"), "static", "192.168.7.2"))
    exchange((pe0, pe1))
    kinds = lambda plane, name: {str(p): e.kind for p, e in plane.vrfs[name].fib.items()}
    assert kinds(l0, "hub") == {"172.16.0.0/24": "local", "172.16.1.0/24": "vrf", "172.16.2.0/24": "remote"}
    assert kinds(l0, "spoke-a") == {"172.16.0.0/24": "vrf", "172.16.1.0/24": "local"}
    assert kinds(l1, "spoke-b") == {"172.16.0.0/24": "remote", "172.16.2.0/24": "local"}
    # spoke-a -> hub is handed over inside PE0; spoke-a -> spoke-b has no route
    p = icmp_echo("172.16.1.5", "172.16.0.5", ident=1)
    send(net, pe0, "spoke-a", [p, icmp_echo("172.16.1.5", "172.16.2.5", ident=2)])
    assert written(pe0) == [(vrf_key("hub"), b"", p)]
    assert l0.vrfs["spoke-a"].counters.drops == {"no-route": 1}
    assert l0.vrfs["hub"].counters.peers == {"vrf:spoke-a": [1, 0]}


def test_per_prefix_labels_are_allocated_freed_and_bind_the_prefix():
    net, (pe0, pe1) = build()
    l1 = pe1.l3vpn
    l1.add_vrf(VrfConfig("green", parse_rd("65000:70"), VrfPolicy.from_config(["65000:7"], ["65000:7"]),
                         label_mode="per-prefix"))
    l1.set_local_route("green", LocalRoute(N("10.7.1.0/24"), "static", "192.168.9.2"))
    l1.set_local_route("green", LocalRoute(N("10.7.2.0/24"), "static", "192.168.9.2"))
    labels = {str(r.prefix): r.label for r in l1.exports.values() if r.origin_vrf == "green"}
    assert len(set(labels.values())) == 2 and l1.vrfs["green"].label not in labels.values()
    l1.remove_local_route("green", N("10.7.1.0/24"), "static")
    assert not l1.labels.in_use(labels["10.7.1.0/24"])
    # a label bound to 10.7.2.0/24 does not carry packets for another prefix of the VRF
    l1.set_local_route("green", LocalRoute(N("10.7.3.0/24"), "static", "192.168.9.2"))
    pe0.vpn.send_to_node(pe1.node_id, (MplsPacket.header(labels["10.7.2.0/24"]) + icmp_echo("10.0.0.1", "10.7.3.1", 1),),
                         net.now)
    net.flush(pe0.endpoint)
    net.run_for(1.0)
    assert written(pe1) == [] and l1.vrfs["green"].counters.drops == {"label-prefix-mismatch": 1}


def test_unresolved_next_hops_are_kept_but_never_forwarded_to_and_resolve_later():
    net, (pe0, pe1) = build()
    l0 = pe0.l3vpn
    route = VpnRoute(parse_rd("65099:1"), N("10.0.0.128/26"), 777, frozenset({parse_rt("65000:100")}), "203.0.113.9",
                     "frr")
    l0.update_vpn([route])
    assert l0.vrfs["red"].fib.get(N("10.0.0.128/26")).kind == "unresolved"
    assert ("red", N("10.0.0.128/26")) not in l0.kernel_changes()
    l0.set_pes({"192.0.2.2": pe1.node_id, "203.0.113.9": pe1.node_id})
    e = l0.vrfs["red"].fib.get(N("10.0.0.128/26"))
    assert (e.kind, e.label) == ("remote", 777)
    l0.update_vpn(withdraw=[route.key])
    assert l0.vrfs["red"].fib.get(N("10.0.0.128/26")) is None


def test_prefix_limit_and_vpn_route_bound_refuse_and_count():
    net, (pe0, pe1) = build()
    l0 = pe0.l3vpn
    l0.add_vrf(VrfConfig("tiny", parse_rd("65000:90"), VrfPolicy.from_config(["65000:9"], ["65000:9"]), max_routes=2))
    l0.max_vpn_routes = len(l0._vpn) + 3
    routes = [VpnRoute(parse_rd("65001:9"), N(f"10.9.{i}.0/24"), 100 + i, frozenset({parse_rt("65000:9")}),
                       "192.0.2.2") for i in range(5)]
    l0.update_vpn(routes)
    assert len(l0.vrfs["tiny"].fib) == 2 and l0.vrfs["tiny"].refused == 1
    assert l0.stats["vpn_routes_refused"] == 2


def test_config_errors_are_network_errors():
    net, (pe0, _pe1) = build()
    with pytest.raises(NetworkError, match="same RD"):
        pe0.l3vpn.add_vrf(vrf("again", "65000:1", ["1:1"]))
    with pytest.raises(NetworkError, match="twice"):
        pe0.l3vpn.add_vrf(vrf("red", "65000:77", ["1:1"]))
    with pytest.raises(NetworkError, match="no VRF"):
        pe0.l3vpn.set_local_route("nope", LocalRoute(N("10.0.0.0/8"), "static"))


def test_vpnv6_routes_carry_ipv6_packets_between_the_same_two_vrfs():
    net, (pe0, pe1) = build()
    pe0.l3vpn.set_local_route("red", LocalRoute(N("fd00:1::/64"), "ce:fe80::2", "fe80::2", "ce0"))
    pe1.l3vpn.set_local_route("red", LocalRoute(N("fd00:2::/64"), "static", "", "lan0"))
    pe1.l3vpn.set_local_route("blue", LocalRoute(N("fd00:2::/64"), "static", "", "lan1"))
    exchange((pe0, pe1))
    p6 = icmp_echo("fd00:1::10", "fd00:2::20", ident=6)
    send(net, pe0, "red", [p6])
    assert written(pe1) == [(vrf_key("red"), b"", p6)]
    assert pe1.l3vpn.kernel_changes()[("red", N("fd00:2::/64"))].dev == "lan0"
