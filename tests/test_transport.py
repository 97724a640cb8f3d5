"""SecureTransport: handshakes and sessions, driven by hand and over a hostile network.

Time is a variable advanced by hand or by the harness's virtual clock; no test
sleeps.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from weftnet.core.session import handshake as hs
from weftnet.core.contact import Contact
from weftnet.core.identity import Identity
from weftnet.core.session.packets import CookieReply, HandshakeInit, HandshakeResponse, Hello, HelloReply, TransportFragment
from weftnet.core.session.replay import ReplayWindow
from weftnet.core.session.transport import (
    PongReceived,
    Received,
    SecureTransport,
    SessionDown,
    SessionUp,
    TransportConfig,
    Unreachable,
)
from weftnet.core.wire import decode, encode
from weftnet.errors import SessionError
from weftnet.sim.harness import LinkModel, SimNetwork

A, B, C = ("10.0.0.1", 1000), ("10.0.0.2", 2000), ("10.0.0.3", 3000)
T0 = 1_000_000.0


def ident(n: int) -> Identity:
    return Identity.generate(random.Random(n))


def events(t: SecureTransport) -> list:
    out = []
    while (e := t.next_event()) is not None:
        out.append(e)
    return out


def msg(i: int) -> bytes:
    return b"\x01\x20" + i.to_bytes(4, "big")  # any upper-layer payload


class Pair:
    """Two transports wired by hand: deliver() moves every pending datagram once."""

    def __init__(self, config: TransportConfig | None = None, seed: int = 0):
        self.now = T0
        self.ia, self.ib = ident(seed + 1), ident(seed + 2)
        self.a = SecureTransport(self.ia, random.Random(seed + 3), self.now, config)
        self.b = SecureTransport(self.ib, random.Random(seed + 4), self.now, config)
        self.wire: list[tuple[str, bytes]] = []

    def contact_b(self) -> Contact:
        return Contact(self.ib.public_key, B)

    def collect(self) -> list[tuple[str, bytes]]:
        got = [("b", d) for d, dst in self.a.datagrams_to_send(self.now) if dst == B]
        got += [("a", d) for d, dst in self.b.datagrams_to_send(self.now) if dst == A]
        self.wire += got
        return got

    def deliver(self, rounds: int = 10) -> None:
        for _ in range(rounds):
            got = self.collect()
            if not got:
                return
            for to, data in got:
                (self.b if to == "b" else self.a).receive_datagram(data, A if to == "b" else B, self.now)


def test_handshake_and_transport_both_ways():
    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    ea, eb = events(p.a), events(p.b)
    assert [type(e) for e in ea] == [SessionUp]
    assert ea[0].initiator and ea[0].node_id == p.ib.node_id
    # Early data is delivered at once, marked unverified; the session is B's only once A
    # has sent under it (its confirmation keepalive), proving it receives at its address.
    assert [type(e) for e in eb] == [Received, SessionUp]
    assert eb[0].payload == msg(1) and eb[0].node_id == p.ia.node_id and not eb[0].verified
    assert not eb[1].initiator
    p.b.send_to(p.ia.node_id, msg(2), p.now)
    p.a.send(p.contact_b(), msg(3), p.now)
    p.deliver()
    assert [e.payload for e in events(p.a)] == [msg(2)]
    assert [e.payload for e in events(p.b)] == [msg(3)]
    # The first request to a new peer cost one round trip: Init out, Response back.
    kinds = [decode(d).TYPE for _, d in p.wire[:2]]
    assert kinds == [HandshakeInit.TYPE, HandshakeResponse.TYPE]


def test_a_quiet_session_holds_keys_not_cipher_state_and_a_busy_one_caches_it():
    from weftnet.core.session.transport import HOT_AFTER

    p = Pair()
    p.a.send(p.contact_b(), msg(0), p.now)
    p.deliver()
    events(p.a), events(p.b)
    sa = p.a._by_node[p.ib.node_id].current
    sb = p.b._by_node[p.ia.node_id].current
    for i in range(1, 4):  # DHT-like: a few requests
        p.a.send(p.contact_b(), msg(i), p.now)
    p.deliver()
    assert [e.payload for e in events(p.b)] == [msg(i) for i in range(1, 4)]
    assert sa._send is None and sb._recv is None  # ~2.2 KB of OpenSSL state each, not kept
    for i in range(4, HOT_AFTER + 8):  # a data-plane flow crosses the threshold without a loss
        p.a.send(p.contact_b(), msg(i), p.now)
    p.deliver()
    assert [e.payload for e in events(p.b)] == [msg(i) for i in range(4, HOT_AFTER + 8)]
    assert sa._send is not None and sb._recv is not None
    assert sa._recv is None  # the direction that stayed quiet still holds only its key


def test_wrong_responder_key_gets_silence():
    p = Pair()
    stranger = ident(99)
    p.a.send(Contact(stranger.public_key, B), msg(1), p.now)  # B is not that node
    p.deliver()
    assert events(p.b) == []
    assert p.b.stats["auth_failures"] == 1
    assert not [w for w in p.wire if w[0] == "a"], "B must not answer"


def test_tampered_init_is_silent_and_replayed_init_is_rejected():
    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    init = p.a.datagrams_to_send(p.now)[0][0]
    bad = bytearray(init)
    bad[40] ^= 1
    p.b.receive_datagram(bytes(bad), A, p.now)
    assert p.b.datagrams_to_send(p.now) == [] and p.b.stats["auth_failures"] == 1
    p.b.receive_datagram(init, A, p.now)
    assert len(p.b.datagrams_to_send(p.now)) == 1
    events(p.b)
    p.b.receive_datagram(init, A, p.now + 1)  # an attacker replays the captured Init
    assert p.b.datagrams_to_send(p.now) == []
    assert p.b.stats["replays_dropped"] == 1
    assert events(p.b) == []


def test_transport_replay_reorder_duplicate_and_tamper():
    p = Pair()
    p.a.send(p.contact_b(), msg(0), p.now)
    p.deliver()
    events(p.b)
    for i in range(1, 6):
        p.a.send(p.contact_b(), msg(i), p.now)
    pkts = [d for d, _ in p.a.datagrams_to_send(p.now)]
    tampered = bytearray(pkts[2])
    tampered[-1] ^= 0xFF
    order = [pkts[4], bytes(tampered), pkts[0], pkts[0], pkts[2], pkts[1], pkts[3], pkts[4]]
    for d in order:
        p.b.receive_datagram(d, A, p.now)
    got = [e.payload for e in events(p.b)]
    assert sorted(got) == [msg(i) for i in range(1, 6)]  # each exactly once
    assert got[0] == msg(5)  # reordering is fine
    assert p.b.stats["auth_failures"] == 1
    assert p.b.stats["replays_dropped"] == 2


def test_forged_packet_does_not_advance_the_window():
    p = Pair()
    p.a.send(p.contact_b(), msg(0), p.now)
    p.deliver()
    p.a.send(p.contact_b(), msg(1), p.now)
    good = p.a.datagrams_to_send(p.now)[0][0]
    forged = bytearray(good)
    forged[6:14] = (10_000).to_bytes(8, "big")  # a far-future counter, bad tag
    p.b.receive_datagram(bytes(forged), A, p.now)
    p.b.receive_datagram(good, A, p.now)  # would be "too old" had the forgery moved the window
    assert [e.payload for e in events(p.b) if isinstance(e, Received)][-1] == msg(1)


def test_ping_measures_rtt_over_the_session():
    p = Pair()
    p.a.send(p.contact_b(), msg(0), p.now)
    p.deliver()
    events(p.a)
    pid = p.a.ping(p.ib.node_id, p.now)
    p.collect()
    p.now += 0.025
    for to, data in p.wire[-1:]:
        p.b.receive_datagram(data, A, p.now)
    p.now += 0.025
    for data, _ in p.b.datagrams_to_send(p.now):
        p.a.receive_datagram(data, B, p.now)
    (pong,) = events(p.a)
    assert isinstance(pong, PongReceived) and pong.ping_id == pid
    assert pong.rtt == pytest.approx(0.05)
    with pytest.raises(SessionError):
        p.a.ping(ident(50).node_id, p.now)


def test_rekey_by_message_count_loses_nothing():
    p = Pair(TransportConfig(rekey_after_messages=5))
    for i in range(40):
        p.a.send(p.contact_b(), msg(i), p.now)
        p.deliver()
    got = [e.payload for e in events(p.b) if isinstance(e, Received)]
    assert got == [msg(i) for i in range(40)]
    assert p.a.stats["handshakes_completed"] >= 5


def test_a_rekey_reuses_the_static_dh_each_end_keeps_with_the_peer(monkeypatch):
    p = Pair(TransportConfig(rekey_after_messages=3))
    p.a.send(p.contact_b(), msg(0), p.now)
    p.deliver()
    ss_a = p.a._by_node[p.ib.node_id].static_dh
    assert ss_a and ss_a == p.b._by_node[p.ia.node_id].static_dh  # ss: the same from both ends
    dh_calls = []
    real_dh = hs.DH
    monkeypatch.setattr(hs, "DH", lambda key, pub: dh_calls.append(pub) or real_dh(key, pub))
    before = p.a.stats["handshakes_initiated"]
    for i in range(1, 10):
        p.a.send(p.contact_b(), msg(i), p.now)
        p.deliver()
    rekeys = p.a.stats["handshakes_initiated"] - before
    assert rekeys >= 2
    assert [e.payload for e in events(p.b) if isinstance(e, Received)] == [msg(i) for i in range(10)]
    # es, ee, se at each end: the ss of the first handshake is not computed again
    assert len(dh_calls) == 6 * rekeys


def test_rekey_by_time_and_refusal_after_reject_time():
    cfg = TransportConfig(rekey_after_time=120, reject_after_time=180)
    p = Pair(cfg)
    p.a.send(p.contact_b(), msg(0), p.now)
    p.deliver()
    p.now += 121
    p.a.send(p.contact_b(), msg(1), p.now)  # sent on the old session, triggers a rekey
    p.deliver()
    assert p.a.stats["handshakes_initiated"] == 2
    p.now += 179  # the new session is 179 s old, the first one long expired
    p.a.send(p.contact_b(), msg(2), p.now)
    p.deliver()
    got = [e.payload for e in events(p.b) if isinstance(e, Received)]
    assert got == [msg(0), msg(1), msg(2)]


def test_expired_session_is_not_used_for_sending():
    p = Pair(TransportConfig(rekey_after_time=1000, reject_after_time=180, idle_timeout=10_000))
    p.a.send(p.contact_b(), msg(0), p.now)
    p.deliver()
    p.now += 200
    p.a.send(p.contact_b(), msg(1), p.now)
    first = decode(p.a.datagrams_to_send(p.now)[0][0])
    assert isinstance(first, HandshakeInit)  # a fresh handshake, not the stale keys


def test_handshake_retry_then_unreachable():
    cfg = TransportConfig(handshake_retry=1.0, handshake_timeout=10.0)
    p = Pair(cfg)
    p.a.send(p.contact_b(), msg(0), p.now)
    sent = 0
    while p.now < T0 + 15:
        sent += len(p.a.datagrams_to_send(p.now))  # everything is lost
        p.now = p.a.get_timer()
        p.a.handle_timer(p.now)
    assert 5 <= sent <= 11
    ev = [e for e in events(p.a) if isinstance(e, Unreachable)]
    assert len(ev) == 1 and ev[0].node_id == p.ib.node_id


def test_cookie_under_load():
    cfg = TransportConfig(handshakes_per_second_under_load=0)
    p = Pair(cfg)
    p.a.send(p.contact_b(), msg(1), p.now)
    (init,) = p.collect()
    p.b.receive_datagram(init[1], A, p.now)
    (reply,) = [d for d, _ in p.b.datagrams_to_send(p.now)]
    assert isinstance(decode(reply), CookieReply)
    assert events(p.b) == []  # no DH spent, no session
    p.a.receive_datagram(reply, B, p.now)  # A retries at once with mac2
    p.deliver()
    assert any(isinstance(e, Received) and e.payload == msg(1) for e in events(p.b))
    assert p.b.stats["cookies_sent"] == 1 and p.a.stats["cookies_received"] == 1


def test_cookie_reply_for_someone_else_is_ignored():
    p = Pair(TransportConfig(handshakes_per_second_under_load=0))
    p.a.send(p.contact_b(), msg(1), p.now)
    p.collect()
    forged = encode(CookieReply(12345, bytes(12), bytes(32)))
    p.a.receive_datagram(forged, B, p.now)
    assert p.a.stats["cookies_received"] == 0


def test_hello_discovers_key_and_is_padded():
    p = Pair()
    p.a.connect(B, p.now)
    (hello,) = [d for d, _ in p.a.datagrams_to_send(p.now)]
    assert isinstance(decode(hello), Hello)
    p.b.receive_datagram(hello, A, p.now)
    (reply,) = [d for d, _ in p.b.datagrams_to_send(p.now)]
    assert isinstance(decode(reply), HelloReply)
    assert len(hello) >= len(reply)  # no amplification
    p.a.receive_datagram(reply, B, p.now)
    p.deliver()
    assert [type(e) for e in events(p.a)] == [SessionUp]
    # A short (unpadded) hello gets nothing.
    p.b.receive_datagram(encode(Hello(1, b"")), C, p.now)
    assert p.b.datagrams_to_send(p.now) == []


def test_hello_is_rate_limited_per_source():
    p = Pair()
    for i in range(50):
        p.b.receive_datagram(encode(Hello(i, bytes(60))), C, p.now)
    replies = p.b.datagrams_to_send(p.now)
    assert len(replies) == p.b.config.hello_per_source_per_second
    assert p.b.stats["hello_dropped"] == 50 - len(replies)


def test_simultaneous_open_converges():
    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.b.send(Contact(p.ia.public_key, A), msg(2), p.now)
    p.deliver()
    for i in range(3, 10):
        p.a.send(p.contact_b(), msg(i), p.now)
        p.b.send_to(p.ia.node_id, msg(100 + i), p.now)
        p.deliver()
    ra = [e.payload for e in events(p.a) if isinstance(e, Received)]
    rb = [e.payload for e in events(p.b) if isinstance(e, Received)]
    assert rb == [msg(i) for i in [1] + list(range(3, 10))]
    assert ra == [msg(2)] + [msg(100 + i) for i in range(3, 10)]


def test_idle_session_goes_down_and_keepalive_is_sent():
    cfg = TransportConfig(keepalive=10, idle_timeout=60)
    p = Pair(cfg)
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    p.now += 1
    p.a.send(p.contact_b(), msg(2), p.now)  # B receives data and has nothing to say
    p.deliver()
    p.now += 10.5
    p.b.handle_timer(p.now)
    ka = p.b.datagrams_to_send(p.now)
    assert len(ka) == 1 and p.b.stats["keepalives_sent"] == 1
    p.now += 60
    p.a.handle_timer(p.now)
    assert any(isinstance(e, SessionDown) for e in events(p.a))


def test_a_session_closed_here_is_reported_down_once():
    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    events(p.a)
    assert p.a.has_session(p.ib.node_id)
    p.a.close(p.ib.node_id, p.now)
    p.a.close(p.ib.node_id, p.now)  # nothing left to close
    down = [e for e in events(p.a) if isinstance(e, SessionDown)]
    assert [(e.node_id, e.reason) for e in down] == [(p.ib.node_id, "closed")]
    assert not p.a.has_session(p.ib.node_id)


def test_roaming_follows_an_authenticated_source_once_it_answered_there():
    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    p.a.send(p.contact_b(), msg(2), p.now)
    (data, _), = p.a.datagrams_to_send(p.now)
    p.b.receive_datagram(data, C, p.now)  # A moved to a new address (or A's key holder spoofed one)
    p.b.send_to(p.ia.node_id, msg(3), p.now)
    # Not on the packet's word: nothing proves A receives at C (security.md, item 18).
    assert [dst for _, dst in p.b.datagrams_to_send(p.now)] == [A]
    # Once a probe is answered there (reach's path validation), the session follows.
    p.b.confirm_path(p.ia.node_id, C, 0.01, p.now)
    p.b.follow(p.ia.node_id, C, p.now)  # (the policy may have moved already: C answers, A never did)
    p.b.send_to(p.ia.node_id, msg(4), p.now)
    assert [dst for _, dst in p.b.datagrams_to_send(p.now)] == [C]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5000), max_size=300))
def test_replay_window_matches_a_reference(counters):
    w = ReplayWindow(size=256)
    seen: set[int] = set()
    top = -1
    for c in counters:
        fresh = c not in seen and c > top - 256
        assert w.check(c) == fresh
        if fresh:
            assert w.accept(c)
            seen.add(c)
            top = max(top, c)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([1, 2, 3, 4, 5, 6, 16, 17]))
def test_garbage_never_raises_and_never_answers(body, kind):
    p = Pair()
    p.b.receive_datagram(bytes((1, kind)) + body, A, p.now)
    out = p.b.datagrams_to_send(p.now)
    # The only thing a stranger can get back is a HelloReply to a valid padded Hello.
    assert all(isinstance(decode(d), HelloReply) for d, _ in out)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sessions_survive_a_hostile_network(seed):
    """20% loss, duplicates, reordering and a partition that heals."""
    net = SimNetwork(seed, LinkModel(loss=0.2, duplicate=0.1, reorder=0.3))
    ids = [ident(seed * 10 + i) for i in range(3)]
    ts = [SecureTransport(ids[i], random.Random(seed * 100 + i), net.now) for i in range(3)]
    addrs = [A, B, C]
    for a, t in zip(addrs, ts):
        net.add(a, t)
    received: dict[int, list[bytes]] = {0: [], 1: [], 2: []}

    def pump():
        for i, t in enumerate(ts):
            while (e := t.next_event()) is not None:
                if isinstance(e, Received):
                    received[i].append(e.payload)

    # Each node sends to the others, resending what was not acknowledged (the
    # transport is a datagram service; reliability belongs to the caller).
    for rnd in range(30):
        if rnd == 10:
            net.partition([A], [B, C])
        if rnd == 15:
            net.heal()
        for i, t in enumerate(ts):
            for j in range(3):
                if i != j:
                    m = msg(1000 * i + j)
                    if m not in received[j]:
                        t.send(Contact(ids[j].public_key, addrs[j]), m, net.now)
            net.flush(addrs[i])
        net.run_for(1.0)
        pump()
    for j in range(3):
        want = {msg(1000 * i + j) for i in range(3) if i != j}
        assert want <= set(received[j])
    assert all(t.has_session(ids[(k + 1) % 3].node_id) for k, t in enumerate(ts))


def test_one_seed_one_run():
    def run(seed):
        net = SimNetwork(seed, LinkModel(loss=0.1, duplicate=0.1, reorder=0.2))
        ia, ib = ident(1), ident(2)
        a = net.add(A, SecureTransport(ia, random.Random(seed), net.now))
        net.add(B, SecureTransport(ib, random.Random(seed + 1), net.now))
        for i in range(20):
            a.send(Contact(ib.public_key, B), msg(i), net.now)
            net.flush(A)
            net.run_for(0.5)
        return net.trace_digest()

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_handshake_functions_agree_on_keys():
    ia, ib = ident(1), ident(2)
    rng = random.Random(7)
    raw, state = hs.create_init(ia, ib.public_key, 42, T0, rng, b"early")
    res = hs.consume_init(ib, decode(raw))
    assert res.peer_public == ia.public_key and res.payload == b"early"
    resp, r_send, r_recv = hs.create_response(res, 7, rng, b"reply")
    payload, i_send, i_recv = hs.consume_response(ia, state, decode(resp))
    assert payload == b"reply" and i_send == r_recv and i_recv == r_send and i_send != i_recv


def big(i: int, size: int = 50_000) -> bytes:
    return b"\x01\x20" + random.Random(i).randbytes(size)


def test_a_large_payload_is_sealed_once_and_crosses_in_fragments_in_any_order():
    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    events(p.a), events(p.b)
    p.a.send(p.contact_b(), big(1), p.now)
    out = p.a.datagrams_to_send(p.now)
    assert len(out) == -(-(len(big(1)) + 16) // (1344 - 16))
    assert all(len(d) <= 1344 and d[1] == TransportFragment.TYPE for d, _ in out)
    assert decode(out[0][0]).count == len(out)
    order = list(out)
    random.Random(2).shuffle(order)
    for d, _ in order + order[:3]:  # with duplicates
        p.b.receive_datagram(d, A, p.now)
    got = events(p.b)
    assert [e.payload for e in got] == [big(1)]  # exactly once
    # The whole set replayed later is refused by the window, not delivered again.
    for d, _ in out:
        p.b.receive_datagram(d, A, p.now)
    assert events(p.b) == [] and p.b.stats["replays_dropped"] >= 1


def test_tampered_fragments_fail_as_a_whole_and_strangers_get_no_buffer():
    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    events(p.b)
    p.a.send(p.contact_b(), big(2), p.now)
    out = [d for d, _ in p.a.datagrams_to_send(p.now)]
    bad = bytearray(out[3])
    bad[-1] ^= 1
    for d in out[:3] + [bytes(bad)] + out[4:]:
        p.b.receive_datagram(d, A, p.now)
    assert events(p.b) == [] and p.b.stats["auth_failures"] == 1
    # Fragments naming no session of ours are dropped before any buffering.
    forged = b"\x01\x07" + b"\x00\x00\x00\x09" + bytes(8) + b"\x00\x05" + b"x" * 100
    p.b.receive_datagram(forged, C, p.now)
    assert p.b.stats["unknown_index_dropped"] == 1 and not p.b._reassembly


def test_reassembly_is_bounded_and_incomplete_payloads_expire():
    from weftnet.core.session.transport import FRAGMENT_TIMEOUT, MAX_REASSEMBLIES

    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    for i in range(MAX_REASSEMBLIES + 20):
        p.a.send(p.contact_b(), big(i, 5000), p.now)
        first = p.a.datagrams_to_send(p.now)[0][0]
        p.b.receive_datagram(first, A, p.now)
    assert len(p.b._reassembly) <= MAX_REASSEMBLIES
    p.now += FRAGMENT_TIMEOUT + 1
    p.a.send(p.contact_b(), big(999, 5000), p.now)
    p.b.receive_datagram(p.a.datagrams_to_send(p.now)[0][0], A, p.now)
    assert len(p.b._reassembly) == 1 and p.b.stats["fragments_expired"] >= MAX_REASSEMBLIES


def test_large_payloads_survive_a_hostile_network():
    net = SimNetwork(5, LinkModel(loss=0.02, duplicate=0.1, reorder=0.3))
    ids = [ident(50), ident(51)]
    ts = [SecureTransport(ids[i], random.Random(60 + i), net.now) for i in range(2)]
    for a, t in zip((A, B), ts):
        net.add(a, t)
    got: list[bytes] = []
    for rnd in range(40):
        for i in range(5):
            m = big(100 + i, 20_000)
            if m not in got:
                ts[0].send(Contact(ids[1].public_key, B), m, net.now)
        net.flush(A)
        net.run_for(1.0)
        while (e := ts[1].next_event()) is not None:
            if isinstance(e, Received):
                got.append(e.payload)
    assert {big(100 + i, 20_000) for i in range(5)} <= set(got)


def test_fragments_that_add_up_to_more_than_any_payload_are_dropped():
    from weftnet.core.session.transport import MAX_REASSEMBLED

    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.deliver()
    # A peer with a session (its index is real) sends huge pieces under one counter.
    index = p.b._peers[p.ia.public_key].current.local_index
    piece = b"z" * 30_000
    for i in range(3):
        p.b.receive_datagram(b"\x01\x07" + index.to_bytes(4, "big") + (50).to_bytes(8, "big")
                             + bytes((i, 8)) + piece, A, p.now)
    assert 3 * 30_000 > MAX_REASSEMBLED and not p.b._reassembly
    assert p.b.stats["malformed_dropped"] == 1


def test_a_handshake_that_times_out_after_the_peers_own_came_through_is_no_failure():
    """Two symmetric NATs: only one direction's Init gets through. Ours waits unanswered while the
    peer's completes, and when ours times out no one is told the peer is unreachable (a user's
    ping to it used to fail with "handshake timed out" while the session carried traffic). The
    payload that rode in our lost Init as early data goes on the peer's session when ours ends
    (it was lost with it, and a ping waited for its deadline with the session up)."""
    p = Pair()
    p.a.send(p.contact_b(), msg(1), p.now)
    p.b.send(Contact(p.ia.public_key, A), msg(2), p.now)

    def step():
        for d, dst in p.a.datagrams_to_send(p.now):
            if not isinstance(decode(d) if d[1] == HandshakeInit.TYPE else None, HandshakeInit):
                p.b.receive_datagram(d, A, p.now)  # A's Inits are lost on the way
        for d, dst in p.b.datagrams_to_send(p.now):
            p.a.receive_datagram(d, B, p.now)

    for _ in range(5):
        step()
    assert any(isinstance(e, SessionUp) for e in events(p.b))
    ev_a = events(p.a)
    assert any(isinstance(e, SessionUp) for e in ev_a) and [e.payload for e in ev_a if isinstance(e, Received)] == [msg(2)]
    end = p.now + p.a.config.handshake_timeout + 5
    while p.now < end:  # A's retries go unanswered until it gives up on its own handshake
        p.now += 0.25
        p.a.handle_timer(p.now)
        p.b.handle_timer(p.now)
        step()
    assert p.a.stats["handshakes_failed"] == 1
    assert not [e for e in events(p.a) if isinstance(e, (Unreachable, SessionDown))]
    p.a.send(p.contact_b(), msg(3), p.now)  # the session still carries traffic
    step()
    assert [e.payload for e in events(p.b) if isinstance(e, Received)] == [msg(1), msg(3)]


def test_crossed_open_converges_on_one_session_so_only_one_end_rekeys():
    """After a crossed first handshake each end sends on the session it started, so both are
    initiators and both would rekey at the same moment, crossing again. The end with the larger
    key moves to the peer's session once the peer sends on it: then both send on one session,
    only its initiator rekeys on time, and nothing in flight is lost."""
    p = Pair(TransportConfig(rekey_after_time=120, reject_after_time=180))
    ca = Contact(p.ia.public_key, A)
    p.a.send(p.contact_b(), msg(1), p.now)
    p.b.send(ca, msg(2), p.now)
    p.deliver()
    sa, sb = p.a._by_node[p.ib.node_id], p.b._by_node[p.ia.node_id]
    for i in range(3, 6):  # traffic both ways
        p.now += 1
        p.a.send(p.contact_b(), msg(i), p.now)
        p.b.send_to(p.ia.node_id, msg(100 + i), p.now)
        p.deliver()
    assert [e.payload for e in events(p.b) if isinstance(e, Received)] == [msg(1)] + [msg(i) for i in range(3, 6)]
    assert [e.payload for e in events(p.a) if isinstance(e, Received)] == [msg(2)] + [msg(100 + i) for i in range(3, 6)]
    # One session, the same at both ends; its initiator is the end with the smaller key.
    assert sa.current.local_index == sb.current.remote_index and sb.current.local_index == sa.current.remote_index
    big, small = (p.a, p.b) if p.ia.public_key > p.ib.public_key else (p.b, p.a)
    assert big.stats["crossed_adopted"] == 1 and small.stats["crossed_adopted"] == 0
    assert small._by_node[(p.ia if small is p.b else p.ib).node_id].current.initiator
    # At the rekey time both send: only the initiator starts a handshake; nothing is lost.
    p.now += 118
    inits = []
    for i in range(6, 12):
        p.now += 1
        p.a.send(p.contact_b(), msg(i), p.now)
        p.b.send_to(p.ia.node_id, msg(100 + i), p.now)
        for t in (p.a, p.b):
            out = t.datagrams_to_send(p.now)
            inits += [t for d, _ in out if d[1] == HandshakeInit.TYPE]
            dst = p.b if t is p.a else p.a
            for d, _ in out:
                dst.receive_datagram(d, A if t is p.a else B, p.now)
        p.deliver()
    assert inits == [small]
    assert [e.payload for e in events(p.b) if isinstance(e, Received)] == [msg(i) for i in range(6, 12)]
    assert [e.payload for e in events(p.a) if isinstance(e, Received)] == [msg(100 + i) for i in range(6, 12)]
    assert p.a.stats["unknown_index_dropped"] == 0 and p.b.stats["unknown_index_dropped"] == 0


def test_crossed_rekeys_after_a_crossed_open_keep_the_session_the_peer_still_sends_on():
    """nat-mix, traced: a crossed first handshake leaves each end sending on the session it
    started, so the one the peer sends on is our *older* one. Both ends then rekey at once
    (each is the initiator of its current session) and the two new sessions arrive together.
    Retiring the oldest older session dropped the one the peer still sent on: its Pong, sent
    before it switched, came in for an unknown index and the ping failed. Now the session the
    peer went longest without using is retired, and the list stays bounded."""
    from weftnet.core.session.transport import MAX_OLDER

    p = Pair(TransportConfig(rekey_after_time=120, reject_after_time=180))
    # Neither end gives way (as with a peer of an earlier version: test_crossed_open_converges_
    # on_one_session shows what this version does), so the sessions stay crossed.
    p.a._adopt = p.b._adopt = lambda peer, s: None
    ca = Contact(p.ia.public_key, A)
    p.a.send(p.contact_b(), msg(1), p.now)
    p.b.send(ca, msg(2), p.now)
    p.deliver()
    sa, sb = p.a._by_node[p.ib.node_id], p.b._by_node[p.ia.node_id]
    assert sa.current.initiator and sb.current.initiator  # crossed: each sends on its own
    assert sa.current.local_index != sb.current.remote_index
    p.now += 60  # traffic both ways on the crossed pair
    p.a.send(p.contact_b(), msg(3), p.now)
    p.b.send_to(p.ia.node_id, msg(4), p.now)
    p.deliver()
    events(p.a), events(p.b)

    p.now += 61  # both sessions due for a rekey; both ends send at the same moment
    pid = p.a.ping(p.ib.node_id, p.now)  # on the old session, then an Init
    p.b.send_to(p.ia.node_id, msg(5), p.now)  # likewise
    from_a, from_b = p.a.datagrams_to_send(p.now), p.b.datagrams_to_send(p.now)
    assert [d[1] for d, _ in from_a] == [4, HandshakeInit.TYPE]
    assert [d[1] for d, _ in from_b] == [4, HandshakeInit.TYPE]
    p.now += 0.01
    p.b.receive_datagram(from_a[0][0], A, p.now)  # the Ping: B answers on the session it sends on
    (pong,) = p.b.datagrams_to_send(p.now)
    held = pong[0]
    for d, _ in from_a[1:]:  # A's Init
        p.b.receive_datagram(d, A, p.now)
    for d, _ in from_b:  # B's data and Init
        p.a.receive_datagram(d, B, p.now)
    p.now += 0.01
    p.deliver()  # the Responses cross: each end installs two new sessions; the Pong is still on its way
    assert sa.pending is None and sb.pending is None
    assert len(sa.older) <= MAX_OLDER and len(sb.older) <= MAX_OLDER
    p.now += 0.01
    dropped = p.a.stats["unknown_index_dropped"]
    p.a.receive_datagram(held, B, p.now)  # the Pong, late: on the peer's previous session
    assert p.a.stats["unknown_index_dropped"] == dropped
    got = events(p.a)
    assert [e.ping_id for e in got if isinstance(e, PongReceived)] == [pid]
    assert [e.payload for e in got if isinstance(e, Received)] == [msg(5)]
    for i in range(6, 10):  # and the new sessions carry traffic both ways, nothing lost
        p.now += 1
        p.a.send(p.contact_b(), msg(i), p.now)
        p.b.send_to(p.ia.node_id, msg(100 + i), p.now)
        p.deliver()
    assert [e.payload for e in events(p.b) if isinstance(e, Received)] == [msg(i) for i in range(6, 10)]
    assert [e.payload for e in events(p.a) if isinstance(e, Received)] == [msg(100 + i) for i in range(6, 10)]
    assert p.a.stats["unknown_index_dropped"] == dropped and p.b.stats["unknown_index_dropped"] == 0


def _rekey_with_inits_lost(peer_talks: bool):
    """A and B have a session; at 121 s A's rekey starts, and every Init either end sends is lost
    (a middlebox drops them) while data keeps flowing on the old session."""
    cfg = TransportConfig(rekey_after_time=120, reject_after_time=180, handshake_retry=1.0, handshake_timeout=10.0)
    p = Pair(cfg)
    p.a.send(p.contact_b(), msg(0), p.now)
    p.deliver()
    a_contact = Contact(p.ia.public_key, A)
    p.now += 121
    p.a.send(p.contact_b(), msg(1), p.now)  # goes on the old session and starts the rekey
    got_b = []
    end = p.now + 15
    while p.now < end:
        for data, dst in p.a.datagrams_to_send(p.now):
            if not isinstance(decode(data), HandshakeInit):
                p.b.receive_datagram(data, A, p.now)
        for data, dst in p.b.datagrams_to_send(p.now):
            if not isinstance(decode(data), HandshakeInit):  # B's own rekey at 130 s is lost too
                p.a.receive_datagram(data, B, p.now)
        got_b += [e.payload for e in events(p.b) if isinstance(e, Received)]
        if peer_talks:
            p.b.send(a_contact, msg(100), p.now)  # B answers on the session it has
        p.now += 0.5
        p.a.handle_timer(p.now)
        p.b.handle_timer(p.now)
    return p, got_b


def test_an_unanswered_rekey_while_the_peer_still_talks_does_not_report_it_unreachable():
    p, got_b = _rekey_with_inits_lost(peer_talks=True)
    ev = events(p.a)
    assert not [e for e in ev if isinstance(e, Unreachable)]
    assert msg(100) in [e.payload for e in ev if isinstance(e, Received)]
    assert p.a.stats["rekeys_unanswered"] == 1
    p.a.send(p.contact_b(), msg(2), p.now)  # the old session (136 s old) still carries data
    for data, dst in p.a.datagrams_to_send(p.now):
        if not isinstance(decode(data), HandshakeInit):
            p.b.receive_datagram(data, A, p.now)
    assert msg(2) in [e.payload for e in events(p.b) if isinstance(e, Received)]
    assert p.a.stats["handshakes_initiated"] == 3  # and it tries the rekey again


def test_an_unanswered_rekey_to_a_silent_peer_reports_it_unreachable():
    p, _ = _rekey_with_inits_lost(peer_talks=False)
    ev = [e for e in events(p.a) if isinstance(e, Unreachable)]
    assert len(ev) == 1 and ev[0].node_id == p.ib.node_id
    assert p.a.stats["rekeys_unanswered"] == 0
