"""The ``pmtu`` fuzz target (fuzz/weftfuzz.py): path MTU discovery (core/session/pmtu.py) under hostile input.

Our node has a search in flight towards peer M. Inputs are MtuProbe payloads
(0x5B: probes and acks, mostly with the probe IDs really in flight, and
mutations of them) from M or from a stranger with a session. Nothing may
raise; an answer is given only to a well-formed probe and is never larger
than 7 bytes (no amplification, whatever the probe's size); only M's acks
for M's own probes move the search; the tables stay bounded and in step.
"""

from __future__ import annotations

from weftnet.core.identity import Identity
from weftnet.core.session.pmtu import PathMtu, MtuProbe
from weftnet.core.wire import encode

T0 = 1_700_000_000.0
M = Identity.from_seed(bytes([2]) * 32).node_id
STRANGER = Identity.from_seed(bytes([9]) * 32).node_id


def corpus() -> list[bytes]:
    out = [encode(MtuProbe(i, 1)) for i in range(1, 40)]
    out += [encode(MtuProbe(i, 0, bytes(n))) for i, n in ((1, 0), (7, 100), (0xFFFFFFFF, 1400), (3, 8000))]
    return out


class PmtuTarget:
    def __init__(self, rng):
        self.rng = rng
        self.reset()

    def reset(self) -> None:
        self.p = PathMtu(1344, 8972, max_peers=8)
        self.now = T0
        self.inputs = 0
        self.p.start(M, 4, self.now)
        self.p.probes_to_send()

    def __call__(self, data: bytes) -> None:
        self.inputs += 1
        self.now += 0.01
        if self.inputs > 5000:
            self.reset()
        p = self.p
        sender = M if self.rng.random() < 0.8 else STRANGER
        before = dict(p.stats)
        ack = p.on_payload(sender, data, self.now)
        if ack is not None and (len(ack) > 7 or p.stats["acks_sent"] != before["acks_sent"] + 1):
            raise AssertionError("answered with more than a bare ack")
        if sender == STRANGER and p.stats["acks_received"] != before["acks_received"]:
            raise AssertionError("a stranger's ack moved our search")
        if len(p._searches) > p.max_peers:
            raise AssertionError("the search table outgrew its bound")
        if len(p._by_probe) != sum(len(s.outstanding) for s in p._searches.values()):
            raise AssertionError("the probe index is out of step with the searches")
        for _node, probe in p.probes_to_send():
            encode_ok = probe[1] == MtuProbe.TYPE and len(probe) <= 8972
            if not encode_ok:
                raise AssertionError("emitted something other than a probe within the ceiling")
        if self.inputs % 97 == 0:
            p.handle_timer(self.now + 2.0)
        while p.next_event() is not None:
            pass
        if self.inputs % 1000 == 0:
            p.start(M, 4, self.now)
