"""The relay and the forwarding header: who is forwarded, how much, never more than came in, never spoofed."""

from __future__ import annotations

from reach_lab import SimLab

from weftnet.core.reach.messages import Forward
from weftnet.core.reach.paths import Via
from weftnet.core.session.admission import Admission
from weftnet.core.wire import encode


def three(relay_cfg: dict | None = None, c_reach: dict | None = None) -> SimLab:
    """A, P (a relay) and C, all public; A and C have sessions with P, not with each other.

    NAT traversal is off (nothing but what a test sends crosses the wire); the relay service is on.
    """
    lab = SimLab(seed=5, reach={"enabled": False})
    lab.public("P", relay=True)
    lab.public("A")
    lab.public("C", reach=c_reach)
    if relay_cfg:
        for k, v in relay_cfg.items():
            setattr(lab.cores["P"].reach.relay.config, k, v)
    for n in "AC":
        lab.cores[n].transport.connect(lab.addrs["P"], lab.net.now, lab.cores["P"].identity.public_key)
        lab.net.flush(lab.addrs[n])
    lab.run(3)
    assert lab.cores["A"].transport.has_session(lab.cores["P"].node_id)
    assert lab.cores["C"].transport.has_session(lab.cores["P"].node_id)
    return lab


def tap(lab: SimLab, src: str, dst: str) -> list[int]:
    """Lengths of the datagrams src delivers to dst from now on."""
    seen: list[int] = []
    s, d = lab.addrs[src], lab.addrs[dst]
    prev = lab.net.on_deliver

    def hook(a, b, data):
        if a == s and b == d:
            seen.append(len(data))
        if prev:
            prev(a, b, data)

    lab.net.on_deliver = hook
    return seen


def forward(lab: SimLab, frm: str, hops: tuple, packet: bytes, trail: tuple = ()) -> None:
    core = lab.cores[frm]
    core.transport.send_to(lab.cores["P"].node_id, encode(Forward(hops, trail, packet)), lab.net.now)
    lab.net.flush(lab.addrs[frm])
    lab.run(1)


def test_a_relay_forwards_only_when_one_end_registered_with_it():
    lab = three()
    p, c = lab.cores["P"], lab.cores["C"]
    to_c = tap(lab, "P", "C")
    forward(lab, "A", (c.node_id.raw,), b"\x01\x04" + bytes(40))
    assert to_c == [] and p.reach.relay.stats["refused_not_registered"] == 1
    p.reach.relay.register(c.node_id, 600, lab.net.now)
    forward(lab, "A", (c.node_id.raw,), b"\x01\x04" + bytes(40))
    assert len(to_c) == 1 and p.reach.relay.stats["forwarded"] == 1
    # A node that is not a relay forwards nothing at all.
    lab2 = three()
    lab2.cores["P"].transport.relay = None
    to_c2 = tap(lab2, "P", "C")
    forward(lab2, "A", (lab2.cores["C"].node_id.raw,), b"\x01\x04" + bytes(40))
    assert to_c2 == [] and lab2.cores["P"].transport.stats["relay_refused"] == 1


def test_what_a_relay_sends_on_is_exactly_as_large_as_what_it_received():
    lab = three()
    p, c = lab.cores["P"], lab.cores["C"]
    p.reach.relay.register(c.node_id, 600, lab.net.now)
    from_a, to_c = tap(lab, "A", "P"), tap(lab, "P", "C")
    for size in (1, 100, 1200):
        from_a.clear(), to_c.clear()
        forward(lab, "A", (c.node_id.raw,), b"\x01\x04" + bytes(size))
        assert len(from_a) == 1 and to_c == from_a  # one datagram out per datagram in, same length


def test_a_relay_limits_each_peer_and_the_total():
    lab = three({"peer_rate": 20_000, "total_rate": 1_000_000})
    p, c = lab.cores["P"], lab.cores["C"]
    p.reach.relay.register(c.node_id, 600, lab.net.now)
    a = lab.cores["A"]
    start = lab.net.now
    for _ in range(200):  # 200 x ~1 KB in 2 s: ten times the peer's rate
        a.transport.send_to(p.node_id, encode(Forward((c.node_id.raw,), (), b"\x01\x04" + bytes(1000))), lab.net.now)
        lab.net.flush(lab.addrs["A"])
        lab.net.run_for(0.01)
    lab.run(1)
    st = p.reach.relay.stats
    elapsed = lab.net.now - start
    assert st["refused_peer_rate"] > 100
    assert st["forwarded_bytes"] <= 20_000 * (elapsed + 1)  # the rate, plus one second's burst


def test_a_relay_refuses_loops_long_paths_and_peers_without_a_session():
    lab = three()
    p, c = lab.cores["P"], lab.cores["C"]
    p.reach.relay.register(c.node_id, 600, lab.net.now)
    stranger = bytes(32)
    forward(lab, "A", (stranger,), b"\x01\x04" + bytes(40))  # nobody P has a session with
    assert p.reach.relay.stats["refused_no_session"] == 1
    forward(lab, "A", (p.node_id.raw,), b"\x01\x04" + bytes(40))  # to the relay itself
    bad = b"\x01\x12\x05" + bytes(32) * 5 + b"\x00" + b"\x01\x04" + bytes(40)  # five hops: too long
    lab.cores["A"].transport.send_to(p.node_id, bad, lab.net.now)
    lab.net.flush(lab.addrs["A"])
    lab.run(1)
    assert p.reach.relay.stats["forwarded"] == 0
    assert p.transport.stats["relay_refused"] >= 1 and p.transport.stats["malformed_dropped"] >= 1


def test_a_sender_cannot_pass_itself_off_as_another_node_through_a_relay():
    lab = three()
    a, p, c = lab.cores["A"], lab.cores["P"], lab.cores["C"]
    p.reach.relay.register(c.node_id, 600, lab.net.now)
    # A and C have a session of their own; A wraps a real A->C packet but names X as its origin.
    a.transport.connect(lab.addrs["C"], lab.net.now, c.identity.public_key)
    lab.net.flush(lab.addrs["A"])
    lab.run(1)
    assert a.transport.has_session(c.node_id)
    a.transport.send_to(c.node_id, b"\x01\x40\x05hello", lab.net.now)
    (packet, _), = a.transport.datagrams_to_send(lab.net.now)
    x = lab.cores["P"].node_id.raw[::-1]
    forward(lab, "A", (c.node_id.raw,), packet, trail=(x,))
    assert c.transport.stats["relay_spoofed"] == 1
    # The honest form of the same packet is accepted and the path back is through P.
    a.transport.send_to(c.node_id, b"\x01\x40\x05hello", lab.net.now)
    (packet, _), = a.transport.datagrams_to_send(lab.net.now)
    before = c.transport.stats["relayed_in"]
    forward(lab, "A", (c.node_id.raw,), packet)
    assert c.transport.stats["relayed_in"] == before + 1 and c.transport.stats["relay_spoofed"] == 1


def test_a_relayed_handshake_meets_the_same_cookie_challenge_as_a_direct_one():
    lab = three(c_reach=None)
    a, p, c = lab.cores["A"], lab.cores["P"], lab.cores["C"]
    p.reach.relay.register(c.node_id, 600, lab.net.now)
    c.transport.config.handshakes_per_second_under_load = 0  # every Init without a cookie gets a CookieReply
    c.transport.admission = Admission(c.transport.config)  # (the load budget is made from the config)
    a.transport.learn_endpoint(c.identity.public_key, ("192.0.2.99", 9), lab.net.now)  # a dead direct address
    a.transport.add_paths(c.node_id, [Via((p.node_id.raw,), c.node_id.raw)], "test", lab.net.now)
    a.transport.send_to(c.node_id, b"\x01\x40\x02hi", lab.net.now)
    lab.net.flush(lab.addrs["A"])
    lab.run(5)
    assert c.transport.stats["cookies_sent"] >= 1 and a.transport.stats["cookies_received"] >= 1
    assert a.transport.has_session(c.node_id)
    assert lab.path("A", "C") == "relay" and lab.path("C", "A") == "relay"


def test_two_relays_in_a_row_carry_a_session_end_to_end():
    """An explicit two-hop path (what issue 11's routes build on): A -> P1 -> P2 -> C."""
    lab = SimLab(seed=9, reach={"enabled": False})
    for n in ("P1", "P2"):
        lab.public(n, relay=True)
    lab.public("A")
    lab.public("C")
    a, c, p1, p2 = (lab.cores[n] for n in ("A", "C", "P1", "P2"))
    links = [("A", "P1"), ("P1", "P2"), ("C", "P2")]
    for x, y in links:
        lab.cores[x].transport.connect(lab.addrs[y], lab.net.now, lab.cores[y].identity.public_key)
        lab.net.flush(lab.addrs[x])
    lab.run(2)
    p1.reach.relay.register(a.node_id, 600, lab.net.now)
    p2.reach.relay.register(c.node_id, 600, lab.net.now)
    a.transport.learn_endpoint(c.identity.public_key, ("192.0.2.99", 9), lab.net.now)
    a.transport.add_paths(c.node_id, [Via((p1.node_id.raw, p2.node_id.raw), c.node_id.raw)], "test", lab.net.now)
    r = lab.ping("A", "C")
    assert r.ok
    back = c.transport.current_path(a.node_id)
    assert back == Via((p2.node_id.raw, p1.node_id.raw), a.node_id.raw)  # the way back, reversed
    assert p1.reach.relay.stats["forwarded"] >= 2 and p2.reach.relay.stats["forwarded"] >= 2


def test_a_relay_passes_on_nothing_for_a_sender_that_has_not_proven_its_address():
    """A Forward riding in an Init's early data (the source may be spoofed: the node never sees
    the Response) is not passed on; the same sender, once it answers, is relayed as any other."""
    from weftnet.core.contact import Contact

    lab = three()
    p, c = lab.cores["P"], lab.cores["C"]
    p.reach.relay.register(c.node_id, 600, lab.net.now)
    x = lab.public("X")
    fwd = encode(Forward((c.node_id.raw,), (), bytes.fromhex("0104") + bytes(40)))
    x.transport.send(Contact(p.identity.public_key, lab.addrs["P"]), fwd, lab.net.now)
    (init, _), = x.transport.datagrams_to_send(lab.net.now)
    to_c = tap(lab, "P", "C")
    before = p.transport.stats["relay_refused"]
    p.receive_datagram(init, lab.addrs["X"], lab.net.now)  # the Init alone: X never gets the Response
    lab.net.flush(lab.addrs["P"])
    lab.run(1)
    assert p.transport.stats["relay_forwarded"] == 0 and p.transport.stats["relay_refused"] == before + 1
    assert to_c == []
    forward(lab, "X", (c.node_id.raw,), bytes.fromhex("0104") + bytes(40))  # X's next Init gets its answer
    assert p.transport.stats["relay_forwarded"] == 1 and len(to_c) == 1


def test_a_rekey_whose_path_died_goes_at_once_on_the_relay_a_record_names():
    """A rekey's Init goes on the path in use only. When that path dies with the Init on it and
    the peer's endpoint record then names a relay, the Init goes again at once on the relay the
    session moves to, not a retry period later (the handshake's deadline counts from its start)."""
    lab = three()
    a, p, c = (lab.cores[n] for n in "APC")
    p.reach.relay.register(c.node_id, 600, lab.net.now)
    ta = a.transport
    ta.connect(lab.addrs["C"], lab.net.now, c.identity.public_key)
    lab.net.flush(lab.addrs["A"])
    lab.run(2)
    assert ta.has_session(c.node_id)
    lab.run(ta.config.rekey_after_time)
    lab.net.partition([lab.addrs["A"]], [lab.addrs["C"]])  # the direct path dies
    pc = ta._by_node[c.node_id]
    old = pc.current
    ta.ping(c.node_id, lab.net.now)  # on the old session, then the rekey's Init: both lost
    lab.net.flush(lab.addrs["A"])
    assert pc.pending is not None and pc.rekeys == 1
    ta.path_dead(c.node_id, lab.addrs["C"], lab.net.now)
    via = Via((p.node_id.raw,), c.node_id.raw)
    ta.add_paths(c.node_id, [via], "record", lab.net.now)
    assert ta.current_path(c.node_id) == via
    lab.net.flush(lab.addrs["A"])
    lab.run(0.5)  # less than the first retry (1 to 1.3 s)
    assert pc.pending is None and pc.current is not old  # the rekey came through the relay
    assert pc.rekeys == 1  # the same handshake, not a new one
    assert c.transport.current_path(a.node_id) == Via((p.node_id.raw,), a.node_id.raw)
