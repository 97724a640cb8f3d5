"""The DHT's per-peer RTT estimate and hint credit (core/dht/peers.py): one slot per peer holds both,
and reads exactly what the two tables it replaced read (an RTT estimate per answering peer and a
hint credit per source, docs/security.md item 6), within one bound."""

from hypothesis import given, settings
from hypothesis import strategies as st

from weftnet.core.dht.peers import PeerEstimates
from weftnet.core.limits import TokenBuckets

_OPS = st.lists(st.tuples(st.sampled_from(("sample", "allow", "credit", "refund", "forget")), st.integers(0, 9),
                          st.floats(0.0005, 2.0), st.integers(0, 900)), max_size=80)


@settings(max_examples=150, deadline=None)
@given(_OPS)
def test_rtt_and_credit_read_what_the_two_tables_read(ops):
    """Under the bound (no eviction) every read equals the old tables': complex(srtt, rttvar) per peer,
    updated as RFC 6298 says, and a TokenBuckets of rate 0 starting at one ask."""
    p = PeerEstimates(4096, 256, 16384)
    rtts: dict[int, complex] = {}
    credit = TokenBuckets(0.0, 16384, start=256)
    charged: set[int] = set()  # the engine refunds only a source it charged (an ask's hint)
    for op, key, rtt, amount in ops:
        if op == "sample":
            p.sample(key, rtt)
            r = rtts.get(key)
            rtts[key] = complex(rtt, rtt / 2) if r is None else complex(
                0.875 * r.real + 0.125 * rtt, 0.75 * r.imag + 0.25 * abs(r.real - rtt))
        elif op == "allow":
            assert p.allow(key, 256) == credit.allow(key, 0.0, 256)
            charged.add(key)
        elif op == "credit":
            p.credit(key, amount)
            credit.credit(key, amount, 0.0)
        elif op == "refund":
            if key not in charged:
                continue
            p.refund(key, 256)
            credit.refund(key, 256)
        else:
            p.forget(key)
            charged.discard(key)
            rtts.pop(key, None)
            credit._b.pop(key, None) if credit._b else None
        for k in range(10):
            r = rtts.get(k)
            assert p.rtt(k) == (None if r is None else (r.real, r.imag))
            assert p.srtt(k) == (None if r is None else r.real)
            b = credit._b.get(k) if credit._b else None
            assert p.credit_of(k) == (256 if b is None else b.real)


def test_the_table_keeps_its_bound_forgets_the_oldest_and_a_returning_source_starts_at_one_ask():
    p = PeerEstimates(3, 256, 16384)
    for k in range(3):
        p.sample(k, 0.01 * (k + 1))
        p.credit(k, 1000)
    p.sample(7, 0.5)  # a fourth: the oldest (0) goes, and its slot is reused
    assert len(p) == 3 and 0 not in p and p.rtt(0) is None and p.credit_of(0) == 256
    assert p.rtt(7) == (0.5, 0.25) and p.credit_of(7) == 256
    assert [p.srtt(k) for k in (1, 2)] == [0.02, 0.03] and p.credit_of(1) == 1256
    assert len(p._v) == 9  # three slots' worth, no more
    p.forget(1)
    p.sample(8, 0.1)  # takes the freed slot
    assert len(p._v) == 9 and p.rtt(8) == (0.1, 0.05) and p.credit_of(8) == 256 and p.srtt(2) == 0.03
    assert p.allow(8, 256) and not p.allow(8, 256)  # one ask to start with, then none until earned


def test_past_the_small_table_every_estimate_and_the_order_of_eviction_are_kept():
    """Up to SMALL peers a table finds a peer by a byte tag in a list (bench/results/dmem16), past it by a
    dict: the same values are read either side of the change, peers whose IDs share their low 8 bits
    included, and a full table still lets the oldest go first."""
    from weftnet.core.dht import peers as pe

    n = pe.SMALL + 40
    p = PeerEstimates(n, 256, 16384)
    keys = [(i << 8) | (i % 3) for i in range(n)]  # three tags only: many peers share each
    for i, k in enumerate(keys):
        p.sample(k, 0.001 * (i + 1))
        p.credit(k, i)
        if i == 10:
            p.forget(keys[5])  # forgotten while small: the later ones move down, in order
    assert p._slot is not None and len(p) == n - 1
    for i, k in enumerate(keys):
        if i == 5:
            assert k not in p and p.rtt(k) is None and p.credit_of(k) == 256
        else:
            assert p.srtt(k) == 0.001 * (i + 1) and p.credit_of(k) == 256 + i
    p.sample(keys[5], 0.5)  # back as a newcomer, in the room it left: the table is full again
    assert len(p) == n and all(k in p for k in keys)
    p.sample(7 << 20, 0.5)  # the oldest (keys[0]) goes
    p.sample(9 << 20, 0.5)  # then the next oldest (keys[1]; keys[5] is young now)
    assert keys[0] not in p and keys[1] not in p and keys[2] in p and keys[5] in p and len(p) == n
    assert p.srtt(keys[5]) == 0.5 and p.credit_of(keys[5]) == 256
    small = PeerEstimates(3, 256, 16384)
    for k in (1, 257, 513):  # one tag, three peers
        small.sample(k, k / 1000)
    assert [small.srtt(k) for k in (1, 257, 513)] == [0.001, 0.257, 0.513]
    small.forget(257)
    assert small.srtt(257) is None and small.srtt(513) == 0.513 and len(small._v) == 6
