"""Reach in the simulator: real NodeCores behind modelled NATs (tests/reach_lab.py, weftnet.sim.nat).

Virtual time, so the latency figures here are exact for the model (10 ms one way);
the real NAT lab in namespaces is tests/test_reach_netns.py.
"""

from __future__ import annotations

import pytest

from reach_lab import SimLab

from weftnet.core.node import TextReceived


def lab_of(*kinds: str, seed: int = 1, **kw) -> SimLab:
    """Two public relays (P, Q), then clients A, B, ... behind the given NAT kinds."""
    lab = SimLab(seed=seed, **kw)
    lab.public("P", relay=True)
    lab.public("Q", relay=True)
    for name, kind in zip("ABCD", kinds):
        lab.behind(name, kind)
    return lab


def first_event_time(lab: SimLab, name: str, kind: str, since: float) -> float | None:
    for t, ev in lab.events[name]:
        if t >= since and getattr(ev, "kind", None) == kind:
            return t
    return None


def test_endpoint_independent_pair_goes_direct_within_two_seconds_and_relays_stay_quiet():
    lab = lab_of("port-restricted", "port-restricted")
    lab.join("P", "Q")
    lab.run(1)
    lab.join("B", "P")
    lab.run(20)  # B is settled (registered with relays, record published) before A arrives
    t0 = lab.net.now
    lab.join("A", "P")
    lab.run(20)
    assert lab.path("A", "B") == "direct" and lab.path("B", "A") == "direct"
    upgraded = [t for t, ev in lab.events["A"] if getattr(ev, "kind", "") == "path" and ev.path[0].isdigit()]
    assert upgraded and upgraded[0] - t0 < 2.0  # A's first packet to B went out at t0 (its bootstrap lookup)
    before = lab.forwarded()
    for _ in range(5):
        assert lab.ping("A", "B").ok and lab.ping("B", "A").ok
    r = lab.send("A", "B", "hello")
    assert r.ok
    assert any(isinstance(ev, TextReceived) and ev.text == "hello" for _, ev in lab.events["B"])
    assert lab.forwarded() == before  # every packet after the upgrade took the direct path


@pytest.mark.parametrize("kinds", [("port-restricted", "symmetric"), ("symmetric", "symmetric")])
def test_symmetric_nat_is_reached_through_a_relay(kinds):
    lab = lab_of(*kinds)
    lab.join_all()
    r = lab.ping("A", "B")
    assert r.ok, r.error
    lab.run(5)
    assert lab.path("A", "B") == "relay" and lab.path("B", "A") == "relay"
    before = lab.forwarded()
    assert lab.ping("B", "A").ok
    assert lab.send("A", "B", "through a relay").ok
    assert any(isinstance(ev, TextReceived) and ev.text == "through a relay" for _, ev in lab.events["B"])
    assert lab.forwarded() > before


@pytest.mark.parametrize("kinds", [("full-cone", "symmetric"), ("restricted", "port-restricted")])
def test_a_punch_towards_a_permissive_nat_upgrades_to_direct(kinds):
    lab = lab_of(*kinds)
    lab.join_all()
    assert lab.ping("B", "A").ok
    lab.run(5)
    assert lab.path("A", "B") == "direct" and lab.path("B", "A") == "direct"


@pytest.mark.parametrize("seed", [4, 5])
def test_an_address_restricted_nat_lets_a_symmetric_one_in_once_it_probed_the_nat_address(seed):
    """A behind an address-restricted NAT, B behind a symmetric one, meeting through a relay, A never
    having sent to B's NAT before (its NAT forgot everything). B's record names no reflexive endpoint
    (its ports fit nobody); its call-me-maybe names its NAT's address, A's probe there opens A's filter
    to that address, B's next probes get in from their fresh port and the pair goes direct. Before,
    with these seeds, it stayed relayed."""
    lab = lab_of("restricted", "symmetric", seed=seed)
    lab.join_all()
    a, b = lab.cores["A"], lab.cores["B"]
    for x, y in ((a, b), (b, a)):
        x.transport.close(y.node_id, lab.net.now)
    lab.run(1)
    lab.boxes["A"].flush()
    lab.run(30)  # A's relay keepalives open new mappings
    assert lab.ping("B", "A").ok
    lab.run(10)
    assert lab.path("A", "B") == "direct" and lab.path("B", "A") == "direct"


def test_udp_blocked_client_reaches_and_is_reached_over_tcp_to_a_relay():
    lab = lab_of("udp-blocked", "port-restricted")
    lab.join_all()
    assert lab.nat("A")["nat"] == "udp-blocked"
    assert lab.path("A", "P") == "tcp"
    assert lab.ping("B", "A").ok and lab.ping("A", "B").ok
    lab.run(5)
    assert lab.path("A", "B") == "relay" and lab.path("B", "A") == "relay"
    assert lab.send("B", "A", "over tcp").ok


@pytest.mark.parametrize("kind, nat, reachable", [
    ("public", "public", True),
    ("full-cone", "endpoint-independent", True),
    ("port-restricted", "endpoint-independent", False),
    ("symmetric", "endpoint-dependent", False),
    ("udp-blocked", "udp-blocked", False),
])
def test_each_node_classifies_its_own_nat(kind, nat, reachable):
    lab = lab_of("port-restricted")
    if kind == "public":
        lab.public("X")
    else:
        lab.behind("X", kind)
    lab.join_all()
    st = lab.nat("X")
    assert st["nat"] == nat and st["reachable"] is reachable
    relays = lab.cores["X"].reach.status(lab.net.now)["relays"]
    assert bool(relays) is (kind != "public")  # a node behind any NAT keeps relays


def steady_pings(lab: SimLab, a: str, b: str, seconds: float, every: float = 0.2) -> list[bool]:
    """Ping b from a every ``every`` seconds for ``seconds``; one bool per ping (answered or not)."""
    core = lab.cores[a]
    ops = {}
    end = lab.net.now + seconds
    while lab.net.now < end:
        ops[core.ping(lab.cores[b].node_id, lab.net.now)] = None
        lab.net.flush(lab.addrs[a])
        lab.net.run_for(every)
        lab.drain()
    lab.run(16)  # every ping completes (answered or timed out)
    for _, ev in lab.events[a]:
        if getattr(ev, "kind", "") == "ping" and ev.op_id in ops:
            ops[ev.op_id] = ev.ok
    return list(ops.values())


def sessions_made(lab: SimLab, name: str) -> int:
    return lab.cores[name].transport.stats["handshakes_completed"]


@pytest.mark.parametrize("new_ports", [False, True])
def test_nat_rebinding_mid_traffic_keeps_the_session(new_ports):
    lab = lab_of("port-restricted", "port-restricted")
    lab.join_all()
    assert lab.ping("A", "B").ok
    lab.run(5)
    assert lab.path("A", "B") == "direct"
    made = sessions_made(lab, "A") + sessions_made(lab, "B")
    lab.net.run_for(0.05)
    lab.net.flush_nat(lab.boxes["A"].ip, new_ports=new_ports)  # conntrack -F on A's router
    answered = steady_pings(lab, "A", "B", 15.0)
    assert all(answered[-20:])  # the last 4 s all answered
    assert sum(answered) >= len(answered) - 30  # at most a heartbeat and a fallback's worth lost
    lab.run(10)
    assert lab.path("A", "B") == "direct" and lab.path("B", "A") == "direct"
    new_port = lab.cores["B"].transport.current_path(lab.cores["A"].node_id)[1]
    assert (new_port != 4500) is new_ports  # with new ports, B followed A to its new mapping
    assert sessions_made(lab, "A") + sessions_made(lab, "B") == made  # no new handshake anywhere


def test_rebinding_of_a_relayed_symmetric_client_keeps_the_session():
    lab = lab_of("symmetric", "port-restricted")
    lab.join_all()
    assert lab.ping("A", "B").ok
    lab.run(5)
    assert lab.path("A", "B") == "relay"
    made = sessions_made(lab, "A") + sessions_made(lab, "B")
    lab.net.flush_nat(lab.boxes["A"].ip, new_ports=True)
    answered = steady_pings(lab, "A", "B", 10.0)
    assert all(answered[-20:]) and sum(answered) >= len(answered) - 2
    assert sessions_made(lab, "A") + sessions_made(lab, "B") == made


def test_keepalives_hold_a_punched_path_open_through_idle_time():
    lab = lab_of("port-restricted", "port-restricted", nat_timeout=40.0)
    lab.join_all()
    assert lab.ping("A", "B").ok
    lab.run(5)
    assert lab.path("A", "B") == "direct"
    lab.run(150)  # idle for almost four NAT timeouts; keepalives every 25 s
    before = lab.forwarded()
    assert lab.ping("A", "B").ok and lab.ping("B", "A").ok
    assert lab.path("A", "B") == "direct" and lab.forwarded() == before
    fell = [ev for _, ev in lab.events["A"] if getattr(ev, "what", "") == "path fell back to relay"]
    assert not fell


def test_without_keepalives_the_mapping_expires_and_the_session_falls_back_to_the_relay():
    # Relay sessions are still kept open; the direct path between A and B is not.
    lab = lab_of("port-restricted", "port-restricted", nat_timeout=40.0, reach={"keep_punched": 0.0})
    lab.join_all()
    assert lab.ping("A", "B").ok
    lab.run(5)
    assert lab.path("A", "B") == "direct"
    lab.run(150)
    answered = steady_pings(lab, "B", "A", 8.0)
    assert answered[-1]  # it still works (through a relay, then punched again) ...
    fell = [ev for _, ev in lab.events["B"] + lab.events["A"] if getattr(ev, "what", "") == "path fell back to relay"]
    assert fell  # ... because the dead direct path was noticed


def test_a_node_that_moves_to_another_network_is_followed_without_a_new_handshake():
    lab = lab_of("port-restricted", "port-restricted")
    lab.join_all()
    assert lab.ping("A", "B").ok
    lab.run(5)
    a = lab.cores["A"]
    seq_before = a.reach.status(lab.net.now)["record"]["seq"]
    made = sessions_made(lab, "B")
    # A's laptop moves: a new private address behind a new NAT with a new public address.
    old = lab.addrs["A"]
    new = ("10.9.9.2", 4500)
    box = lab.net.add_box("port-restricted", "198.51.100.99")
    lab.net.place(new[0], box)
    lab.net.remove(old)
    lab.addrs["A"] = new
    lab.net.add(new, a)
    a.set_local_endpoints([new], lab.net.now)
    answered = steady_pings(lab, "A", "B", 10.0)
    assert all(answered[-20:])
    lab.run(30)
    assert lab.cores["B"].transport.current_path(a.node_id)[0] == "198.51.100.99"  # B followed at once
    st = a.reach.status(lab.net.now)
    assert any("198.51.100.99" in c for c in st["candidates"])  # A re-learned its reflexive address ...
    assert st["record"]["seq"] > seq_before  # ... and republished its endpoint record
    assert sessions_made(lab, "B") == made


def test_two_nodes_without_udp_on_different_relays_meet_through_both():
    """A -> (TCP) P -> Q -> (TCP) B: the two-hop path, the same Forward mechanism as one hop."""
    lab = lab_of("udp-blocked", "udp-blocked")
    lab.join("P", "Q")
    lab.run(1)
    lab.join("A", "P")  # A's only link: TCP to P
    lab.join("B", "Q")  # B's: TCP to Q
    lab.run(30)
    assert lab.path("A", "P") == "tcp" and lab.path("B", "Q") == "tcp"
    r = lab.ping("A", "B")
    assert r.ok, r.error
    via = lab.cores["A"].transport.current_path(lab.cores["B"].node_id)
    assert via.hops == (lab.cores["P"].node_id.raw, lab.cores["Q"].node_id.raw)
    assert lab.send("B", "A", "two relays").ok


def test_a_node_without_udp_can_be_found_by_its_id_and_reached_through_its_record():
    """No node learns a UDP-blocked node as a DHT contact (it talks to all through its relay), so a
    lookup for its ID may name nobody; it stores its public key under its ID instead, and a ping
    that no lookup answered reads that, then its endpoint record, and goes through its relay."""
    lab = lab_of("udp-blocked", "port-restricted")
    lab.join_all()
    a, b = lab.cores["A"], lab.cores["B"]
    got = lab.request("B", b.get(a.node_id.raw, lab.net.now))
    assert got.ok and got.value == a.identity.public_key
    # B forgets A (sessions closed both ways, no record cached): from A's public key alone (what the
    # ID record gave), B reads A's endpoint record and reaches A through A's relay.
    for x, y in ((a, b), (b, a)):
        x.transport.close(y.node_id, lab.net.now)
    b.reach._cache.clear()
    lab.run(1)
    assert not b.transport.has_session(a.node_id) and not b.transport.handshaking(a.node_id)
    resolved = b.reach.stats["resolved"]
    b.reach.reach_node(a.identity.public_key, lab.net.now)
    b._pump(lab.net.now)  # (called from outside the node's own handling: its read goes out now, not at B's next timer)
    lab.net.flush(lab.addrs["B"])
    lab.run(5)
    assert b.reach.stats["resolved"] == resolved + 1 and b.transport.has_session(a.node_id)
    assert lab.path("B", "A") == "relay"
    assert lab.ping("B", "A").ok and lab.send("B", "A", "found by its ID").ok


def test_send_and_private_network_traffic_reach_a_node_without_udp_that_no_lookup_names():
    """As a ping does, `weft send` and a private network's traffic to a member read the public key
    a UDP-blocked node stores under its ID when no lookup names the node (docs/reach.md, "TCP
    links"): here no routing table holds it, and two late joiners reach it through its relay."""
    lab = lab_of("udp-blocked", "port-restricted")
    lab.join_all()
    a = lab.cores["A"]
    for core in lab.cores.values():  # a large overlay: nobody close to its ID knows it
        core.dht.table.remove(int.from_bytes(a.node_id.raw, "big"))
    for name in "CD":
        lab.behind(name, "port-restricted")
        lab.join(name, "P")
    lab.run(20)
    c, d = lab.cores["C"], lab.cores["D"]
    assert not any(x.transport.reaching(a.node_id) or x.dht.contact_for(a.node_id) for x in (c, d))
    r = lab.send("C", "A", "found by its ID")
    assert r.ok, r.error
    assert any(isinstance(ev, TextReceived) and ev.text == "found by its ID" for _, ev in lab.events["A"])
    # Private-network traffic: the lookup for the member names nobody; its ID record does.
    d.vpn.send_to_node(a.node_id, (b"\x01\x20x",), lab.net.now)
    lab.run(10)
    assert d.vpn.stats["locate_failed"] == 1 and d.transport.has_session(a.node_id)
    assert lab.path("D", "A") == "relay"


@pytest.mark.parametrize("what", ["ping", "send"])
def test_a_ping_is_answered_when_its_target_connects_while_the_id_record_is_read(what):
    """A ping to a UDP-blocked node no lookup names reads the node's ID record ("locate"); when the
    session comes up meanwhile (here the node reaches us first), the record's answer must go on to
    the ping, not wait for a SessionUp that has gone by (nat-mix seed 1: full-cone -> udp-blocked
    ended "none", timed out with the session up both ways)."""
    lab = lab_of("udp-blocked", "port-restricted")
    lab.join_all()
    a = lab.cores["A"]
    for core in lab.cores.values():  # a large overlay: nobody close to its ID knows it
        core.dht.table.remove(int.from_bytes(a.node_id.raw, "big"))
    lab.behind("C", "port-restricted")
    lab.join("C", "P")
    lab.run(20)
    c = lab.cores["C"]
    for core in lab.cores.values():  # nor did they learn it again meanwhile (A's own lookups)
        core.dht.table.remove(int.from_bytes(a.node_id.raw, "big"))
    assert not c.transport.has_session(a.node_id) and not c.dht.contact_for(a.node_id)
    # The ID record's holders answer slowly: C gets their answer only once A's session is up.
    held: list = []
    real = c.dht.next_event

    def slow_next_event():
        ev = real()
        if ev is not None and getattr(ev, "kind", "") == "get" and ev.target == a.node_id.raw \
                and not c.transport.has_session(a.node_id):
            held.append(ev)
            return real()
        if ev is None and held and c.transport.has_session(a.node_id):
            return held.pop()
        return ev

    c.dht.next_event = slow_next_event
    if what == "ping":
        op = c.ping(a.node_id, lab.net.now)
    else:
        op = c.send_text(a.node_id, "after the ID record", lab.net.now)
    lab.net.flush(lab.addrs["C"])
    lab.net.run_for(10, until=lambda: bool(held))
    assert held  # the ping (send) reads A's ID record
    a.ping(c.node_id, lab.net.now)  # A reaches C meanwhile (its own traffic)
    lab.net.flush(lab.addrs["A"])
    r = lab.request("C", op)
    assert not held and c.transport.has_session(a.node_id)
    assert r.ok, r.error
    if what == "send":
        assert any(isinstance(ev, TextReceived) and ev.text == "after the ID record" for _, ev in lab.events["A"])
