"""Reaching a NATed node this node never met, by its ID or its overlay address (simulator).

A lookup names such a node (its relay knows it), but the node cannot answer a lookup request: its
NAT drops datagrams from anyone it has not sent to. Before, a ping then failed with "no node with
that ID or address was found", and overlay traffic to its address got "address unreachable". Unless,
as in small labs, the two nodes had happened to meet during the DHT join, when the retries of a
handshake to an address a hint's record named crossed (security.md item 19: those retries are now
the hint's source's to pay for, so they no longer happen for free). Now the named but silent node is
reached as the user asked: on the paths its own endpoint record names.
"""

from __future__ import annotations

from reach_lab import SimLab
from vpn_packets import icmp_echo

from weftnet.core.overlay import OVERLAY_TUN
from weftnet.core.vpn.firewall import Firewall

RULES = {"outbound": [{"proto": "any", "port": "any", "host": "any"}],
         "inbound": [{"proto": "icmpv6", "port": "any", "host": "any"}]}


def unmet(kinds=("restricted", "symmetric"), seed=4) -> SimLab:
    lab = SimLab(seed=seed)
    lab.public("P", relay=True)
    lab.public("Q", relay=True)
    for name, kind in zip("AB", kinds):
        lab.behind(name, kind)
    lab.join_all()
    lab.run(20)  # registered with their relays, records published
    a, b = lab.cores["A"], lab.cores["B"]
    assert not a.transport.has_session(b.node_id) and not b.transport.has_session(a.node_id)
    return lab


def test_a_ping_reaches_a_nated_node_never_met_through_its_record():
    lab = unmet()
    r = lab.ping("A", "B")
    assert r.ok, r.error


def test_overlay_traffic_reaches_a_nated_node_never_met_instead_of_address_unreachable():
    lab = unmet()
    a, b = lab.cores["A"], lab.cores["B"]
    for core in (a, b):
        core.overlay.enable(lab.net.now, firewall=Firewall.from_config(RULES))
    got, refused = [], []
    for i in range(20):  # an application sending once a second
        a.overlay_outbound([icmp_echo(str(a.address), str(b.address), i)], lab.net.now)
        lab.net.flush(a.endpoint)
        lab.run(1.0)
        got += [p for key, _v, p in b.vpn.tun_out if key == OVERLAY_TUN]
        b.vpn.tun_out.clear()
        refused += [p for key, _v, p in a.vpn.tun_out if key == OVERLAY_TUN]  # ICMPv6 unreachable back to the app
        a.vpn.tun_out.clear()
    assert got, "no packet reached B"
    assert not refused, "the application was told the address is unreachable"
    assert a.overlay.stats["reaching"] >= 1
