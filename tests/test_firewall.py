"""Firewall: rule parsing, default deny, matching, connection tracking, fragments, malformed packets."""

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpn_packets import icmp_echo, icmp_error, ipv4, ipv6, tcp, udp
from weftnet.core.vpn.firewall import (
    INBOUND,
    OUTBOUND,
    PROTO_TCP,
    Firewall,
    MalformedPacket,
    parse_packet,
    parse_rules,
)
from weftnet.core.identity import Identity
from weftnet.errors import ConfigError, NetworkError

ME, PEER = "10.1.0.1", "10.1.0.2"
PEER_ID = Identity.from_seed(bytes(range(32))).node_id
OTHER_ID = Identity.from_seed(bytes(32)).node_id
WEB = frozenset({"web"})


def fw(inbound=(), outbound=(), **ct):
    cfg = {"inbound": list(inbound), "outbound": list(outbound)}
    if ct:
        cfg["conntrack"] = ct
    return Firewall.from_config(cfg)


def inbound(f, pkt, now=0.0, peer=PEER_ID, groups=WEB):
    return f.check(INBOUND, parse_packet(pkt), peer.raw, groups, now)


def outbound(f, pkt, now=0.0, peer=PEER_ID, groups=WEB):
    return f.check(OUTBOUND, parse_packet(pkt), peer.raw, groups, now)


# --- parsing -----------------------------------------------------------------

def test_parse_tcp_udp_icmp_v4_v6():
    p = parse_packet(tcp(PEER, ME, 40000, 22))
    assert (p.version, p.proto, p.sport, p.dport, p.fragment) == (4, 6, 40000, 22, 0)
    assert str(p.src_ip) == PEER and str(p.dst_ip) == ME
    p = parse_packet(udp("fd00::2", "fd00::1", 5353, 53))
    assert (p.version, p.proto, p.sport, p.dport) == (6, 17, 5353, 53)
    p = parse_packet(icmp_echo("fd00::2", "fd00::1", ident=77))
    assert (p.proto, p.icmp_type, p.sport, p.dport) == (58, 128, 77, 77)
    p = parse_packet(icmp_echo(PEER, ME, ident=5, reply=True))
    assert (p.proto, p.icmp_type, p.sport) == (1, 0, 5)


def test_parse_ipv6_walks_extension_headers_and_fragment_header():
    hop = bytes([60, 0]) + bytes(6)  # hop-by-hop, next = destination options
    dst = bytes([44, 0]) + bytes(6)  # destination options, next = fragment
    frag = struct.pack("!BBHI", 17, 0, 0x0001, 0xABCD)  # offset 0, M=1
    seg = struct.pack("!HHHH", 1000, 53, 8, 0)
    p = parse_packet(ipv6("fd00::2", "fd00::1", 0, seg, ext=hop + dst + frag))
    assert (p.proto, p.sport, p.dport, p.fragment, p.frag_id) == (17, 1000, 53, 1, 0xABCD)
    later = struct.pack("!BBHI", 17, 0, (185 << 3), 0xABCD)
    p = parse_packet(ipv6("fd00::2", "fd00::1", 44, b"\x00" * 16, ext=later))
    assert (p.fragment, p.sport, p.dport) == (2, 0, 0)


@pytest.mark.parametrize("pkt, reason", [
    (b"", "empty"),
    (b"\x45" + bytes(10), "short-header"),
    (b"\x60" + bytes(20), "short-header"),
    (b"\x75" + bytes(40), "bad-version"),
    (b"\x43" + bytes(30), "bad-header-length"),
    (ipv4(PEER, ME, 6, b"\x00\x16")[:-0 or None], "short-l4"),
    (ipv4(PEER, ME, 17, bytes(8))[:-4], "bad-total-length"),
    (ipv6("fd00::2", "fd00::1", 0, b"\x06\x00\x00"), "short-ext-header"),
])
def test_malformed_packets_raise_malformed_with_reason(pkt, reason):
    with pytest.raises(MalformedPacket) as ei:
        parse_packet(pkt)
    assert ei.value.reason == reason
    assert isinstance(ei.value, NetworkError)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=120))
def test_parse_never_raises_anything_but_malformed(data):
    try:
        parse_packet(data)
    except MalformedPacket:
        pass


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([0x45, 0x46, 0x60]), st.binary(min_size=19, max_size=100))
def test_parse_ip_like_garbage(first, rest):
    try:
        parse_packet(bytes([first]) + rest)
    except MalformedPacket:
        pass


# --- rule parsing ------------------------------------------------------------

@pytest.mark.parametrize("rule, message", [
    ({"proto": "tcpp", "port": 22, "host": "any"}, r"inbound\[0\]: proto 'tcpp'"),
    ({"proto": "tcp", "host": "any"}, r"inbound\[0\]: needs a port"),
    ({"proto": "tcp", "port": "22-10", "host": "any"}, r"low <= high"),
    ({"proto": "tcp", "port": 70000, "host": "any"}, r"outside 1-65535"),
    ({"proto": "tcp", "port": "ssh", "host": "any"}, r"not a number"),
    ({"proto": "icmp", "port": 22, "host": "any"}, r"needs proto 'tcp' or 'udp'"),
    ({"proto": "tcp", "port": 22}, r"at least one of host, group, groups, cidr"),
    ({"proto": "tcp", "port": 22, "host": "wn1nope"}, r"inbound\[0\]: host:"),
    ({"proto": "tcp", "port": 22, "cidr": "10.1.0.1/24"}, r"cidr '10.1.0.1/24'"),
    ({"proto": "tcp", "port": 22, "groups": []}, r"non-empty list"),
    ({"proto": "tcp", "port": 22, "host": "any", "ports": 1}, r"unknown key 'ports'"),
])
def test_rule_errors_name_the_rule(rule, message):
    with pytest.raises(ConfigError, match=message):
        parse_rules({"inbound": [rule]})


def test_config_level_errors():
    with pytest.raises(ConfigError, match="unknown key 'inbond'"):
        parse_rules({"inbond": []})
    with pytest.raises(ConfigError, match="must be a list"):
        parse_rules({"inbound": {"port": 1}})
    with pytest.raises(ConfigError, match="max_flows"):
        fw(max_flows=0)
    with pytest.raises(ConfigError, match="tcp_timeout"):
        fw(tcp_timeout=-1)


# --- decisions ---------------------------------------------------------------

def test_default_deny_both_ways():
    f = fw()
    assert inbound(f, tcp(PEER, ME, 40000, 22)) == "no-rule"
    assert outbound(f, tcp(ME, PEER, 40000, 22)) == "no-rule"
    assert inbound(f, icmp_echo(PEER, ME, 1)) == "no-rule"


def test_port_range_and_proto():
    f = fw(inbound=[{"proto": "tcp", "port": "8000-8080", "host": "any"}])
    assert inbound(f, tcp(PEER, ME, 1, 8000)) is None
    assert inbound(f, tcp(PEER, ME, 1, 8080)) is None
    assert inbound(f, tcp(PEER, ME, 1, 8081)) == "no-rule"
    assert inbound(f, tcp(PEER, ME, 1, 7999)) == "no-rule"
    assert inbound(f, udp(PEER, ME, 1, 8000)) == "no-rule"


def test_groups_are_all_required_and_host_and_cidr_select():
    f = fw(inbound=[
        {"proto": "tcp", "port": 22, "groups": ["ops", "web"]},
        {"proto": "tcp", "port": 80, "host": PEER_ID.text()},
        {"proto": "udp", "port": 53, "cidr": "10.1.0.0/28"},
    ])
    assert inbound(f, tcp(PEER, ME, 1, 22), groups=frozenset({"web"})) == "no-rule"
    assert inbound(f, tcp(PEER, ME, 1, 22), groups=frozenset({"web", "ops", "x"})) is None
    assert inbound(f, tcp(PEER, ME, 2, 80)) is None
    assert inbound(f, tcp(PEER, ME, 2, 80), peer=OTHER_ID) == "no-rule"
    assert inbound(f, udp(PEER, ME, 3, 53)) is None
    assert inbound(f, udp("10.1.0.99", ME, 3, 53)) == "no-rule"


def test_selectors_in_one_rule_must_all_match():
    f = fw(inbound=[{"proto": "any", "port": "any", "group": "web", "cidr": "10.1.0.2/32"}])
    assert inbound(f, udp(PEER, ME, 1, 9)) is None
    assert inbound(f, udp("10.1.0.3", ME, 1, 9)) == "no-rule"
    assert inbound(f, udp(PEER, ME, 2, 9), groups=frozenset()) == "no-rule"
    # ...but a tracked flow is keyed by the peer too: the same 5-tuple from another member is judged anew.
    assert inbound(f, udp(PEER, ME, 1, 9), peer=OTHER_ID, groups=WEB) is None
    assert f.counters["rule_pass"] == 2


def test_conntrack_lets_replies_back_and_only_replies():
    f = fw(outbound=[{"proto": "any", "port": "any", "host": "any"}])
    assert outbound(f, tcp(ME, PEER, 40000, 443)) is None
    assert inbound(f, tcp(PEER, ME, 443, 40000, flags=0x12)) is None  # SYN-ACK
    assert inbound(f, tcp(PEER, ME, 443, 40001, flags=0x12)) == "no-rule"  # other port
    assert inbound(f, tcp(PEER, ME, 444, 40000)) == "no-rule"
    assert outbound(f, udp(ME, PEER, 5000, 53)) is None
    assert inbound(f, udp(PEER, ME, 53, 5000)) is None
    assert outbound(f, icmp_echo(ME, PEER, ident=9)) is None
    assert inbound(f, icmp_echo(PEER, ME, ident=9, reply=True)) is None
    assert inbound(f, icmp_echo(PEER, ME, ident=10, reply=True)) == "no-rule"
    # A flow is keyed by addresses too: another member cannot ride it.
    assert inbound(f, udp("10.1.0.3", ME, 53, 5000)) == "no-rule"


def test_inbound_allowed_flow_lets_our_replies_out():
    f = fw(inbound=[{"proto": "icmpv6", "port": "any", "host": "any"}])
    assert inbound(f, icmp_echo("fd00::2", "fd00::1", ident=3)) is None
    assert outbound(f, icmp_echo("fd00::1", "fd00::2", ident=3, reply=True)) is None
    assert outbound(f, icmp_echo("fd00::1", "fd00::2", ident=4)) == "no-rule"


def test_flows_time_out_per_protocol_and_refresh_on_use():
    f = fw(outbound=[{"proto": "any", "port": "any", "host": "any"}], udp_timeout=10, tcp_timeout=100)
    outbound(f, udp(ME, PEER, 5000, 53), now=0)
    outbound(f, tcp(ME, PEER, 5000, 22), now=0)
    assert inbound(f, udp(PEER, ME, 53, 5000), now=9) is None  # refreshes to 19
    assert inbound(f, udp(PEER, ME, 53, 5000), now=18.5) is None
    assert inbound(f, udp(PEER, ME, 53, 5000), now=40) == "no-rule"
    assert inbound(f, tcp(PEER, ME, 22, 5000), now=99) is None
    assert inbound(f, tcp(PEER, ME, 22, 5000), now=300) == "no-rule"
    assert f.counters["expired"] >= 2


def test_table_is_bounded_and_evicts_least_recently_used():
    f = fw(outbound=[{"proto": "udp", "port": "any", "host": "any"}], max_flows=3)
    for port in (1, 2, 3):
        outbound(f, udp(ME, PEER, port, 53), now=0)
    inbound(f, udp(PEER, ME, 53, 1), now=1)  # flow 1 is now the most recently used
    outbound(f, udp(ME, PEER, 4, 53), now=2)  # evicts flow 2
    assert len(f) == 3
    assert f.counters["evicted"] == 1
    assert inbound(f, udp(PEER, ME, 53, 2), now=3) == "no-rule"
    assert inbound(f, udp(PEER, ME, 53, 1), now=3) is None
    assert inbound(f, udp(PEER, ME, 53, 4), now=3) is None
    for port in range(100, 200):
        outbound(f, udp(ME, PEER, port, 53), now=4)
    assert len(f) == 3


def test_expire_sweeps_old_flows():
    f = fw(outbound=[{"proto": "udp", "port": "any", "host": "any"}], udp_timeout=5)
    for port in range(10):
        outbound(f, udp(ME, PEER, port + 1, 53), now=port)
    assert f.expire(now=8) == 4  # flows opened at 0..3 expire at 5..8
    assert len(f) == 6


def test_icmp_errors_pass_only_for_tracked_flows():
    f = fw(outbound=[{"proto": "tcp", "port": "any", "host": "any"}])
    sent = tcp(ME, PEER, 40000, 443, df=True)
    assert outbound(f, sent) is None
    assert inbound(f, icmp_error(PEER, ME, sent[:28], v4_type=3, code=4)) is None  # frag needed
    stray = tcp(ME, PEER, 40001, 443)
    assert inbound(f, icmp_error(PEER, ME, stray[:28])) == "no-rule"
    sent6 = tcp("fd00::1", "fd00::2", 1234, 80)
    assert outbound(f, sent6) is None
    assert inbound(f, icmp_error("fd00::2", "fd00::1", sent6[:48], v6_type=2, code=0)) is None


def test_fragments_follow_their_allowed_first_fragment():
    f = fw(inbound=[{"proto": "udp", "port": 53, "host": "any"}])
    seg = struct.pack("!HHHH", 1000, 53, 2000, 0) + bytes(16)
    first = ipv4(PEER, ME, 17, seg, ident=77, mf=True)
    later = ipv4(PEER, ME, 17, bytes(32), ident=77, offset=24)
    orphan = ipv4(PEER, ME, 17, bytes(32), ident=78, offset=24)
    assert inbound(f, first) is None
    assert inbound(f, later) is None
    assert inbound(f, orphan) == "no-rule"
    # First fragment to a denied port: its later fragments are not let through either.
    seg_denied = struct.pack("!HHHH", 1000, 54, 2000, 0) + bytes(16)
    assert inbound(f, ipv4(PEER, ME, 17, seg_denied, ident=79, mf=True)) == "no-rule"
    assert inbound(f, ipv4(PEER, ME, 17, bytes(32), ident=79, offset=24)) == "no-rule"


def test_fragment_port_rule():
    f = fw(inbound=[{"proto": "any", "port": "fragment", "host": "any"}])
    assert inbound(f, ipv4(PEER, ME, 17, bytes(32), ident=5, offset=24)) is None
    assert inbound(f, udp(PEER, ME, 1, 2)) == "no-rule"


def test_rule_order_does_not_change_outcome_and_runs_are_deterministic():
    rules = [{"proto": "tcp", "port": p, "host": "any"} for p in (22, 80, 443)]
    rng = random.Random(4)
    pkts = [tcp(PEER, ME, rng.randrange(1, 65536), rng.choice([22, 80, 443, 8080])) for _ in range(50)]
    a = fw(inbound=rules)
    b = fw(inbound=list(reversed(rules)))
    assert [inbound(a, p) for p in pkts] == [inbound(b, p) for p in pkts]
    assert PROTO_TCP == parse_packet(pkts[0]).proto
