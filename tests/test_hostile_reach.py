"""Reach as a hostile peer sees it: what a session peer can make us send, and to whom (security.md, item 18).

Whole NodeCores, virtual time: the NAT lab (tests/reach_lab.py) and the hostile-network harness
(tests/hostile_tools.py). Bytes and datagrams are counted on the simulated wire, where an attacker
and its target would count them; nothing depends on how busy the machine is.
"""

from __future__ import annotations

import random

from hostile_tools import Sink, overlay
from reach_lab import SimLab

from weftnet.core.dht.messages import FindNode
from weftnet.core.identity import Identity
from weftnet.core.node import NodeCore
from weftnet.core.reach.messages import OP_DIALBACK, OP_REGISTER, CallMeMaybe, Probe, RelayRequest
from weftnet.core.reach.relay import RelayConfig, RelayService
from weftnet.core.wire import encode

TARGET = "192.0.2.77"  # a third party's address, which nobody here has any business sending to


def _wire_counter(net, source_host: str) -> dict:
    """Bytes and datagrams every sender at ``source_host`` puts on the wire from now on."""
    sent = {"bytes": 0, "datagrams": 0}
    before = net.on_deliver

    def hook(src, dst, data):
        if src[0] == source_host:
            sent["bytes"] += len(data)
            sent["datagrams"] += 1
        if before is not None:
            before(src, dst, data)

    net.on_deliver = hook
    return sent


def test_a_call_me_maybe_naming_a_third_party_gets_it_no_more_than_the_attacker_sent():
    """X, behind a symmetric NAT, meets V through V's relay (so V punches), then names eight ports
    of someone else's host as its candidates, ten times, three seconds apart. Before: each made V
    probe all eight on the punch schedule, 4.1x X's bytes and 10x its datagrams reached the target."""
    lab = SimLab(seed=1)
    lab.public("P", relay=True)
    lab.public("Q", relay=True)
    lab.behind("V", "port-restricted")
    lab.behind("X", "symmetric")
    lab.join_all()
    assert lab.ping("X", "V").ok
    lab.run(10)
    assert lab.path("X", "V") == "relay" and lab.path("V", "X") == "relay"
    sink = Sink()
    for p in range(8):
        lab.net.add((TARGET, 7000 + p), sink)
    sent = _wire_counter(lab.net, lab.boxes["X"].ip)
    x, v = lab.cores["X"], lab.cores["V"]
    named = tuple((TARGET, 7000 + p) for p in range(8))
    for _ in range(10):
        x.transport.send_to(v.node_id, encode(CallMeMaybe(named)), lab.net.now)
        lab.net.flush(lab.addrs["X"])
        lab.run(3.0)
    lab.run(5)
    assert sink.datagrams > 0  # V did try the addresses (a punch is what the message asks for) ...
    assert sink.bytes <= sent["bytes"] and sink.datagrams <= sent["datagrams"]  # ... at X's expense
    assert v.reach.stats["unpaid_refused"] > 0


def test_honest_punching_is_not_held_back_by_what_the_peer_paid():
    """Two cone NATs meeting through a relay punch through as before, with nothing refused."""
    lab = SimLab(seed=2)
    lab.public("P", relay=True)
    lab.public("Q", relay=True)
    lab.behind("A", "restricted")
    lab.behind("B", "port-restricted")
    lab.join_all()
    assert lab.ping("A", "B").ok and lab.ping("B", "A").ok
    lab.run(5)
    assert lab.path("A", "B") == "direct" and lab.path("B", "A") == "direct"
    assert all(c.reach.stats["unpaid_refused"] == 0 for c in lab.cores.values())


def _spoofing(net, x, v, spoof_from: tuple, only=None) -> dict:
    """From now on, X's datagrams to V leave with the source ``spoof_from`` (X holds the session's
    keys: they still authenticate). ``only(data)``: spoof just those. Returns X's wire counts."""
    sent = {"bytes": 0, "datagrams": 0}
    orig = net._transmit

    def transmit(src, dst, data):
        if src == x.endpoint and dst == v.endpoint:
            sent["bytes"] += len(data)
            sent["datagrams"] += 1
            if only is None or only(data):
                src = spoof_from
        orig(src, dst, data)

    net._transmit = transmit
    return sent


def _find_nodes(net, x, v, n: int = 100) -> None:
    rng = random.Random(1)
    for _ in range(n):
        x.transport.send_to(v.node_id, encode(FindNode(rng.getrandbits(64), rng.randbytes(32))), net.now)
        net.flush(x.endpoint)
        net.run_for(0.05)
    net.run_for(5)


def test_a_session_peer_sending_from_a_spoofed_source_does_not_move_the_session_there():
    """X, a session peer of V, sends its FIND_NODEs with a spoofed source T. Before: V followed the
    latest authenticated source at once (roaming) and sent every answer to T, 6x X's bytes."""
    net, nodes = overlay(12, seed=3)
    v, x = nodes[0], nodes[5]
    assert x.transport.has_session(v.node_id)
    target = (TARGET, 9999)
    sink = Sink()
    net.add(target, sink)
    sent = _spoofing(net, x, v, target)
    _find_nodes(net, x, v)
    assert v.transport.current_path(x.node_id) == x.endpoint  # T never answered: not followed
    assert sink.bytes <= sent["bytes"] and sink.datagrams <= sent["datagrams"]
    assert sink.bytes < 0.2 * sent["bytes"]  # what T gets is V's validation probes, paid by X's bytes


def test_a_response_from_a_source_the_init_never_went_to_moves_nothing():
    """V opens a session to X; X's key holder sends its Response, and everything after it, from a
    spoofed source T. Before: the Response moved V's session to T and X's FIND_NODEs were answered
    there, 5.9x X's bytes."""
    net, nodes = overlay(12, seed=3)
    v, x = nodes[0], nodes[5]
    for a, b in ((v, x), (x, v)):
        a.transport.close(b.node_id, net.now)
    net.run_for(1)
    target = (TARGET, 9999)
    sink = Sink()
    net.add(target, sink)
    sent = _spoofing(net, x, v, target)
    v.ping(x.node_id, net.now)
    net.flush(v.endpoint)
    net.run_for(2)
    assert v.transport.current_path(x.node_id) == x.endpoint
    _find_nodes(net, x, v)
    assert v.transport.current_path(x.node_id) == x.endpoint
    assert sink.bytes <= sent["bytes"] and sink.datagrams <= sent["datagrams"]
    assert sink.bytes < 0.2 * sent["bytes"]


def test_a_peer_that_moved_is_followed_once_its_new_address_is_proven():
    """The honest side of the same rule: a node that restarts at a new address is followed there
    from the first packet under the session its handshake made (our Response went there), and one
    whose address changes under a live session once it answers a probe there."""
    net, nodes = overlay(8, seed=5)
    v, x = nodes[0], nodes[3]
    assert x.transport.has_session(v.node_id) and v.transport.has_session(x.node_id)
    # A live session, the peer's NAT rebinds: its packets now come from another port, and the old
    # mapping is gone (what V sends there is lost).
    old = x.endpoint
    new = (old[0], old[1] + 1)
    orig = net._transmit

    def rebound(src, dst, data):
        if dst == old:
            return  # the NAT forgot the old mapping
        if src == old:
            src = new
        if dst == new:
            dst = old  # the NAT maps the new port back to the host
        orig(src, dst, data)

    net._transmit = rebound
    ping = x.ping(v.node_id, net.now)
    net.flush(x.endpoint)
    net.run_for(10)
    assert v.transport.current_path(x.node_id) == new
    assert any(getattr(e, "op_id", None) == ping and e.ok for e in _drain(x))
    net._transmit = orig
    # A restart at a new endpoint: a new process, the same key.
    y = nodes[5]
    net.remove(y.endpoint)
    moved = NodeCore(y.identity, random.Random(99), net.now)
    moved.set_local_endpoint(("198.18.40.1", 4500))
    net.add(moved.endpoint, moved)
    moved.connect(v.endpoint, net.now)
    net.flush(moved.endpoint)
    net.run_for(5)
    assert v.transport.current_path(y.node_id) == moved.endpoint
    r = v.ping(y.node_id, net.now)
    net.flush(v.endpoint)
    net.run_for(3)
    assert any(getattr(e, "op_id", None) == r and e.ok for e in _drain(v))


def _drain(core) -> list:
    out = []
    while (e := core.next_event()) is not None:
        out.append(e)
    return out


def test_probes_and_relay_requests_from_a_spoofed_source_get_back_no_more_than_the_peer_sent():
    """A session peer's Probes and dial-back requests arriving from a source that never answered
    (it may be spoofed by the key holder): the replies, the probe back and the in-the-clear
    ReachTest are paid by what the peer sent. Before, a Probe got a ProbeReply larger than itself
    and a probe back (two datagrams for one); a dial-back request, a larger RelayReply and a
    ReachTest, each time."""
    net, nodes = overlay(6, seed=4)
    v, x = nodes[0], nodes[2]
    v.reach.alt_port = True
    target = (TARGET, 9999)
    sink = Sink()
    net.add(target, sink)
    net.add((TARGET, 10000), sink)  # the second port a ReachTest comes from (the harness: port + 1)
    sent = _spoofing(net, x, v, target)
    for i in range(200):
        msg = Probe(i, b"") if i % 2 else RelayRequest(OP_DIALBACK, 0, i)
        x.transport.send_to(v.node_id, encode(msg), net.now)
        net.flush(x.endpoint)
        net.run_for(0.01)
    net.run_for(3)
    assert sink.bytes <= sent["bytes"] and sink.datagrams <= sent["datagrams"]
    assert v.transport.current_path(x.node_id) == x.endpoint


def test_one_address_block_cannot_fill_a_relay():
    """A relay of 64 takes 16 registrations from one /24; a node elsewhere still gets in. Before:
    64 identities from one host filled it and every other node was refused ("relay full")."""
    relay = RelayService(RelayConfig(enabled=True, max_sessions=64), 0.0)
    rng = random.Random(1)
    ids = [Identity.generate(rng).node_id for _ in range(80)]
    granted = [relay.register(n, 600, 0.0, f"203.0.113.{i % 200 + 1}")[0] for i, n in enumerate(ids[:64])]
    assert sum(1 for g in granted if g) == 16
    lease, reason = relay.register(ids[70], 600, 0.0, "198.51.100.9")
    assert lease == 600 and reason == ""
    # An exempt source (a loopback lab) is not counted; a registration that ends frees its slot.
    assert relay.register(ids[71], 600, 0.0, "203.0.113.7", exempt=True)[0] == 600
    relay.session_down(ids[0])
    assert relay.register(ids[72], 600, 0.0, "203.0.113.8")[0] == 600
    assert relay.register(ids[73], 600, 0.0, "203.0.113.9")[0] == 0


def test_a_node_behind_a_nat_keeps_its_relay_through_a_flood_of_peers():
    """1,100 peers with sessions fill reach's table of 1,024 peers; the relay V is registered with
    stays in it (its keepalives hold V's NAT mapping open). Before, the oldest entry went: the relay."""
    lab = SimLab(seed=1)
    lab.public("P", relay=True)
    lab.public("Q", relay=True)
    lab.behind("V", "port-restricted")
    lab.join_all()
    v = lab.cores["V"]
    relays = list(v.reach._leases)
    assert relays
    rng = random.Random(5)
    for _ in range(1100):
        v.reach._peer(Identity.generate(rng).node_id)
    assert len(v.reach._peers) <= v.reach.MAX_PEERS
    assert all(r in v.reach._peers for r in relays)


def test_a_register_request_through_the_reach_engine_is_counted_against_its_block():
    """The engine passes the requester's source to the relay: R registers at most 16 from one /24."""
    net, nodes = overlay(2, seed=6, config_for=lambda i: _relay_config(i == 0))
    r = nodes[0]
    rng = random.Random(2)
    granted = 0
    for i in range(20):
        ident = Identity.generate(rng)
        # Straight into the engine, as from 20 authenticated peers on 198.18.9.0/24.
        r.transport._peer(ident.public_key, net.now)
        before = r.reach.relay.stats["registered"]
        r.reach._on_relay_request(ident.node_id, (f"198.18.9.{i + 1}", 4500),
                                  RelayRequest(OP_REGISTER, 600, 0), net.now)
        granted += r.reach.relay.stats["registered"] - before
    assert granted == 16 and r.reach.relay.stats["registrations_refused_block"] == 4


def _relay_config(relay: bool):
    from weftnet.core.node import NodeConfig
    from weftnet.core.reach.engine import ReachConfig

    return NodeConfig(reach=ReachConfig(enabled=True), relay=RelayConfig(enabled=relay))


def test_the_reachpeer_fuzz_target_catches_a_send_that_is_not_charged(monkeypatch):
    """fuzz/reachpeer_target.py is not vacuous: a reach that lets small datagrams to a peer's
    unproven addresses through without accounting for them is caught within a few inputs."""
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "fuzz"))
    import weftfuzz

    from weftnet.core.reach.engine import Reach

    real = Reach._pay

    def leaky(self, node, target, size, now, ahead=False, request=0):
        return True if size < 60 else real(self, node, target, size, now, ahead, request)

    assert weftfuzz.run("reachpeer", 3_000, 1, quiet=True) == 0
    monkeypatch.setattr(Reach, "_pay", leaky)
    assert weftfuzz.run("reachpeer", 3_000, 1, quiet=True) == 1


def test_a_relay_cannot_aim_the_readers_of_our_endpoint_record_at_another_host():
    """The relay V registers with answers that others should reach it at T. Before: V's signed
    endpoint record named T as its relay's address, and every node that read it to reach V sent
    its handshakes (an Init a second for 10 s) to T. Now: only an address on the relay's own host."""
    lab = SimLab(seed=1)
    p = lab.public("P", relay=True)
    lab.public("Q", relay=True)
    p.reach._own_public_endpoint = lambda now: (TARGET, 4500)
    lab.behind("V", "port-restricted")
    lab.join_all()
    v = lab.cores["V"]
    rec = v.reach.record(lab.net.now)
    assert rec.relays, "V registered with P"
    assert all(tuple(r.endpoint)[0] != TARGET for r in rec.relays)
    assert (lab.addrs["P"][0], lab.addrs["P"][1]) in [tuple(r.endpoint) for r in rec.relays]
