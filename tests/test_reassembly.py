"""The shared reassembly table: bounded overall and per source, so one sender cannot push
out the payloads other senders are in the middle of delivering."""

from hypothesis import given, settings, strategies as st

from weftnet.core.session.reassembly import REFUSED, Reassembly


def table(max_entries=16, per_source=None):
    evicted = []
    return Reassembly(max_entries, 2.0, 10_000, evicted.append, per_source), evicted


def test_a_flooding_source_pushes_out_its_own_payloads_not_anothers():
    r, evicted = table(16)
    assert r.add(("honest", 1), 0, 2, b"ab", 0.0) is None  # first half of an honest payload
    for pid in range(1_000):  # a peer starting payloads it never finishes
        assert r.add(("flood", pid), 0, 3, b"x", 0.1) is None
    assert r.in_progress("flood") == 4 and len(r) == 5
    assert all(k[0] == "flood" for k in evicted) and len(evicted) == 996
    assert r.add(("honest", 1), 1, 2, b"cd", 0.2) == b"abcd"  # still there, completes


def test_the_table_stays_bounded_when_many_sources_fill_it():
    r, evicted = table(8, per_source=2)
    for src in range(20):
        for pid in range(2):
            r.add((src, pid), 0, 2, b"x", 0.0)
    assert len(r) == 8 and sum(r.in_progress(s) for s in range(20)) == 8
    assert len(evicted) == 32 and {k[0] for k in evicted} == set(range(16))  # oldest sources went first


def test_expired_payloads_go_first_and_a_contradiction_drops_the_payload():
    r, evicted = table(4)
    r.add(("a", 1), 0, 2, b"x", 0.0)
    r.add(("b", 1), 0, 2, b"y", 5.0)  # a's payload is past its 2 s
    assert evicted == [("a", 1)] and r.in_progress("a") == 0
    assert r.add(("b", 1), 1, 3, b"z", 5.1) is REFUSED and len(r) == 0 and r.in_progress("b") == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 9), st.integers(0, 3), st.integers(1, 4),
                          st.floats(0, 0.5)), max_size=200))
def test_counts_per_source_always_match_the_table(ops):
    r, _ = table(8, per_source=3)
    now = 0.0
    for src, pid, index, count, dt in ops:
        now += dt
        if index < count:
            r.add((src, pid), index, count, b"p" * 10, now)
        assert len(r) <= 8
        assert all(r.in_progress(s) <= 3 for s in range(6))
        assert sum(r.in_progress(s) for s in range(6)) == len(r)
