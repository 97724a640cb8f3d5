"""The table fill after a join asks the fastest nodes of a bucket first (``fill_by_rtt``).

What a user notices: the contacts a fill adds are the near ones its answers said were near, so later
lookups take fast first hops (docs/dht.md, "Joining"; measured in bench/results/sim_latency.md). Off,
the fill asks nearest to its random target first, whatever the answers said about them.
"""

from __future__ import annotations

import random

from weftnet.core.contact import Contact
from weftnet.core.dht import Dht, DhtConfig
from weftnet.core.dht.messages import FindNear, FindNode, NearNodes

T0 = 1_000_000.0


def _contact(seed: int, i: int) -> Contact:
    return Contact(random.Random(seed * 1000 + i).randbytes(32), (f"10.{seed}.{i // 256}.{i % 256}", 4000))


def _fill_asks(fill_by_rtt: bool):
    """A node whose table holds one contact (``first``) fills the far half of the ID space: the
    fill asks ``first``, which names six nodes of that half with its RTT to each. Returns the
    fill's first message, and the RTT hints of the nodes asked next, in order."""
    own = _contact(1, 1)
    # (Hint costs off: what is under test is the order, not what hearsay may cost.)
    cfg = DhtConfig(per_prefix=None, fill_by_rtt=fill_by_rtt, hint_cost=0, hint_inflight_per_address=0)
    dht = Dht(own, random.Random(2), T0, cfg)
    far = own.key ^ (1 << 255)  # a target in the far half (bucket 0)
    pool = [c for i in range(2, 400) if ((c := _contact(1, i)).key ^ own.key) >> 255]
    first, named = pool[0], pool[1:7]
    # The six named nodes, nearest to the target first; the answer says the nearest ones are the slowest.
    named.sort(key=lambda c: c.key ^ far)
    hints = {c.key: rtt for c, rtt in zip(named, (900, 800, 700, 60, 50, 40))}  # 0.1 ms units
    dht.table.add(first, T0)
    dht._start_lookup("fill", far, T0, budget=4)
    out = dht.messages_to_send()
    assert [c for c, _ in out] == [first]
    request = out[0][1]
    dht.on_message(first, NearNodes(request.rid, tuple(named), tuple(hints[c.key] for c in named)), T0 + 0.01)
    asked = [c for c, m in dht.messages_to_send()]
    return request, [hints[c.key] for c in asked]


def test_the_fill_asks_the_nodes_its_answer_said_were_fastest_first():
    request, asked = _fill_asks(True)
    assert type(request) is FindNear  # its answers carry the RTT hints the choice is made on
    assert asked == [40, 50, 60]  # the budget of 4 after the first request: the three fastest


def test_without_it_the_fill_asks_nearest_to_its_target_first():
    request, asked = _fill_asks(False)
    assert type(request) is FindNode
    assert asked == [900, 800, 700]
