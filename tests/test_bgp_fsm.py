"""The RFC 4271 FSM: the table covers every (state, event) pair, and a real session driven into every state
lands where the table says for every event, with the NOTIFICATION the RFC asks for. Timers, without sleeping."""

from __future__ import annotations

import ipaddress
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgp_pair import Net
from weftnet.core.bgp.fsm import TRANSITIONS, Event, State
from weftnet.core.bgp.message import KEEPALIVE_BYTES, MessageFramer, Notification, Open, RouteRefresh
from weftnet.core.bgp.session import Close, Connect, PeerConfig, PeerSession, Send
from weftnet.core.bgp.capability import FourOctetAs, Multiprotocol
from weftnet.core.bgp.family import IPV4_UNICAST, L2VPN_EVPN
from weftnet.core.bgp.update import Update

LOCAL_ID = ipaddress.IPv4Address("192.0.2.1")
PEER_ID = ipaddress.IPv4Address("192.0.2.2")


class Owner:
    def __init__(self):
        self.calls = []

    def session_established(self, s, now):
        self.calls.append("up")

    def session_update(self, s, upd, now):
        self.calls.append("update")

    def session_refresh(self, s, fam, now):
        self.calls.append("refresh")

    def session_released(self, s, graceful, now):
        self.calls.append(("released", graceful))

    def session_open_received(self, s, now):
        self.calls.append("open")


def peer_open(hold=90, asn=65002):
    return Open(asn, hold, PEER_ID, (Multiprotocol(IPV4_UNICAST), FourOctetAs(asn))).encode()


def session_in(state: State, now: float = 100.0) -> tuple[PeerSession, Owner]:
    """A session brought into ``state`` by real inputs."""
    owner = Owner()
    s = PeerSession(PeerConfig("192.0.2.2", 65002, passive=state == State.ACTIVE), 65001, LOCAL_ID, owner,
                    random.Random(1))
    if state == State.IDLE:
        return s, owner
    s.start(now)
    if state in (State.CONNECT, State.ACTIVE):
        return s, owner
    s.connection_made(7, True, "192.0.2.1", "192.0.2.2", now)
    if state == State.OPENSENT:
        return s, owner
    s.data_received(peer_open(), now)
    if state == State.OPENCONFIRM:
        return s, owner
    s.data_received(KEEPALIVE_BYTES, now)
    assert s.state == State.ESTABLISHED
    return s, owner


def fire(s: PeerSession, ev: Event, now: float) -> None:
    """Produce ``ev`` the way the world would."""
    if ev == Event.MANUAL_START:
        s.start(now) if s.state == State.IDLE else s._event(ev, now)
    elif ev == Event.MANUAL_STOP:
        s.stop(now)
    elif ev == Event.TCP_CR_ACKED:
        s.connection_made(9, True, "192.0.2.1", "192.0.2.2", now)
    elif ev == Event.TCP_CONFIRMED:
        s.connection_made(9, False, "192.0.2.1", "192.0.2.2", now)
    elif ev == Event.TCP_FAILS:
        s.connection_lost(now)
    elif ev == Event.HOLD_EXPIRES:
        s.hold_at = now
        s.handle_timer(now) if s.hold_at is not None else None
        if s.hold_at is None and s.state == State.IDLE:
            return
    elif ev == Event.BGP_OPEN and s.conn is not None:
        s.data_received(peer_open(), now)
    elif ev == Event.HEADER_ERR and s.conn is not None:
        s.data_received(b"\x00" * 19, now)
    elif ev == Event.OPEN_ERR and s.conn is not None and s.state == State.OPENSENT:
        s.data_received(peer_open(asn=65099), now)
    elif ev == Event.NOTIF and s.conn is not None:
        s.data_received(Notification(6, 2).encode(), now)
    elif ev == Event.NOTIF_VER_ERR and s.conn is not None:
        s.data_received(Notification(2, 1, b"\x00\x04").encode(), now)
    elif ev == Event.KEEPALIVE and s.conn is not None:
        s.data_received(KEEPALIVE_BYTES, now)
    elif ev == Event.UPDATE and s.conn is not None:
        s.data_received(Update().encode(), now)
    elif ev == Event.UPDATE_ERR and s.conn is not None and s.state == State.ESTABLISHED:
        s.data_received(Update().encode()[:16] + struct.pack("!HB", 24, 2) + b"\x00\x05\x00\x00\x00", now)
    else:
        s._event(ev, now)


def test_every_pair_has_exactly_one_entry():
    assert set(TRANSITIONS) == {(s, e) for s in State for e in Event}
    for (s, e), (nxt, actions) in TRANSITIONS.items():
        assert isinstance(nxt, State)
        if "established" in actions:
            assert (s, e, nxt) == (State.OPENCONFIRM, Event.KEEPALIVE, State.ESTABLISHED)
        if nxt == State.IDLE and s != State.IDLE:
            assert "drop" in actions, (s, e)  # leaving for Idle always closes the connection


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", list(Event))
def test_session_follows_the_table(state, event):
    s, owner = session_in(state)
    s.actions.clear()
    fire(s, event, 200.0)
    want, actions = TRANSITIONS[(state, event)]
    assert s.state == want, f"{state.value} + {event.name}: {s.state.value}, table says {want.value}"
    sent = [a.data for a in s.actions if isinstance(a, Send)]
    notes = [MessageFramer().feed(d)[0][1] for d in sent if d[18] == 3]
    if "fsm_error" in actions:
        sub = {State.OPENSENT: 1, State.OPENCONFIRM: 2, State.ESTABLISHED: 3}[state]
        assert notes and notes[-1][:2] == bytes([5, sub])
    if "hold_expired" in actions:
        assert notes and notes[-1][:2] == b"\x04\x00"
    if "drop" in actions and state not in (State.IDLE,) and s.conn is None:
        assert not any(isinstance(a, Send) for a in list(s.actions)[len(sent):])
    if state == State.ESTABLISHED and want == State.IDLE:
        assert ("released", False) in owner.calls or ("released", True) in owner.calls


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list(Event)), max_size=25), st.sampled_from(list(State)))
def test_random_event_sequences_stay_legal(events, start):
    s, _ = session_in(start)
    now = 200.0
    for ev in events:
        now += 1
        fire(s, ev, now)
        assert s.state in State
        assert (s.conn is None) or s.state in (State.OPENSENT, State.OPENCONFIRM, State.ESTABLISHED, State.CONNECT,
                                                State.ACTIVE)
        if s.state == State.ESTABLISHED:
            assert s.neg is not None and s.established_at is not None
        if s.state == State.IDLE and s.stopped:
            assert s.retry_at is None and s.idle_hold_at is None  # stopped by hand: no automatic restart


def test_hold_timer_expiry_sends_notification_and_restarts_with_backoff():
    s, owner = session_in(State.ESTABLISHED)
    s.actions.clear()
    t = s.get_timer()
    assert t == pytest.approx(100.0 + 30.0)  # keepalive at hold/3
    s.handle_timer(130.0)
    assert any(isinstance(a, Send) and a.data == KEEPALIVE_BYTES for a in s.actions)
    s.actions.clear()
    s.handle_timer(190.0)  # hold (90 s) expired: nothing heard since 100
    sent = [a for a in s.actions if isinstance(a, Send)]
    assert sent and sent[-1].data[19:21] == b"\x04\x00"
    assert any(isinstance(a, Close) for a in s.actions) and s.state == State.IDLE
    assert ("released", False) in owner.calls
    s.actions.clear()
    s.handle_timer(s.get_timer())  # the idle hold timer: AutomaticStart
    assert s.state == State.CONNECT and any(isinstance(a, Connect) for a in s.actions)


def test_negotiated_hold_time_and_zero():
    s, _ = session_in(State.OPENSENT)
    s.data_received(peer_open(hold=9), 100.0)
    assert s.neg.hold_time == 9 and s.keepalive_at == pytest.approx(103.0)
    s2, _ = session_in(State.OPENSENT)
    s2.data_received(peer_open(hold=0), 100.0)
    s2.data_received(KEEPALIVE_BYTES, 100.0)
    assert s2.state == State.ESTABLISHED and s2.hold_at is None and s2.keepalive_at is None


def test_bad_peer_as_gets_open_error():
    s, _ = session_in(State.OPENSENT)
    s.actions.clear()
    s.data_received(peer_open(asn=65099), 100.0)
    sent = [a.data for a in s.actions if isinstance(a, Send)]
    assert sent[-1][19:21] == b"\x02\x02" and s.state == State.IDLE


def test_route_refresh_is_passed_to_the_owner():
    s, owner = session_in(State.ESTABLISHED)
    s.neg.families = frozenset({IPV4_UNICAST})
    s.data_received(RouteRefresh(IPV4_UNICAST).encode(), 150.0)
    assert owner.calls[-1] == "refresh"
    s.data_received(RouteRefresh(L2VPN_EVPN).encode(), 150.0)  # not negotiated: ignored
    assert owner.calls[-1] == "refresh" and s.state == State.ESTABLISHED


def test_connect_retry_backs_off():
    s, _ = session_in(State.CONNECT)
    gaps = []
    now = 100.0
    for _ in range(6):
        t = s.get_timer()
        gaps.append(t - now)
        now = t
        s.connect_failed(now)  # Connect -> Active, counter + 1
        s.handle_timer(s.get_timer())  # Active -> Connect
    assert gaps[-1] > gaps[0] * 4  # exponential, with jitter


def test_collision_keeps_one_session_opened_by_the_higher_id():
    """RFC 4271 6.8: both sides connect at once; the connection the higher BGP ID opened survives."""
    n = Net(seed=3)
    lo, hi = "10.0.0.1", "10.0.0.9"
    a, b = n.add(lo, 65001, [IPV4_UNICAST]), n.add(hi, 65002, [IPV4_UNICAST])
    n.peer(lo, hi)
    n.peer(hi, lo)
    for sp in (a, b):
        sp.start(n.now)
    (ca,), (cb,) = a.actions(), b.actions()
    assert isinstance(ca, Connect) and isinstance(cb, Connect)
    # both TCP connections come up before either OPEN arrives
    n.conns.update({1: (hi, 2), 2: (lo, 1), 3: (lo, 4), 4: (hi, 3)})
    assert b.connection_accepted(2, hi, lo, n.now) and a.connection_accepted(4, lo, hi, n.now)
    a.connection_made(ca.peer, 1, lo, hi, n.now)
    b.connection_made(cb.peer, 3, hi, lo, n.now)
    n.pump()
    n.advance(5)
    for sp in (a, b):
        (peer,) = sp.peers.values()
        assert len(peer.sessions) == 1 and peer.sessions[0].state == State.ESTABLISHED
    assert b.peers[lo].sessions[0].conn == 3 and b.peers[lo].sessions[0].outbound
    assert a.peers[hi].sessions[0].conn == 4 and not a.peers[hi].sessions[0].outbound
    notes = [d for _, _, d in n.wire if d[18] == 3]
    assert notes and all(d[19:21] == b"\x06\x07" for d in notes)  # Cease / Connection Collision Resolution


def test_late_connection_loses_to_an_established_one():
    n = Net(seed=3)
    a, b = n.add("10.0.0.1", 65001, [IPV4_UNICAST]), n.add("10.0.0.9", 65002, [IPV4_UNICAST])
    n.peer("10.0.0.1", "10.0.0.9")
    n.peer("10.0.0.9", "10.0.0.1")
    n.start()
    n.advance(5)
    for sp in (a, b):
        (peer,) = sp.peers.values()
        assert len(peer.sessions) == 1 and peer.sessions[0].state == State.ESTABLISHED


def test_docs_show_the_current_table():
    from pathlib import Path

    from weftnet.core.bgp.fsm import markdown_table

    page = (Path(__file__).resolve().parents[1] / "docs" / "bgp.md").read_text()
    assert markdown_table() in page, "docs/bgp.md: regenerate the table with fsm.markdown_table()"
