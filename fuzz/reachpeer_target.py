"""The ``reachpeer`` fuzz target (fuzz/weftfuzz.py): what a hostile session peer can make a node send, and where.

Node V (reach on, a relay, a second UDP port for dial-back tests, tracking A's paths) holds
a real session with A, the hostile peer. Inputs are:

* reach and paths payloads (0x13-0x17 probes, replies, call-me-maybe, relay requests and
  replies; 0x18-0x1A path probes, replies, link adverts) from A over the real session,
  each datagram arriving from A's own address or from a source A spoofed (it holds the
  session's keys: the datagram still authenticates);
* the same straight into V's reach and paths engines, as from a spoofed source;
* now and then, V's path to A declared dead (so V punches, probing what A's call-me-maybe
  named, as it does for a peer behind a relay);
* datagrams in the clear to V (0x0C ReachTest, V's dial-back answer, which nothing else
  fuzzes) from anywhere, some carrying the nonce of a dial-back V really has in flight.

Nothing may raise. Everything V sends to addresses A chose (in 192.0.2.0/24: the candidates
and link endpoints the corpus names, the sources A spoofs) must have gone through
``Reach._pay`` (its ``unproven_bytes``/``unproven_datagrams`` counters: charged to A's
ledger, or an answer no larger than the request that came from there), and never add up
to more than V received from A, in bytes or in datagrams, beyond the punch allowance
reach gives each ledger (``Reach.UNPAID_BYTES``, ``UNPAID_DATAGRAMS``; security.md,
item 18). V's session with A
must stay at A's real address (a spoofed source is never followed), and V's tables stay
within their bounds.
"""

from __future__ import annotations

import random

from weftnet.core import wire
from weftnet.core.identity import Identity

T0 = 1_700_000_000.0
V_ADDR, A_ADDR = ("198.18.0.1", 4500), ("198.18.1.1", 4500)
NAMED = [(f"192.0.2.{i}", 7000 + i) for i in range(1, 9)]  # addresses only A ever names


def corpus() -> list[bytes]:
    from weftnet.core.paths.messages import FLAG_TRANSIT, LinkInfo, PathAdvert, PathProbe, PathProbeReply
    from weftnet.core.reach.messages import (
        OP_DIALBACK, OP_REGISTER, OP_UNREGISTER, CallMeMaybe, Probe, ProbeReply, ReachTest, RelayReply,
        RelayRequest,
    )

    msgs = [
        CallMeMaybe(tuple(NAMED)), CallMeMaybe(tuple(NAMED[:2])), CallMeMaybe(()),
        Probe(1, b""), Probe(2, bytes(18)), Probe(3, bytes(1200)),
        ProbeReply(1, NAMED[0]), ProbeReply(2, None),
        RelayRequest(OP_REGISTER, 600, 0), RelayRequest(OP_UNREGISTER, 0, 0), RelayRequest(OP_DIALBACK, 0, 7),
        RelayReply(OP_REGISTER, 1, 600, 0, NAMED[1], NAMED[2], ""), RelayReply(OP_DIALBACK, 0, 0, 7, None, None, "x"),
        PathProbe(1, 1), PathProbeReply(1, 1),
        PathAdvert(FLAG_TRANSIT, tuple(LinkInfo(f"l{i}", ep, 1, i & 1) for i, ep in enumerate(NAMED))),
        ReachTest(7),
    ]
    return [wire.encode(m) for m in msgs]


def _received(core, node) -> tuple[int, int]:
    peer = core.transport._by_node.get(node)
    return (0, 0) if peer is None else (peer.bytes_in, peer.packets_in)


class ReachPeerTarget:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.reset()

    def reset(self) -> None:
        from weftnet.core.node import NodeConfig, NodeCore
        from weftnet.core.reach.engine import ReachConfig
        from weftnet.core.reach.relay import RelayConfig

        self.now = T0
        self.inputs = 0
        cfg = NodeConfig(reach=ReachConfig(enabled=True), relay=RelayConfig(enabled=True))
        self.v = NodeCore(Identity.from_seed(bytes([1]) * 32), random.Random(self.rng.random()), T0, cfg,
                          endpoint=V_ADDR)
        self.a = NodeCore(Identity.from_seed(bytes([2]) * 32), random.Random(self.rng.random()), T0,
                          NodeConfig(reach=ReachConfig(enabled=True)), endpoint=A_ADDR)
        self.v.set_local_endpoints([V_ADDR], T0)
        self.v.reach.alt_port = True
        self.a.transport.connect(V_ADDR, T0, self.v.identity.public_key)
        self._exchange(spoof=None)
        if not self.v.transport.has_session(self.a.node_id):
            raise AssertionError("the fuzz pair did not come up")
        self.v.paths.track(self.a.node_id, T0)
        self.to_named = [0, 0]  # bytes, datagrams V sent to addresses A chose
        self.from_a = _received(self.v, self.a.node_id)
        st = self.v.reach.stats
        self.unproven = (st.get("unproven_bytes", 0), st.get("unproven_datagrams", 0))
        self.direct_in = [0, 0]  # payloads handed to V's engines directly, sealed sizes
        self.ledgers = 1  # reach ledgers of A made so far (each starts with one unpaid probe)
        self.ledger = None

    clear_in = 0  # the size of this input's datagram in the clear, if it was one

    def _exchange(self, spoof) -> None:
        """Deliver between V and A until quiet; A's datagrams come from ``spoof`` if given."""
        v, a = self.v, self.a
        for _ in range(10):
            moved = False
            for d, dst in a.datagrams_to_send(self.now):
                moved = True
                if tuple(dst)[:2] == V_ADDR:
                    v.receive_datagram(d, spoof or A_ADDR, self.now)
            for d, dst in v.datagrams_to_send(self.now):
                moved = True
                host_port = (dst[0], dst[1])
                if host_port[0].startswith("192.0.2."):
                    if d[1] in (0x02, 0x03, 0x06):
                        # The handshake layer's own answers to what came in the clear from there
                        # (a Response, a CookieReply, a HelloReply): security.md's table bounds
                        # them by what arrived; they must not exceed the datagram that asked.
                        if len(d) > self.clear_in:
                            raise AssertionError(f"a {len(d)}-byte answer to a {self.clear_in}-byte datagram")
                        continue
                    self.to_named[0] += len(d)
                    self.to_named[1] += 1
                elif host_port == A_ADDR:
                    a.receive_datagram(d, V_ADDR, self.now)
            if not moved:
                break
        for core in (v, a):
            while core.next_event() is not None:
                pass

    def __call__(self, data: bytes) -> None:
        from weftnet.core.reach.engine import Reach

        self.inputs += 1
        if self.inputs > 5000:
            self.reset()
        self.clear_in = 0
        self.now += 0.001
        v, a = self.v, self.a
        roll = self.rng.random()
        spoof = NAMED[self.rng.randrange(len(NAMED))]
        if roll < 0.5:  # over the real session, from A's address or a spoofed one
            a.transport.send_to(v.node_id, data, self.now)
            self._exchange(spoof if self.rng.random() < 0.5 else None)
        elif roll < 0.65:  # (as if it had come sealed from there: what it would have weighed counts as A's)
            self.direct_in[0] += len(data) + 30
            self.direct_in[1] += 1
            v.reach.on_message(a.node_id, data, spoof, self.now)
        elif roll < 0.75:
            self.direct_in[0] += len(data) + 30
            self.direct_in[1] += 1
            v.paths.on_message(a.node_id, data, spoof, self.now)
        elif roll < 0.77:  # V's path to A stops answering: V punches (A's call-me-maybe names where)
            v.transport.path_dead(a.node_id, A_ADDR, self.now)
        else:  # in the clear: a ReachTest (with a nonce V is waiting for, now and then) or anything
            if v.reach._dialback and self.rng.random() < 0.5 and len(data) >= 10:
                nonce = next(iter(v.reach._dialback))
                data = data[:2] + nonce.to_bytes(8, "big") + data[10:]
            self.clear_in = len(data)
            v.receive_datagram(data, spoof if self.rng.random() < 0.5 else A_ADDR, self.now)
        if self.inputs % 197 == 0:
            self.now += 0.3
            v.handle_timer(self.now)
            a.handle_timer(self.now)
            v.paths.track(a.node_id, self.now)
        self._exchange(None)
        pr = v.reach._peers.get(a.node_id)
        if pr is not None and pr is not self.ledger:
            if self.ledger is not None:
                self.ledgers += 1
            self.ledger = pr
        got = _received(v, a.node_id)
        paid_bytes = got[0] - self.from_a[0] + self.direct_in[0] + self.ledgers * getattr(Reach, "UNPAID_BYTES", 0)
        paid_datagrams = got[1] - self.from_a[1] + self.direct_in[1] + self.ledgers * getattr(Reach, "UNPAID_DATAGRAMS", 0)
        st = v.reach.stats
        if self.to_named[0] > st["unproven_bytes"] - self.unproven[0] or \
                self.to_named[1] > st["unproven_datagrams"] - self.unproven[1]:
            raise AssertionError(f"V sent {self.to_named} to addresses A chose, more than it charged to A's ledger")
        if self.to_named[0] > paid_bytes or self.to_named[1] > paid_datagrams:
            raise AssertionError(f"V sent {self.to_named} to addresses A chose, having received "
                                 f"{got[0] - self.from_a[0]} bytes in {got[1] - self.from_a[1]} datagrams from A")
        if v.transport.current_path(a.node_id) not in (A_ADDR, None):
            raise AssertionError(f"V's session moved to {v.transport.current_path(a.node_id)}, which never answered")
        if len(v.reach._peers) > v.reach.MAX_PEERS or len(v.reach._probes) > v.reach.MAX_PROBES:
            raise AssertionError("a reach table outgrew its bound")
