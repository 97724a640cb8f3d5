"""A NAT lab in the simulator: whole NodeCores behind modelled NATs (weftnet.sim.nat), for tests and benches.

    lab = SimLab(seed=1)
    lab.public("P", relay=True)
    lab.behind("A", "port-restricted")
    lab.behind("B", "symmetric")
    lab.join_all()                 # everyone joins through the first public node, then settles
    assert lab.ping("A", "B").ok
    assert lab.path("A", "B") == "direct"
"""

from __future__ import annotations

import random
from typing import Any

from weftnet.core.identity import Identity
from weftnet.core.node import NodeConfig, NodeCore
from weftnet.core.reach.engine import ReachConfig
from weftnet.core.reach.paths import path_kind
from weftnet.core.reach.relay import RelayConfig
from weftnet.sim.harness import LinkModel
from weftnet.sim.nat import NatNetwork


class SimLab:
    def __init__(self, seed: int = 1, delay: float = 0.01, nat_timeout: float = 120.0, reach: dict | None = None):
        self.net = NatNetwork(seed, LinkModel(delay=delay, jitter=delay / 10))
        self.rng = random.Random(seed)
        self.nat_timeout = nat_timeout
        self.reach_overrides = reach or {}
        self.cores: dict[str, NodeCore] = {}
        self.addrs: dict[str, tuple[str, int]] = {}
        self.kinds: dict[str, str] = {}
        self.boxes: dict[str, Any] = {}
        self.events: dict[str, list] = {}
        self.links: dict[str, Any] = {}
        self._n = 0

    # -- building -------------------------------------------------------------
    def _core(self, name: str, addr, relay: bool, alt: bool, reach: dict | None = None) -> NodeCore:
        rc = ReachConfig(**{"enabled": True, **self.reach_overrides, **(reach or {})})
        cfg = NodeConfig(reach=rc, relay=RelayConfig(enabled=relay))
        core = NodeCore(Identity.generate(random.Random(self.rng.random())), random.Random(self.rng.random()),
                        self.net.now, cfg, endpoint=addr)
        core.set_local_endpoints([addr], self.net.now)
        core.reach.alt_port = alt
        self.cores[name] = core
        self.addrs[name] = addr
        self.events[name] = []
        self.net.add(addr, core)
        return core

    def public(self, name: str, relay: bool = False, alt: bool = True, reach: dict | None = None) -> NodeCore:
        self._n += 1
        self.kinds[name] = "public"
        return self._core(name, (f"203.0.113.{self._n}", 4500), relay, alt, reach)

    def behind(self, name: str, kind: str, reach: dict | None = None) -> NodeCore:
        self._n += 1
        addr = (f"10.0.{self._n}.2", 4500)
        box = self.net.add_box(kind, f"198.51.100.{self._n}", self.nat_timeout)
        self.net.place(addr[0], box)
        self.boxes[name] = box
        self.kinds[name] = kind
        return self._core(name, addr, False, False, reach)

    def join(self, name: str, via: str | None = None) -> None:
        via = via or next(n for n, k in self.kinds.items() if k == "public")
        core = self.cores[name]
        if self.kinds[name] == "udp-blocked":
            link, _ = self.net.open_stream(self.addrs[name], self.addrs[via])
            self.links[name] = link
            core.connect(link, self.net.now)
        else:
            core.connect(self.addrs[via], self.net.now)
        self.net.flush(self.addrs[name])

    def join_all(self, settle: float = 30.0, gap: float = 1.0) -> None:
        first = next(n for n, k in self.kinds.items() if k == "public")
        for name in self.cores:
            if name != first:
                self.join(name, first if self.kinds[name] != "udp-blocked" else self.relay_name())
                self.run(gap)
        self.run(settle)

    def relay_name(self) -> str:
        return next(n for n, c in self.cores.items() if c.reach.relay is not None)

    # -- driving --------------------------------------------------------------
    def drain(self) -> None:
        for name, core in self.cores.items():
            while (ev := core.next_event()) is not None:
                self.events[name].append((self.net.now, ev))

    def run(self, seconds: float) -> None:
        end = self.net.now + seconds
        while self.net.now < end:
            self.net.run_until(min(end, self.net.now + 0.5))
            self.drain()

    def request(self, name: str, op_id: int, timeout: float = 30.0):
        core = self.cores[name]
        self.net.flush(self.addrs[name])
        found: dict = {}

        def done() -> bool:
            while (ev := core.next_event()) is not None:
                self.events[name].append((self.net.now, ev))
                if getattr(ev, "op_id", None) == op_id:
                    found["ev"] = ev
            return "ev" in found

        self.net.run_for(timeout, until=done)
        self.drain()
        return found.get("ev")

    def ping(self, a: str, b: str, timeout: float = 30.0):
        return self.request(a, self.cores[a].ping(self.cores[b].node_id, self.net.now), timeout)

    def send(self, a: str, b: str, text: str, timeout: float = 30.0):
        return self.request(a, self.cores[a].send_text(self.cores[b].node_id, text, self.net.now), timeout)

    # -- looking --------------------------------------------------------------
    def path(self, a: str, b: str) -> str:
        t = self.cores[a].transport.current_path(self.cores[b].node_id)
        return "none" if t is None else path_kind(t)

    def forwarded(self) -> int:
        """Packets every relay in the lab has passed on so far."""
        return sum(c.transport.stats["relay_forwarded"] for c in self.cores.values())

    def nat(self, name: str) -> dict:
        return self.cores[name].reach.nat.status(self.net.now)
