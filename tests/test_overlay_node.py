"""The overlay interface inside whole nodes (NodeCore + OverlayPlane) on the deterministic harness.

The same code the daemon runs, on a virtual clock: an address resolves to the node whose key derives
it, through the DHT, and keeps resolving while nodes leave, join and restart; a node that does not hold
the key never receives the address's traffic; LAN beacons bring two nodes together and cannot redirect.
"""

import random

from vpn_packets import icmp_echo, tcp

from weftnet.core.contact import Contact
from weftnet.core.identity import Identity
from weftnet.core.node import LanPeer, NodeCore
from weftnet.core.overlay import OVERLAY_TUN, OverlayPacket
from weftnet.core.vpn.firewall import Firewall, parse_packet
from weftnet.core.wire import encode
from weftnet.sim.harness import SimNetwork

RULES = {"outbound": [{"proto": "any", "port": "any", "host": "any"}],
         "inbound": [{"proto": "icmpv6", "port": "any", "host": "any"}]}


def node(net, identity, i, seed, join=None):
    core = NodeCore(identity, random.Random(seed * 1000 + i), net.now)
    core.set_local_endpoint((f"198.18.{i}.1", 4500))  # one /24 each: the per-prefix limit would hide some
    net.add(core.endpoint, core)
    core.overlay.enable(net.now, firewall=Firewall.from_config(RULES))
    if join is not None:
        core.connect(join.endpoint, net.now)
        net.flush(core.endpoint)
    return core


def build(seed, n):
    net = SimNetwork(seed)
    rng = random.Random(seed)
    nodes = [node(net, Identity.generate(rng), 0, seed)]
    for i in range(1, n):
        nodes.append(node(net, Identity.generate(rng), i, seed, join=nodes[0]))
    net.run_for(20.0)
    return net, rng, nodes


def tun(core) -> list[bytes]:
    out = [p for key, _vnet, p in core.vpn.tun_out if key == OVERLAY_TUN]
    core.vpn.tun_out.clear()
    return out


def send(net, core, packet, settle=3.0):
    core.overlay_outbound([packet], net.now)
    net.flush(core.endpoint)
    net.run_for(settle)


def echo(src, dst, ident=1, reply=False):
    return icmp_echo(str(src.address), str(dst.address), ident, reply=reply)


def test_an_address_reaches_the_node_that_holds_its_key_and_the_reply_needs_no_lookup():
    net, rng, nodes = build(seed=3, n=8)
    a, c = nodes[1], nodes[6]
    tun(c)
    ping = echo(a.identity, c.identity, 9)
    send(net, a, ping)
    assert tun(c) == [ping]
    assert a.overlay.cache.stats["lookups"] + a.overlay.cache.stats["hits"] >= 1
    reply = echo(c.identity, a.identity, 9, reply=True)
    send(net, c, reply)
    assert tun(a) == [reply]
    assert c.overlay.cache.stats["lookups"] == 0  # the reply went by what the request taught
    st = c.status(net.now)["overlay"]
    assert st["packets_in"] == 1 and st["peers"][a.node_id.text()]["packets_out"] == 1


def test_ping_and_trace_take_an_overlay_address():
    net, rng, nodes = build(seed=10, n=8)
    a, c = nodes[1], nodes[7]
    ops = {a.ping(c.address, net.now): "ping", a.trace(c.address, net.now): "trace"}
    net.flush(a.endpoint)
    net.run_for(10.0)
    done = {}
    while (ev := a.next_event()) is not None:
        if getattr(ev, "op_id", None) in ops:
            done[ops[ev.op_id]] = ev
    assert done["ping"].ok and done["ping"].node_id == c.node_id
    assert done["trace"].ok and done["trace"].hops[-1]["node_id"] == c.node_id
    nobody = Identity.generate(rng).address
    op = a.trace(nobody, net.now)
    net.flush(a.endpoint)
    net.run_for(20.0)
    while (ev := a.next_event()) is not None:
        if getattr(ev, "op_id", None) == op:
            assert not ev.ok and "no node with that address" in ev.error
            break
    else:
        raise AssertionError("the trace to nobody never completed")


def test_an_address_nobody_holds_gets_address_unreachable_and_is_not_looked_up_again_at_once():
    net, rng, nodes = build(seed=4, n=6)
    a = nodes[2]
    ghost = Identity.generate(rng)
    send(net, a, echo(a.identity, ghost, 1), settle=12.0)
    (err,) = tun(a)
    info = parse_packet(err)
    assert info.icmp_type == 1 and info.src == ghost.address.packed and info.dst == a.address.packed
    lookups = a.overlay.cache.stats["lookups"]
    send(net, a, echo(a.identity, ghost, 2))
    assert len(tun(a)) == 1 and a.overlay.cache.stats["lookups"] == lookups


def test_a_scan_of_random_addresses_starts_few_lookups():
    net, rng, nodes = build(seed=5, n=6)
    a = nodes[1]
    packets = [tcp(str(a.address), str(Identity.generate(rng).address) if i < 5 else
                   "fd77:6566:" + ":".join(f"{rng.getrandbits(16):x}" for _ in range(6)), 40000, 22)
               for i in range(3000)]
    a.overlay_outbound(packets, net.now)
    net.flush(a.endpoint)
    assert a.overlay.cache.stats["lookups"] <= 32 and a.overlay.cache.stats["refused"] >= 2900
    assert a.dht.summary()["operations_in_flight"] <= 32 + 2
    net.run_for(15.0)


def test_a_node_that_does_not_hold_the_key_never_receives_the_traffic():
    net, rng, nodes = build(seed=6, n=7)
    a, mallory = nodes[1], nodes[5]
    victim = Identity.generate(rng)  # a key whose owner is not online; its public key is no secret
    # Mallory answers every lookup with the victim's key at Mallory's own endpoint.
    # (_nodes_reply builds every Nodes/NearNodes reply: in a session and to a sessionless query alike)
    real_reply = mallory.dht._nodes_reply

    def poisoned(sender, rid, target, near=False):
        mallory.dht.table.add(Contact(victim.public_key, mallory.endpoint), net.now)
        return real_reply(sender, rid, target, near)

    mallory.dht._nodes_reply = poisoned
    tun(mallory)
    for i in range(3):
        send(net, a, echo(a.identity, victim, i), settle=12.0)
    # The poison worked: a query or a handshake for the victim's key went to Mallory's endpoint
    # (the query sealed to the victim's key; its second datagram, the handshake, only if paid for) ...
    assert mallory.sessionless.stats["auth_failures"] + mallory.transport.stats["auth_failures"] >= 1
    # ... and could not complete there, so nothing reached Mallory's interface.
    assert not a.transport.has_session(victim.node_id)
    assert tun(mallory) == [] and mallory.status(net.now)["overlay"]["packets_in"] == 0
    # Mallory sending from the victim's address over its own session is refused at the receiver.
    forged = encode(OverlayPacket(echo(victim, a.identity, 77)))
    mallory.transport.send(Contact(a.identity.public_key, a.endpoint), forged, net.now)
    net.flush(mallory.endpoint)
    net.run_for(3.0)
    assert [p for p in tun(a) if parse_packet(p).icmp_type == 128] == []  # (A's own "unreachable" errors aside)
    assert a.status(net.now)["overlay"]["drops"].get("spoofed-source", 0) >= 1


def test_resolution_under_churn_departures_arrivals_and_restarts():
    net, rng, nodes = build(seed=7, n=12)
    a = nodes[1]
    others = nodes[2:]

    def ping_all(targets, rounds=4):
        """Send to every target once a second for ``rounds`` seconds; which targets got one."""
        for t in targets:
            tun(t)
        for i in range(rounds):
            a.overlay_outbound([echo(a.identity, t.identity, 100 + i) for t in targets], net.now)
            net.flush(a.endpoint)
            net.run_for(1.0)
        net.run_for(12.0)
        return {t.node_id for t in targets if tun(t)}

    assert ping_all(others) == {t.node_id for t in others}
    # Three nodes leave, one restarts on the same endpoint (its sessions are gone), one on a new endpoint,
    # and two new nodes join.
    gone = others[:3]
    for g in gone:
        net.remove(g.endpoint)
    same_place, moved = others[3], others[4]
    net.remove(same_place.endpoint)
    net.remove(moved.endpoint)
    restarted = NodeCore(same_place.identity, random.Random(70), net.now)
    restarted.set_local_endpoint(same_place.endpoint)
    net.add(restarted.endpoint, restarted)
    restarted.overlay.enable(net.now, firewall=Firewall.from_config(RULES))
    restarted.connect(nodes[0].endpoint, net.now)
    net.flush(restarted.endpoint)
    relocated = node(net, moved.identity, 40, 71, join=nodes[0])
    newcomers = [node(net, Identity.generate(rng), 50 + i, 72, join=nodes[0]) for i in range(2)]
    net.run_for(30.0)
    live = [restarted, relocated, *newcomers, *others[5:]]
    reached = ping_all(live, rounds=25)
    assert reached == {t.node_id for t in live}, "a live node's address did not resolve to it"
    # The departed nodes' addresses now answer "address unreachable" (their lookups find nobody).
    tun(a)
    a.overlay_outbound([echo(a.identity, g.identity, 300) for g in gone], net.now)
    net.flush(a.endpoint)
    net.run_for(40.0)
    a.overlay_outbound([echo(a.identity, g.identity, 301) for g in gone], net.now)
    net.flush(a.endpoint)
    net.run_for(40.0)
    errors = [parse_packet(p) for p in tun(a)]
    assert {e.src for e in errors if e.icmp_type == 1} == {g.address.packed for g in gone}


def test_a_node_that_restarted_silently_is_found_again_by_the_liveness_probe():
    net, rng, nodes = build(seed=9, n=5)
    a, c = nodes[1], nodes[3]
    send(net, a, echo(a.identity, c.identity, 1))
    assert len(tun(c)) == 1
    # c restarts in place and talks to nobody: a's session with it is dead, though a cannot know yet.
    net.remove(c.endpoint)
    c2 = NodeCore(c.identity, random.Random(90), net.now)
    c2.set_local_endpoint(c.endpoint)
    net.add(c2.endpoint, c2)
    c2.overlay.enable(net.now, firewall=Firewall.from_config(RULES))
    got = []
    for i in range(20):  # a ping a second
        send(net, a, echo(a.identity, c.identity, 10 + i), settle=1.0)
        got += tun(c2)
    assert got, "the restarted node was never reached again"
    assert a.overlay.stats["probes"] >= 1 and a.overlay.stats["dead_peers"] == 1
    # Well before the old session would have expired (180 s): within the liveness intervals and a lookup.
    assert len(got) >= 8


def test_one_lost_liveness_ping_does_not_close_a_working_session():
    """Traffic that goes one way (a UDP stream) draws a liveness ping; on a lossy path that ping
    may be lost. It is sent again a second later, so the node is not taken for dead and its session
    is not closed (closing it made the paths engine start over: tests/test_paths_netns.py's
    duplicate class ran on one link, the blackhole test found no path at all)."""
    net, rng, nodes = build(seed=9, n=5)
    a, c = nodes[1], nodes[3]
    send(net, a, echo(a.identity, c.identity, 1))
    ping, lost = a.transport.ping, []

    def lossy_ping(node_id, now):  # the first liveness ping to c is lost on the way
        if node_id == c.node_id and not lost:
            lost.append(now)
            net.partition([a.endpoint], [c.endpoint])
        return ping(node_id, now)

    a.transport.ping = lossy_ping
    for i in range(240):  # a packet every 0.05 s for 12 s, none coming back
        a.overlay_outbound([echo(a.identity, c.identity, 10 + i)], net.now)
        net.flush(a.endpoint)
        net.run_for(0.05)
        net.heal()
    assert lost, "no liveness ping went to c"
    assert a.overlay.stats["probes"] >= 2 and a.overlay.stats["dead_peers"] == 0
    info = next(p for p in a.transport.peers(net.now) if p.node_id == c.node_id)
    assert info.session_age is not None and info.session_age > 12.0  # the same session all along


def test_lan_beacons_bring_two_nodes_together_and_a_replayed_beacon_redirects_nothing():
    net = SimNetwork(8)
    rng = random.Random(8)
    e = node(net, Identity.generate(rng), 1, 8)
    f = node(net, Identity.generate(rng), 2, 8)
    # The driver broadcasts e's beacon; f hears it from e's address.
    f.lan_received(e.lan_beacon(4500, net.now), e.endpoint[0], net.now)
    net.flush(f.endpoint)
    net.run_for(5.0)
    assert f.transport.has_session(e.node_id) and e.node_id.int in {c.node_id.int for c in f.dht.export_contacts()}
    events = []
    while (ev := f.next_event()) is not None:
        events.append(ev)
    assert any(isinstance(ev, LanPeer) and ev.node_id == e.node_id for ev in events)
    send(net, f, echo(f.identity, e.identity, 5))
    assert len(tun(e)) == 1
    # Mallory replays g's beacon from her own address: g's key is not there, so the Hello f sends
    # first is answered with Mallory's key and f goes no further (no Init: a beacon's source may be
    # spoofed, docs/security.md item 17), and f holds no session with g afterwards.
    g = node(net, Identity.generate(rng), 3, 8)
    mallory = node(net, Identity.generate(rng), 9, 8)
    beacon = g.lan_beacon(4500, net.now)
    f.lan_received(beacon, mallory.endpoint[0], net.now)
    net.flush(f.endpoint)
    net.run_for(15.0)
    assert not f.transport.has_session(g.node_id) and f.lan.stats["failed"] == 1
    assert not mallory.transport.peers() and not f.transport.has_session(mallory.node_id)
    f.lan_received(beacon, mallory.endpoint[0], net.now)  # the same beacon again is a replay
    assert f.lan.stats["replayed"] == 1
    # g's own next beacon, from g's address, after the cooldown: that one works.
    net.run_for(20.0)
    f.lan_received(g.lan_beacon(4500, net.now), g.endpoint[0], net.now)
    net.flush(f.endpoint)
    net.run_for(5.0)
    assert f.transport.has_session(g.node_id)
