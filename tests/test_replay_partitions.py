"""Counter partitions (core/session/replay.py): several processes may seal one session's
packets, each in its own partition of the counter space, and the receiver accepts every
packet exactly once whatever the rates of the partitions (docs/handshake.md, "Counter
partitions"; docs/dataplane.md, "Several workers")."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from test_transport import A, Pair, events, msg

from weftnet.core.session.replay import MAX_PARTITIONS, PARTITION_SHIFT, ReplayWindow, partition_of
from weftnet.core.session.transport import Received


def _session(p: Pair):
    """A's current session with B (the keys and the send counter of that direction)."""
    (peer,) = [x for x in p.a._peers.values() if x.node_id == p.ib.node_id]
    return peer.current


def _up(p: Pair) -> None:
    p.a.send(p.contact_b(), msg(0), p.now)
    p.deliver()
    events(p.b)


def _seal(p: Pair, n: int, first: int) -> list[bytes]:
    for i in range(n):
        p.a.send(p.contact_b(), msg(first + i), p.now)
    return [d for d, _ in p.a.datagrams_to_send(p.now)]


def test_two_sealers_of_one_session_at_different_rates_are_each_accepted_once():
    p = Pair()
    _up(p)
    s = _session(p)
    # "Process 0" seals a few packets; then "process 3" (partition 3) seals far more than
    # a window's worth while process 0 is quiet; then process 0 goes on where it was.
    first = _seal(p, 5, 1)
    mine = s.counter
    s.counter = 3 << PARTITION_SHIFT
    burst = _seal(p, 3000, 100)
    s.counter = mine
    later = _seal(p, 5, 10_000)
    assert partition_of(int.from_bytes(burst[0][6:14], "big")) == 3
    for d in burst + first + later:  # the slow partition's packets arrive after the fast one's
        p.b.receive_datagram(d, A, p.now)
    got = [e.payload for e in events(p.b) if isinstance(e, Received)]
    assert len(got) == 3010 and len(set(got)) == 3010
    # Every packet replayed, in any order: none is accepted twice.
    dropped = p.b.stats["replays_dropped"]
    for d in later + burst[::-1] + first:
        p.b.receive_datagram(d, A, p.now)
    assert [e for e in events(p.b) if isinstance(e, Received)] == []
    assert p.b.stats["replays_dropped"] - dropped == 3010
    assert p.b.stats["duplicates_dropped"] >= 10 + 2048  # recent ones are known duplicates


def test_only_a_verified_packet_opens_a_partition_and_their_number_is_bounded():
    p = Pair()
    _up(p)
    s = _session(p)
    forged = bytearray(_seal(p, 1, 1)[0])
    forged[6:14] = (7 << PARTITION_SHIFT).to_bytes(8, "big")  # a partition, but a tag that cannot verify
    p.b.receive_datagram(bytes(forged), A, p.now)
    window = p.b._indices[int.from_bytes(forged[2:6], "big")].window  # B's receiving end of the session
    assert window.partitions is None and p.b.stats["auth_failures"] == 1
    sent = []
    for part in range(1, MAX_PARTITIONS + 3):
        s.counter = part << PARTITION_SHIFT
        sent += _seal(p, 1, part)
    for d in sent:
        p.b.receive_datagram(d, A, p.now)
    got = [e.payload for e in events(p.b) if isinstance(e, Received)]
    assert got == [msg(part) for part in range(1, MAX_PARTITIONS + 1)]  # the rest is refused
    assert len(window.partitions) == MAX_PARTITIONS


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 600)), max_size=300))
def test_partitioned_window_matches_a_reference(items):
    """Each partition behaves as its own sliding window; no counter is accepted twice."""
    w = ReplayWindow(size=128)
    seen: set[int] = set()
    tops: dict[int, int] = {}
    for part, low in items:
        c = (part << PARTITION_SHIFT) | low
        fresh = c not in seen and low > tops.get(part, -1) - 128
        assert w.check(c) == fresh
        if fresh:
            assert w.accept(c)
            seen.add(c)
            tops[part] = max(tops.get(part, -1), low)
        else:
            assert not w.accept(c)
