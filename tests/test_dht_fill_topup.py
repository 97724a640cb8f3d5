"""The table fill after a join tops each farther bucket up to ``join_fill`` contacts (``fill_topup``).

What a user notices: a join sends no fill request into a bucket the join lookup already gave
``join_fill`` contacts, and only what is missing into one it gave fewer (docs/dht.md, "Joining");
without it, each farther bucket that is not full gets up to ``join_fill`` requests more.
"""

from __future__ import annotations

import random

from weftnet.core.contact import Contact
from weftnet.core.dht import Dht, DhtConfig
from weftnet.core.dht.messages import FindNode, Nodes

T0 = 1_000_000.0


def _contact(i: int) -> Contact:
    return Contact(random.Random(7000 + i).randbytes(32), (f"10.7.{i // 256}.{i % 256}", 4000))


def _fill(topup: bool, far_known: int) -> tuple[Dht, int]:
    """A node whose table holds ``far_known`` contacts in the far half of the ID space (bucket 0)
    and 19 in the near half runs its fill; every node asked answers with the far half's nodes it
    has not named yet. Returns the node and the requests its fill sent into the far half."""
    own = _contact(0)
    cfg = DhtConfig(per_prefix=None, join_fill=6, fill_topup=topup, hint_cost=0, hint_inflight_per_address=0)
    dht = Dht(own, random.Random(3), T0, cfg)
    pool = [_contact(i) for i in range(1, 600)]
    far = [c for c in pool if (c.key ^ own.key) >> 255]
    near = [c for c in pool if not (c.key ^ own.key) >> 255]
    for c in far[:far_known] + near[:19]:
        dht.table.add(c, T0)
    assert any(not b.covers(own.key) for b in dht.table.buckets)  # the table has split: a far bucket
    spare = iter(far[far_known:])
    dht._fill_after_join(T0)
    sent = 0
    for _ in range(50):
        out = dht.messages_to_send()
        if not out:
            break
        for dst, m in out:
            assert isinstance(m, FindNode)
            if (dst.key ^ own.key) >> 255:
                sent += 1
            dht.on_message(dst, Nodes(m.rid, tuple(c for _, c in zip(range(5), spare))), T0 + 0.05)
    return dht, sent


def test_a_bucket_that_already_holds_join_fill_contacts_gets_no_fill_request():
    _, sent = _fill(True, far_known=6)
    assert sent == 0
    _, sent = _fill(False, far_known=6)
    assert sent == 6  # without top-up: six more, whatever it held


def test_a_thin_bucket_gets_only_what_it_lacks():
    dht, sent = _fill(True, far_known=2)
    assert sent == 4
    far_bucket = next(b for b in dht.table.buckets if not b.covers(dht.key))
    # Whoever answered entered the table (the first request went to the contact nearest the fill's
    # target, already there, whose answer named the others): never past join_fill.
    assert 2 < len(far_bucket.entries) <= 6
