"""Private networks inside whole nodes (NodeCore + VpnPlane), on the simulated network.

The same code the daemon runs: members find each other by overlay IP through
directory records in the DHT, packets travel in sessions, non-members never
reach a TUN, and two networks with the same prefix stay apart.
"""

import random

from vpn_packets import icmp_echo, tcp

from weftnet.core.contact import Contact
from weftnet.core.vpn.firewall import Firewall
from weftnet.core.identity import Identity
from weftnet.core.vpn.netcert import NetworkAuthority, directory_key
from weftnet.core.node import NodeCore
from weftnet.core.vpn.network import VpnNetwork, VpnPacket
from weftnet.core.vpn.plane import VpnMemberEvent, VpnRevocations
from weftnet.core.wire import encode
from weftnet.sim.harness import SimNetwork

ALLOW_ALL = {"outbound": [{"proto": "any", "port": "any", "host": "any"}],
             "inbound": [{"proto": "any", "port": "any", "host": "any"}]}


def build(seed=7, n=6):
    net = SimNetwork(seed)
    rng = random.Random(seed)
    nodes = []
    for i in range(n):
        core = NodeCore(Identity.generate(rng), random.Random(seed * 100 + i), net.now)
        addr = (f"198.18.{i}.1", 4500)  # one /24 each: the per-prefix limit would hide some
        core.set_local_endpoint(addr)
        net.add(addr, core)
        nodes.append(core)
    for core in nodes[1:]:
        core.connect(nodes[0].endpoint, net.now)
        net.flush(core.endpoint)
    net.run_for(20.0)
    return net, rng, nodes


def member(auth, core, ip, now, serial, firewall=ALLOW_ALL):
    cert = auth.sign_member(core.node_id, [ip], not_before=int(now) - 10, not_after=int(now) + 86400,
                            serial=serial)
    vnet = VpnNetwork(auth.descriptor, cert, now, firewall=Firewall.from_config(firewall))
    core.vpn.add_network(vnet, auth.directory_records(cert))
    return vnet


def tun_packets(core, network_id):
    out = [p for nid, _vnet, p in core.vpn.tun_out if nid == network_id]
    core.vpn.tun_out.clear()
    return out


def send(net, core, vnet, packet):
    core.vpn_outbound(vnet.network_id, [packet], net.now)
    net.flush(core.endpoint)
    net.run_for(5.0)


def test_members_find_each_other_by_address_and_networks_with_one_prefix_stay_apart():
    net, rng, nodes = build()
    lab = NetworkAuthority.create("lab", ["10.1.0.0/24"], rng, net.now)
    other = NetworkAuthority.create("other", ["10.1.0.0/24"], rng, net.now)
    a_lab = member(lab, nodes[1], "10.1.0.1", net.now, 1)
    member(lab, nodes[2], "10.1.0.2", net.now, 2)
    a_other = member(other, nodes[1], "10.1.0.1", net.now, 1)
    member(other, nodes[3], "10.1.0.2", net.now, 2)
    for core in nodes[1:4]:
        core.vpn_publish(net.now)
        net.flush(core.endpoint)
    net.run_for(10.0)
    # The directory record of 10.1.0.2 in "lab" is in the DHT, under the authority's key.
    assert any(directory_key(lab.descriptor.authority_key, "10.1.0.2") == r.key
               for core in nodes if core is not nodes[2] for r in core.dht.store.records())

    ping = icmp_echo("10.1.0.1", "10.1.0.2", ident=5)
    # Node 1 does not know who holds 10.1.0.2: the first packet is dropped and starts a lookup.
    send(net, nodes[1], a_lab, ping)
    assert a_lab.drops.get("no-route") == 1 and nodes[1].vpn.stats["resolved"] == 1
    assert a_lab.route("10.1.0.2") == nodes[2].node_id
    events = []
    while (ev := nodes[1].next_event()) is not None:
        events.append(ev)
    assert any(isinstance(e, VpnMemberEvent) and e.change == "added" and e.node_id == nodes[2].node_id
               for e in events)
    # The retry arrives at node 2's TUN, and only there.
    send(net, nodes[1], a_lab, ping)
    assert tun_packets(nodes[2], lab.network_id) == [ping]
    assert tun_packets(nodes[3], other.network_id) == []
    # The same addresses in the other network reach node 3 instead.
    send(net, nodes[1], a_other, ping)
    send(net, nodes[1], a_other, ping)
    assert tun_packets(nodes[3], other.network_id) == [ping]
    assert tun_packets(nodes[2], lab.network_id) == []
    # The reply comes back to node 1 (node 2 learned node 1 from its certificate offer).
    reply = icmp_echo("10.1.0.2", "10.1.0.1", ident=5, reply=True)
    lab_b = nodes[2].vpn.switch.networks[lab.network_id]
    send(net, nodes[2], lab_b, reply)
    assert tun_packets(nodes[1], lab.network_id) == [reply]
    st = nodes[2].status(net.now)["networks"][0]
    assert st["network"] == "lab" and st["peers"][nodes[1].node_id.text()]["packets_in"] == 1


def test_a_non_member_never_reaches_the_tun_and_a_firewall_rule_holds():
    net, rng, nodes = build(seed=11)
    lab = NetworkAuthority.create("lab", ["10.1.0.0/24", "fd00:1::/64"], rng, net.now)
    icmp_only = {"outbound": [{"proto": "any", "port": "any", "host": "any"}],
                 "inbound": [{"proto": "icmp", "port": "any", "host": "any"}]}
    a = member(lab, nodes[1], "10.1.0.1", net.now, 1)
    member(lab, nodes[2], "10.1.0.2", net.now, 2, firewall=icmp_only)
    for core in nodes[1:3]:
        core.vpn_publish(net.now)
        net.flush(core.endpoint)
    net.run_for(10.0)
    # A node outside the network forges a packet from a member's address.
    stranger = nodes[4]
    forged = encode(VpnPacket(lab.network_id, icmp_echo("10.1.0.1", "10.1.0.2", ident=1)))
    stranger.transport.send(Contact(nodes[2].identity.public_key, nodes[2].endpoint), forged, net.now)
    net.flush(stranger.endpoint)
    net.run_for(3.0)
    b = nodes[2].vpn.switch.networks[lab.network_id]
    assert tun_packets(nodes[2], lab.network_id) == []
    assert b.drops.get("not-member", 0) >= 1
    # A member's TCP to a port the receiver does not allow is dropped there; ICMP passes.
    syn = tcp("10.1.0.1", "10.1.0.2", 40000, 22)
    send(net, nodes[1], a, syn)  # resolves 10.1.0.2
    send(net, nodes[1], a, syn)
    assert tun_packets(nodes[2], lab.network_id) == []
    assert b.drops.get("firewall") == 1
    echo = icmp_echo("10.1.0.1", "10.1.0.2", ident=9)
    send(net, nodes[1], a, echo)
    assert tun_packets(nodes[2], lab.network_id) == [echo]


def test_a_revocation_spreads_through_the_dht_and_the_revoked_member_is_cut_off():
    net, rng, nodes = build(seed=13)
    lab = NetworkAuthority.create("lab", ["10.1.0.0/24"], rng, net.now)
    a = member(lab, nodes[1], "10.1.0.1", net.now, 1)
    b = member(lab, nodes[2], "10.1.0.2", net.now, 2)
    c = member(lab, nodes[3], "10.1.0.3", net.now, 3)
    for core in nodes[1:4]:
        core.vpn_publish(net.now)
        net.flush(core.endpoint)
    net.run_for(10.0)
    ping = icmp_echo("10.1.0.2", "10.1.0.3", ident=3)
    send(net, nodes[2], b, ping)
    send(net, nodes[2], b, ping)
    assert tun_packets(nodes[3], lab.network_id) == [ping]
    # The owner revokes certificate #2 (node 2); node 1 got the file and publishes the record.
    rl = lab.revocation_list(seq=1, issued_at=int(net.now), serials=[2])
    nodes[1].vpn.add_published(lab.revocation_record(rl))
    nodes[1].vpn_publish(net.now)
    net.flush(nodes[1].endpoint)
    net.run_for(10.0)
    for core in (nodes[2], nodes[3]):
        core.vpn_check_revocations(net.now)
        net.flush(core.endpoint)
    net.run_for(10.0)
    assert c.revocations is not None and c.revocations.seq == 1 and c.route("10.1.0.2") is None
    events = []
    while (ev := nodes[3].next_event()) is not None:
        events.append(ev)
    assert any(isinstance(e, VpnRevocations) and not e.own_revoked for e in events)
    assert any(isinstance(e, VpnMemberEvent) and e.change == "removed" and e.detail == "revoked" for e in events)
    # Node 2 learned it too and sends nothing more; what it sent before the news is refused.
    assert b.own_revoked
    send(net, nodes[2], b, ping)
    assert b.drops.get("own-cert-revoked") == 1
    stale = encode(VpnPacket(lab.network_id, ping))
    nodes[2].transport.send_to(nodes[3].node_id, stale, net.now)
    net.flush(nodes[2].endpoint)
    net.run_for(2.0)
    assert tun_packets(nodes[3], lab.network_id) == [] and c.drops.get("not-member", 0) >= 1
    # A member that comes back with the revoked certificate cannot join again.
    nodes[2].transport.send_to(nodes[3].node_id, b._offer_reply, net.now)
    net.flush(nodes[2].endpoint)
    net.run_for(2.0)
    assert c.drops.get("cert-revoked", 0) >= 1 and c.route("10.1.0.2") is None
    assert a.revocations is None  # node 1 only relayed the record; it checks on its own schedule
