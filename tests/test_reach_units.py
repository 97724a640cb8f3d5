"""Small pieces of reach on their own: NAT classification, the path policy, the relay's bookkeeping."""

from __future__ import annotations

import random

from weftnet.core.contact import Contact
from weftnet.core.identity import Identity
from weftnet.core.reach.messages import NAT_EDM, NAT_EIM, NAT_PUBLIC, NAT_UDP_BLOCKED, NAT_UNKNOWN
from weftnet.core.reach.nat import MAX_REPORTS, NatObserver
from weftnet.core.reach.paths import MAX_PATHS, PathPolicy, PathSet, StreamLink, Via, path_kind
from weftnet.core.reach.relay import RelayConfig, RelayService
from weftnet.core.session.transport import SecureTransport

LOCAL = ("10.0.0.2", 4500)


def test_nat_classification_from_reports():
    nat = NatObserver()
    nat.set_local([LOCAL])
    assert nat.classify(0) == NAT_UNKNOWN
    nat.report("198.51.100.1", ("203.0.113.5", 4500), 0)
    assert nat.classify(0) == NAT_UNKNOWN and nat.reflexive(0) == [("203.0.113.5", 4500)]
    nat.report("198.51.100.2", ("203.0.113.5", 4500), 1)
    assert nat.classify(1) == NAT_EIM
    nat.report("198.51.100.3", ("203.0.113.5", 40001), 2)
    assert nat.classify(2) == NAT_EDM
    assert [k for k, _ in nat.candidates(2)] == [1]  # behind an EDM NAT only the local candidate is published


def test_a_lan_peer_seeing_our_local_address_does_not_make_us_public():
    nat = NatObserver()
    nat.set_local([LOCAL])
    nat.report("10.0.0.7", LOCAL, 0)
    assert nat.classify(0) == NAT_PUBLIC  # all that is known
    nat.report("198.51.100.1", ("203.0.113.5", 4500), 0)
    nat.report("198.51.100.2", ("203.0.113.5", 4500), 0)
    assert nat.classify(0) == NAT_EIM


def test_a_moved_mapping_discards_older_reports_and_reports_expire():
    nat = NatObserver(report_ttl=100)
    nat.set_local([LOCAL])
    nat.report("198.51.100.1", ("203.0.113.5", 4500), 0)
    nat.report("198.51.100.2", ("203.0.113.5", 4500), 0)
    nat.set_reachable(False, 0)
    assert nat.report("198.51.100.1", ("203.0.113.5", 5000), 10)  # rebinding: a change
    assert nat.reports(10) == 1 and nat.reachable is None
    assert nat.reports(200) == 0 and nat.classify(200) == NAT_UNKNOWN
    for i in range(MAX_REPORTS + 5):
        nat.report(f"192.0.2.{i}", ("203.0.113.5", 5000), 300)
    assert nat.reports(300) == MAX_REPORTS
    nat.stream_only = True
    assert nat.classify(10_000) == NAT_UDP_BLOCKED and nat.candidates(10_000) == []
    assert nat.set_local([("10.9.9.9", 4500)]) and nat.reports(300) == 0  # a new network: start over


def test_path_policy_roams_between_direct_paths_but_leaves_a_relay_only_for_a_confirmed_one():
    pol = PathPolicy(trust=2.0)
    paths = PathSet()
    relay = Via((bytes(32),), bytes([1]) * 32)
    a, b = ("198.51.100.1", 1), ("198.51.100.2", 2)
    paths.add(a, "contact", 0).last_rx = 0
    heard = []
    pol.heard = lambda node, target, now: heard.append(target)
    paths.node_id = bytes(32)
    # A source that never answered is not followed on its word (the key holder may have spoofed it):
    # it is handed to reach to validate.
    assert not pol.on_rx(paths, a, b, 1) and heard == [b]
    paths.add(relay, "record", 0)
    assert not pol.on_rx(paths, relay, b, 1)  # heard once, never answered
    paths.add(b, "peer", 0).confirmed = 1
    assert pol.on_rx(paths, relay, b, 1)
    assert pol.on_rx(paths, a, b, 1)  # roaming to a path that answered: at once
    # A relay while a direct path was heard just now: stay; quiet for longer than trust: follow.
    paths.get(a).last_rx = 10
    assert not pol.on_rx(paths, a, relay, 11) and pol.on_rx(paths, a, relay, 13)
    # choose: confirmed direct before TCP before relay; dead ones never.
    link = StreamLink("198.51.100.9", 443, 1)
    paths.add(link, "link", 0).confirmed = 1
    assert pol.choose(paths, relay, 20) == b
    paths.get(b).dead = True
    assert pol.choose(paths, relay, 20) == link and path_kind(link) == "tcp"
    assert set(pol.handshake_targets(paths, a)) == {a, relay, link}


def test_a_path_set_is_bounded_and_keeps_the_path_in_use():
    paths = PathSet()
    keep = ("198.51.100.1", 1)
    paths.add(keep, "contact", 0)
    for i in range(MAX_PATHS * 3):
        paths.add(("198.51.100.2", 1000 + i), "record", i, keep=keep)
    assert len(paths) == MAX_PATHS and paths.get(keep) is not None


def test_relay_registrations_are_bounded_and_expire():
    ids = [Identity.from_seed(bytes([i]) * 32).node_id for i in range(1, 5)]
    relay = RelayService(RelayConfig(enabled=True, max_sessions=2, max_lease=100), 0)
    assert relay.register(ids[0], 600, 0) == (100, "")  # the lease is capped
    assert relay.register(ids[1], 10, 0) == (30, "")  # and has a floor
    assert relay.register(ids[2], 60, 0) == (0, "relay full")
    assert relay.admit(ids[2], ids[3], 100, 1) == "not_registered"
    assert relay.admit(ids[2], ids[0], 100, 1) is None  # one end registered
    assert relay.may_open(ids[0], ids[3], 1) and not relay.may_open(ids[2], ids[3], 1)
    relay.expire(31)
    assert relay.registered(31) == [ids[0]]
    assert RelayService(RelayConfig(enabled=False), 0).register(ids[0], 60, 0) == (0, "not a relay")


def _pump(a, b, now: float, a_addr, b_addr) -> None:
    """Deliver what each transport sends to the other (to b only what is sent to ``b_addr``)."""
    for _ in range(10):
        moved = False
        for data, addr in a.datagrams_to_send(now):
            if addr == b_addr:
                b.receive_datagram(data, a_addr, now)
                moved = True
        for data, addr in b.datagrams_to_send(now):
            if addr == a_addr:
                a.receive_datagram(data, b_addr, now)
                moved = True
        if not moved:
            return


def _run(a, b, until: float, now: float, a_addr, b_addr) -> float:
    while now < until:
        _pump(a, b, now, a_addr, b_addr)
        t = a.get_timer()
        now = t if t is not None and t < until else until
        a.handle_timer(now)
    _pump(a, b, now, a_addr, b_addr)
    return now


T0 = 1_700_000_000.0
A_ADDR, B_ADDR, HINTED = ("198.51.100.1", 4500), ("203.0.113.7", 4500), ("203.0.113.7", 31000)


def _two_transports(seed: int) -> tuple[SecureTransport, SecureTransport]:
    """a (which wants paths: it runs reach) and b, seeded: b is at B_ADDR, and HINTED is
    the second-hand address a hears of it at."""
    rng = random.Random(seed)
    a = SecureTransport(Identity.generate(rng), random.Random(seed + 1), T0)
    b = SecureTransport(Identity.generate(rng), random.Random(seed + 2), T0)
    a.paths_wanted = True
    return a, b


def test_a_second_hand_handshake_waits_for_the_endpoint_record_being_read():
    """The first contact with a NATed node: its address came second-hand (one Init), and its
    endpoint record, read meanwhile, takes longer than that Init's retry interval. The handshake
    must wait for the record's paths instead of giving up (and the node being forgotten, so that
    the record's paths had nowhere to go), and send nothing more to the second-hand address."""
    t0, (a, b) = T0, _two_transports(7)
    a.send(Contact(b.identity.public_key, HINTED), b"\x01\x20hello", t0, unverified=True)
    assert [addr for _, addr in a.datagrams_to_send(t0)] == [HINTED]
    assert a.await_record(b.node_id, True)  # reach reads b's endpoint record now
    now = _run(a, b, t0 + 4.0, t0, A_ADDR, B_ADDR)
    assert a.handshaking(b.node_id) and a.stats["handshakes_failed"] == 0  # still waiting, 4 s on
    assert [addr for _, addr in a.datagrams_to_send(now)] == []  # and no second Init to the HINTED address
    # The record arrives: its paths are the node's own; the handshake goes out on them at once.
    assert a.add_paths(b.node_id, [B_ADDR], "record", now) == 1
    _run(a, b, now + 0.1, now, A_ADDR, B_ADDR)
    assert a.has_session(b.node_id) and a.current_path(b.node_id) == B_ADDR


def test_a_record_naming_paths_already_known_still_lifts_the_second_hand_limit():
    """An earlier record (cached) had named the same paths: no path is new, but they are the node's
    own, so the handshake retries on them instead of giving up after its one Init."""
    t0, (a, b) = T0, _two_transports(17)
    a.learn_endpoint(b.identity.public_key, B_ADDR, t0)  # known before (a relay reference, say)
    a.send(Contact(b.identity.public_key, HINTED), b"\x01\x20hello", t0, unverified=True)
    a.datagrams_to_send(t0)  # the one Init to the HINTED address (and B_ADDR, known already), lost
    assert a.add_paths(b.node_id, [B_ADDR, HINTED], "record", t0 + 0.5) == 0  # nothing new ...
    _run(a, b, t0 + 3.0, t0 + 0.5, A_ADDR, B_ADDR)
    assert a.has_session(b.node_id)  # ... and still answered on the record's path


class _RecordStore:
    """The DHT as reach sees it: ``get`` starts a read that the test answers with the peer's
    endpoint record as it is published *now* (``value``); ``put`` is accepted."""

    def __init__(self, owner: Identity):
        self.owner, self.value, self.gets, self._op = owner, None, [], 0

    def get(self, key: bytes, now: float) -> int:
        self._op += 1
        self.gets.append((self._op, now))
        return self._op

    def put(self, record, now: float) -> int:
        self._op += 1
        return self._op

    def answer(self, reach, now: float) -> None:
        from weftnet.core.dht.events import LookupDone
        from weftnet.core.dht.records import MutableRecord
        from weftnet.core.reach.engine import ENDPOINT_SALT
        from weftnet.core.wire import encode

        while self.gets:
            op, _ = self.gets.pop(0)
            rec = MutableRecord.create(self.owner, ENDPOINT_SALT, int(now * 1000), 600, encode(self.value))
            reach.on_dht_event(LookupDone(op, "get", b"", True, (), (rec,), 1, 1, 0.01, 0), now)


def _drive(a, b, reach, store, until: float, now: float) -> float:
    """a (running reach) and b at B_ADDR, in virtual time; a's handshake events go to reach."""
    from weftnet.core.session.transport import PathsWanted, SessionUp

    reads = 0
    while now < until:
        _pump(a, b, now, A_ADDR, B_ADDR)
        while (ev := a.next_event()) is not None:
            if type(ev) is PathsWanted:
                reach.on_paths_wanted(ev.node_id, ev.public_key, ev.attempt, now)
            elif type(ev) is SessionUp:
                reach.on_session_up(ev.node_id, ev.endpoint, now)
        reads += len(store.gets)
        store.answer(reach, now)
        b.datagrams_to_send(now)  # b has nowhere else to send
        deadlines = [t for t in (a.get_timer(), reach.get_timer()) if t is not None]
        now = min([until] + [max(t, now + 0.001) for t in deadlines])
        a.handle_timer(now)
        reach.handle_timer(now)
    return reads


def test_a_handshake_rereads_an_endpoint_record_that_named_no_working_path():
    """The first contact's miss (docs/reach.md): a node that has just joined is contacted, and its
    endpoint record is read before it has registered with its relay — the record names no path
    that works. The handshake's later attempts must read the record again (it has changed since),
    within the handshake's 10 s; before, a DHT contact's record was re-read at most every 10 s,
    so the handshake ran out on the stale record's paths and failed."""
    from weftnet.core.reach.engine import Reach, ReachConfig
    from weftnet.core.reach.messages import CAND_LOCAL, CAND_REFLEXIVE, Candidate, EndpointRecord

    t0, (a, b) = T0, _two_transports(27)
    store = _RecordStore(b.identity)
    reach = Reach(a.identity, a, store, random.Random(5), t0, ReachConfig(enabled=True))
    # What b published when it had just joined: its LAN address only (unreachable from a).
    store.value = EndpointRecord(NAT_EDM, 2, (Candidate(CAND_LOCAL, ("10.9.9.9", 4500)),), ())
    a.send(Contact(b.identity.public_key, HINTED), b"\x01\x20hello", t0, unverified=True)  # a DHT contact
    now = _drive(a, b, reach, store, t0 + 1.5, t0)
    assert not a.has_session(b.node_id) and a.handshaking(b.node_id)  # the stale record did not help
    store.value = EndpointRecord(NAT_EIM, 2, (Candidate(CAND_REFLEXIVE, B_ADDR),), ())  # b's record now
    _drive(a, b, reach, store, t0 + 9.5, now)
    assert a.has_session(b.node_id) and a.current_path(b.node_id) == B_ADDR
    assert a.stats["handshakes_failed"] == 0


def test_a_node_behind_a_symmetric_nat_offers_its_nat_address_in_call_me_maybe():
    """Its mappings fit nobody else, so its endpoint record names none; but a peer behind an
    address-restricted NAT that sends to the NAT's address lets the node's later probes in, from
    any port. The call-me-maybe (through the relay) carries the newest reflexive endpoint."""
    from weftnet.core.reach.engine import Reach, ReachConfig
    from weftnet.core.reach.messages import CallMeMaybe
    from weftnet.core.wire import decode

    t0, (a, b) = T0, _two_transports(37)
    reach = Reach(a.identity, a, _RecordStore(b.identity), random.Random(5), t0, ReachConfig(enabled=True))
    reach.set_local_endpoints([LOCAL], t0)
    reach.nat.report("198.51.100.1", ("203.0.113.5", 40001), t0)
    reach.nat.report("198.51.100.2", ("203.0.113.5", 40002), t0)
    assert reach.nat.classify(t0) == NAT_EDM
    assert all(c.endpoint[0] != "203.0.113.5" for c in reach.record(t0).candidates)  # the record: none of them
    sent = []
    a.send_to = lambda node_id, payload, now: sent.append(payload) or True
    reach._send_call_me_maybe(reach._peer(b.node_id), t0)
    msg = decode(sent[0])
    assert type(msg) is CallMeMaybe and msg.candidates == (("203.0.113.5", 40002), LOCAL)
