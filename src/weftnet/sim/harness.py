"""A deterministic network harness for sans-IO endpoints (tests and fuzzing).

It drives any object with the sans-IO surface every weftnet core exposes::

    receive_datagram(data, addr, now)   handle_timer(now)   get_timer()
    datagrams_to_send(now)

with a virtual clock and a seeded, hostile network: per-datagram delay with
jitter, loss, duplication, reordering (random extra delay), and partitions
that can be opened and healed. Events sit in a heap keyed ``(time, seq)`` so
equal times run in one fixed order; all randomness comes from one
``random.Random`` seeded by the caller, so one seed gives one identical run.
``trace_digest()`` hashes every delivery so tests can prove that.

This is the small harness of the foundation; ``weftnet.sim`` grows the
full-scale simulator (underlay model, workloads, plots) from the same idea.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass
from typing import Any, Callable, Protocol

__all__ = ["Endpoint", "LinkModel", "SimNetwork"]

Addr = tuple[str, int]


class Endpoint(Protocol):
    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None: ...

    def handle_timer(self, now: float) -> None: ...

    def get_timer(self) -> float | None: ...

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]: ...


@dataclass
class LinkModel:
    """How the network treats each datagram. Probabilities are per datagram."""

    delay: float = 0.010
    jitter: float = 0.002
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0  # chance of an extra delay of up to `reorder_delay`
    reorder_delay: float = 0.050


class SimNetwork:
    """A virtual-time network of sans-IO endpoints addressed by (host, port)."""

    def __init__(self, seed: int, link: LinkModel | None = None, start: float = 1_000_000.0):
        self.rng = random.Random(seed)
        self.link = link or LinkModel()
        self.now = start
        self._heap: list[tuple[float, int, str, Any]] = []
        self._seq = 0
        self.nodes: dict[Addr, Endpoint] = {}
        self._timers: dict[Addr, float | None] = {}
        self._blocked: set[frozenset[Addr]] = set()
        self._digest = hashlib.sha256()
        self.delivered = 0
        self.dropped = 0
        self.on_deliver: Callable[[Addr, Addr, bytes], None] | None = None

    # -- topology ---------------------------------------------------------
    def add(self, addr: Addr, node: Endpoint) -> Endpoint:
        self.nodes[addr] = node
        self._rearm(addr)
        return node

    def remove(self, addr: Addr) -> None:
        """Crash a node: it stops receiving and its timers never fire."""
        self.nodes.pop(addr, None)
        self._timers.pop(addr, None)

    def partition(self, group_a: list[Addr], group_b: list[Addr]) -> None:
        for a in group_a:
            for b in group_b:
                self._blocked.add(frozenset((a, b)))

    def heal(self) -> None:
        self._blocked.clear()

    # -- driving ----------------------------------------------------------
    def flush(self, addr: Addr) -> None:
        """Collect what a node wants to send and put it on the wire; re-arm its timer."""
        node = self.nodes.get(addr)
        if node is None:
            return
        for data, dst in node.datagrams_to_send(self.now):
            self._transmit(addr, dst, data)
        self._rearm(addr)

    def inject(self, src: Addr, dst: Addr, data: bytes, delay: float = 0.0) -> None:
        """Put a datagram on the wire as if `src` sent it (e.g. an attacker)."""
        self._push(self.now + delay, "deliver", (src, dst, data))

    def step(self) -> bool:
        """Run the next event. False when nothing is left."""
        if not self._heap:
            return False
        when, _seq, kind, payload = heapq.heappop(self._heap)
        self.now = max(self.now, when)
        if kind == "deliver":
            src, dst, data = payload
            node = self.nodes.get(dst)
            if node is None:
                self.dropped += 1
                return True
            self.delivered += 1
            self._digest.update(repr((round(self.now, 9), src, dst)).encode() + data)
            if self.on_deliver:
                self.on_deliver(src, dst, data)
            node.receive_datagram(data, src, self.now)
            self.flush(dst)
        elif kind == "timer":
            addr = payload
            if self._timers.get(addr) == when and addr in self.nodes:
                self._timers[addr] = None
                self.nodes[addr].handle_timer(self.now)
                self.flush(addr)
        return True

    def run_until(self, t: float, *, until: Callable[[], bool] | None = None) -> bool:
        """Run events up to virtual time `t` (or until `until()` is true). Returns until()'s last value."""
        while self._heap and self._heap[0][0] <= t:
            self.step()
            if until is not None and until():
                return True
        self.now = max(self.now, t)
        return until() if until is not None else False

    def run_for(self, seconds: float, *, until: Callable[[], bool] | None = None) -> bool:
        return self.run_until(self.now + seconds, until=until)

    def trace_digest(self) -> str:
        return self._digest.hexdigest()

    # -- internals --------------------------------------------------------
    def _push(self, when: float, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, payload))

    def _rearm(self, addr: Addr) -> None:
        node = self.nodes.get(addr)
        if node is None:
            return
        deadline = node.get_timer()
        if deadline is None or self._timers.get(addr) == deadline:
            return
        self._timers[addr] = deadline
        self._push(max(deadline, self.now), "timer", addr)

    def _transmit(self, src: Addr, dst: Addr, data: bytes) -> None:
        link, rng = self.link, self.rng
        if frozenset((src, dst)) in self._blocked or rng.random() < link.loss:
            self.dropped += 1
            return
        copies = 2 if rng.random() < link.duplicate else 1
        for _ in range(copies):
            delay = link.delay + rng.uniform(-link.jitter, link.jitter)
            if rng.random() < link.reorder:
                delay += rng.uniform(0, link.reorder_delay)
            self._push(self.now + max(0.0, delay), "deliver", (src, dst, data))
