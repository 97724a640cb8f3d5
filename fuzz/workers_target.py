"""The ``workers`` fuzz target (fuzz/weftfuzz.py): a data-plane worker's crypto
(core/session/workers.py) and WorkerSlots (0x31) under hostile input.

The worker holds the keys of one live session with peer M (handed over as the main process
would) and gets hostile datagrams: mostly real TransportData and TransportFragment datagrams M's
own worker sealed (with its partition) and mutations of them, some of another partition. Nothing
may raise; what it opens must be a payload M really sealed, each (session, counter) opened at
most once, and its reassembly stays bounded. WorkerSlots payloads, well-formed or not, from many
peers reach a NodeCore: it never raises and keeps at most 4,096 peers, each with 2-16 slots.
"""

from __future__ import annotations

import random

from weftnet.core.identity import Identity
from weftnet.core.session.workers import SessionKeys, WorkerCrypto, WorkerSlots
from weftnet.core.wire import encode

T0 = 1_700_000_000.0
_K1, _K2 = bytes(range(32)), bytes(range(32, 64))
M = Identity.from_seed(bytes([2]) * 32).node_id.raw
US = Identity.from_seed(bytes([1]) * 32).node_id.raw


def _sender() -> WorkerCrypto:
    w = WorkerCrypto(1, 0)
    w.install([SessionKeys(US, 77, 501, _K1, _K2, T0, ("192.0.2.1", 4500), 1400)], {US: 77})
    return w


_PAYLOADS = [b"\x01\x55" + bytes(32) + bytes([i]) * n for i, n in ((1, 10), (2, 600), (3, 5000), (4, 30_000))]


def corpus() -> list[bytes]:
    """Datagrams M's worker (slot 1) seals to us, small and fragmented, and WorkerSlots payloads."""
    w = _sender()
    out: list[bytes] = []
    for p in _PAYLOADS:
        out += w.seal(US, p, T0)
    out += [encode(WorkerSlots(n)) for n in (0, 1, 2, 4, 16, 17, 255)]
    return out


class WorkersTarget:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.reset()

    def reset(self) -> None:
        from weftnet.core.node import NodeCore

        self.now = T0
        self.inputs = 0
        self.w = WorkerCrypto(1, 0)
        # Our side of the same session: our local index is M's remote index, the keys swapped.
        self.w.install([SessionKeys(M, 501, 77, _K2, _K1, T0, ("192.0.2.2", 4500), 1400)], {M: 501})
        self.opened: set[int] = set()
        if not hasattr(self, "node"):
            self.node = NodeCore(Identity.from_seed(bytes([5]) * 32), random.Random(5), T0)
        if self.node.worker_slots:  # (the shared empty table until the first WorkerSlots)
            self.node.worker_slots.clear()

    def __call__(self, data: bytes) -> None:
        self.inputs += 1
        if self.inputs > 5000:
            self.reset()
        self.now += 0.001
        if len(data) >= 2 and data[1] == WorkerSlots.TYPE or self.rng.random() < 0.1:
            peer = Identity.from_seed(self.rng.randbytes(32)).node_id if self.rng.random() < 0.01 else \
                type(Identity.from_seed(bytes([9]) * 32).node_id)(self.rng.randbytes(32))
            self.node._on_worker_slots(peer, data, self.now)
            slots = self.node.worker_slots
            if len(slots) > 4096 or any(not 2 <= v <= 16 for v in slots.values()):
                raise AssertionError(f"worker_slots out of bounds: {len(slots)}")
            return
        r = self.w.open(data, self.now)
        if r is not None:
            node, plain = r
            if node != M or plain not in _PAYLOADS:
                raise AssertionError(f"opened something M never sealed: {plain[:40].hex()}")
            counter = int.from_bytes(data[6:14], "big")
            if counter in self.opened:
                raise AssertionError(f"counter {counter:#x} opened twice")
            self.opened.add(counter)
        if len(self.w._reassembly) > 128:
            raise AssertionError("reassembly unbounded")
