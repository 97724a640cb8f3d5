"""Paths in the simulator: nodes with several underlay links, path outages and degradation, RON's experiment.

:class:`MultiLinkNetwork` is :class:`~weftnet.sim.harness.SimNetwork` where a
node may own several sockets — its main socket and one per extra underlay
link (``[[link]]``) — and where the underlay between two sockets can be
impaired: cut, lossy, slower, for a while. A datagram the core sends to a
:class:`~weftnet.core.reach.paths.LinkAddr` leaves from that link's socket;
one that arrives on a link's socket reaches the core with a ``LinkAddr``
source, exactly as the runtime hands them over (runtime/underlay.py).

Impairments match a pair of sockets by a predicate, so one mechanism gives a
cut link between two sites, a region pair that cannot reach each other (an
Internet path failure, RON's subject), or a degraded pair of nodes.

:class:`PathLab` builds small labs of whole NodeCores (the real transport,
DHT, reach and paths engines) for tests; :func:`run_ron` is the experiment
of issue 11: nodes in regions, traffic between random pairs, outages per
region pair or node pair with durations from a log-normal distribution, once
with detours and once without, and the share of outages routed around, the
time to recover and the path stretch.
"""

from __future__ import annotations

import heapq
import math
import random
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

from weftnet.core.reach.paths import LinkAddr
from weftnet.sim.harness import LinkModel, SimNetwork

__all__ = ["Impairment", "MultiLinkNetwork", "PathLab", "OutageModel", "run_ron", "overlay_packet", "packet_seq"]

Addr = tuple[str, int]


@dataclass
class Impairment:
    """What happens to datagrams between sockets that ``match`` (either direction) from ``start`` to ``end``."""

    match: Callable[[Addr, Addr], bool]
    loss: float = 0.0  # 1.0: nothing passes (a cut)
    delay: float = 0.0  # extra one-way delay, seconds
    jitter: float = 0.0  # extra uniform 0..jitter on top
    start: float = 0.0
    end: float = math.inf
    label: str = ""


class MultiLinkNetwork(SimNetwork):
    """A SimNetwork of nodes with several sockets each, and impairments between sockets (module docstring)."""

    def __init__(self, seed: int, link: LinkModel | None = None, start: float = 1_000_000.0):
        super().__init__(seed, link, start)
        self.sockets: dict[Addr, tuple[Addr, str | None]] = {}  # socket -> (owner's main socket, link name)
        self.links: dict[Addr, dict[str, Addr]] = {}  # owner's main socket -> link name -> socket
        self.impairments: list[Impairment] = []
        #: Base one-way delay between two sockets (default: the LinkModel's delay).
        self.delay_fn: Callable[[Addr, Addr], float] | None = None
        #: Whether the underlay routes between two sockets at all (default: yes); e.g. only within one ISP.
        self.routable: Callable[[Addr, Addr], bool] | None = None
        self.sent_by_link: dict[tuple[Addr, str], int] = {}

    def add_node(self, main: Addr, node: Any, links: dict[str, Addr] | None = None, main_link: str | None = None):
        self.add(main, node)
        self.sockets[main] = (main, None)
        self.links[main] = {}
        if main_link:
            self.links[main][main_link] = main
        for name, sock in (links or {}).items():
            if sock == main:
                continue
            self.sockets[sock] = (main, name)
            self.links[main][name] = sock
        return node

    def impair(self, imp: Impairment) -> Impairment:
        self.impairments.append(imp)
        return imp

    def heal_all(self) -> None:
        self.impairments.clear()

    def cut(self, a: str, b: str, **kw) -> Impairment:
        """Impair everything between hosts ``a`` and ``b`` (default: cut it)."""
        kw.setdefault("loss", 1.0)
        pair = {a, b}
        return self.impair(Impairment(lambda s, d: {s[0], d[0]} == pair, **kw))

    def cut_host(self, host: str, **kw) -> Impairment:
        """Impair everything to and from one host (a link's interface going down)."""
        kw.setdefault("loss", 1.0)
        return self.impair(Impairment(lambda s, d: host in (s[0], d[0]), **kw))

    def _effects(self, src: Addr, dst: Addr) -> tuple[float, float]:
        loss, delay = 0.0, 0.0
        now = self.now
        for imp in self.impairments:
            if imp.start <= now < imp.end and imp.match(src, dst):
                loss = 1.0 - (1.0 - loss) * (1.0 - imp.loss)
                delay += imp.delay + (self.rng.uniform(0.0, imp.jitter) if imp.jitter else 0.0)
        return loss, delay

    def _transmit(self, src: Addr, dst: Any, data: bytes) -> None:
        if type(dst) is LinkAddr:
            sock = self.links.get(src, {}).get(dst.link)
            to = (dst.host, dst.port)
        elif type(dst) is tuple:
            sock, to = src, dst
        else:  # a TCP link or a second port: not modelled here
            sock = None
            to = None
        if sock is None:
            self.dropped += 1
            return
        owner = self.sockets.get(sock, (src, None))
        key = (src, owner[1] or "main")
        self.sent_by_link[key] = self.sent_by_link.get(key, 0) + 1
        if self.routable is not None and not self.routable(sock, to):
            self.dropped += 1
            return
        rng, link = self.rng, self.link
        loss, extra = self._effects(sock, to)
        if (link.loss and rng.random() < link.loss) or (loss and rng.random() < loss):
            self.dropped += 1
            return
        base = self.delay_fn(sock, to) if self.delay_fn is not None else link.delay
        delay = base + extra + rng.uniform(-link.jitter, link.jitter)
        self._push(self.now + max(0.0, delay), "deliver", (sock, to, data))

    def step(self) -> bool:
        if not self._heap:
            return False
        when, _seq, kind, payload = self._heap[0]
        if kind != "deliver":
            return super().step()
        heapq.heappop(self._heap)
        self.now = max(self.now, when)
        sock, to, data = payload
        entry = self.sockets.get(to)
        if entry is None or entry[0] not in self.nodes:
            self.dropped += 1
            return True
        owner, lname = entry
        src = sock if lname is None else LinkAddr(sock[0], sock[1], lname)
        self.delivered += 1
        if self.on_deliver:
            self.on_deliver(sock, to, data)
        self.nodes[owner].receive_datagram(data, src, self.now)
        self.flush(owner)
        return True


# -- data traffic that the receiver can count ---------------------------------------------

_IP6 = struct.Struct("!IHBB16s16sHHHHQd")


def overlay_packet(seq: int, sent: float, sport: int = 40000, dport: int = 5004, dscp: int = 0,
                   src: bytes = b"\xfd" + bytes(15), dst: bytes = b"\xfd" + bytes(14) + b"\x01", pad: int = 0) -> bytes:
    """An overlay-interface payload (type 0x58): an IPv6/UDP packet carrying ``seq`` and its send time."""
    body = 16 + pad
    head = (6 << 28) | ((dscp << 2) << 20)
    pkt = _IP6.pack(head, 8 + body, 17, 64, src, dst, sport, dport, 8 + body, 0, seq, sent) + bytes(pad)
    return b"\x01\x58" + pkt


def packet_seq(payload: bytes) -> tuple[int, float, int]:
    """(seq, send time, dport) of a payload made by :func:`overlay_packet`."""
    f = _IP6.unpack_from(payload, 2)
    return f[10], f[11], f[7]


# -- a small lab of whole nodes --------------------------------------------------------------

class PathLab:
    """Named NodeCores on a MultiLinkNetwork, with data streams whose arrivals are recorded."""

    def __init__(self, seed: int = 1, delay: float = 0.01, jitter: float = 0.0005):
        self.net = MultiLinkNetwork(seed, LinkModel(delay=delay, jitter=jitter))
        self.rng = random.Random(seed)
        self.cores: dict[str, Any] = {}
        self.addrs: dict[str, Addr] = {}
        self.events: dict[str, list] = {}
        #: Per receiver: (sender name, seq) -> (sent, arrived, dport) of each data packet.
        self.arrivals: dict[str, dict[tuple, tuple]] = {}
        self._names: dict[bytes, str] = {}

    def node(self, name: str, links: dict[str, str], main: str | None = None, *, paths: dict | None = None,
             classes: tuple = (), costs: dict | None = None, metered: tuple = (), transit: bool = False,
             reach: bool = False, port: int = 4500):
        """A node whose links are ``{name: host}``; ``main`` names the link of its main socket (default: first)."""
        from weftnet.core.identity import Identity
        from weftnet.core.node import NodeConfig, NodeCore
        from weftnet.core.paths.config import LinkSpec, PathsConfig
        from weftnet.core.reach.engine import ReachConfig

        main = main or next(iter(links))
        specs = tuple(LinkSpec(n, (costs or {}).get(n, 1), n in metered, (h, port), n == main)
                      for n, h in links.items())
        pc = PathsConfig(**{"links": specs, "classes": tuple(classes), "transit": transit, **(paths or {})})
        cfg = NodeConfig(paths=pc, reach=ReachConfig(enabled=reach))
        addr = (links[main], port)
        core = NodeCore(Identity.generate(random.Random(self.rng.random())), random.Random(self.rng.random()),
                        self.net.now, cfg, endpoint=addr)
        self.cores[name] = core
        self.addrs[name] = addr
        self.events[name] = []
        self.arrivals[name] = {}
        self._names[core.node_id.raw] = name
        rec = self.arrivals[name]
        names = self._names

        def sink(node_id, payload, now):
            seq, sent, dport = packet_seq(payload)
            key = (names.get(node_id.raw, "?"), seq, dport)
            if key not in rec:
                rec[key] = (sent, now)

        core._sinks[0x58] = sink
        self.net.add_node(addr, core, {n: (h, port) for n, h in links.items()}, main)
        return core

    # -- driving ------------------------------------------------------------------
    def connect(self, a: str, b: str) -> None:
        ca, cb = self.cores[a], self.cores[b]
        ca.transport.connect(self.addrs[b], self.net.now, cb.identity.public_key)
        self.net.flush(self.addrs[a])

    def mesh(self, settle: float = 3.0) -> None:
        names = list(self.cores)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                self.connect(a, b)
        self.run(settle)

    def drain(self) -> None:
        for name, core in self.cores.items():
            while (ev := core.next_event()) is not None:
                self.events[name].append((self.net.now, ev))

    def run(self, seconds: float) -> None:
        end = self.net.now + seconds
        while self.net.now < end:
            self.net.run_until(min(end, self.net.now + 0.25))
            self.drain()

    def stream(self, a: str, b: str, seconds: float, rate: float = 50.0, dport: int = 5004, dscp: int = 0,
               sport: int = 40000, start_seq: int = 0, pad: int = 0) -> int:
        """Send ``rate`` data packets a second from a to b for ``seconds``; returns how many were sent."""
        core, dst = self.cores[a], self.cores[b].node_id
        n = int(seconds * rate)
        for i in range(n):
            core.transport.send_to(dst, overlay_packet(start_seq + i, self.net.now, sport, dport, dscp, pad=pad),
                                   self.net.now)
            self.net.flush(self.addrs[a])
            self.net.run_for(1.0 / rate)
            if i % 25 == 0:
                self.drain()
        self.drain()
        return n

    def received(self, b: str, a: str, dport: int | None = None) -> list[tuple]:
        """(seq, sent, arrived) of packets b got from a, by seq."""
        return sorted((k[1], v[0], v[1]) for k, v in self.arrivals[b].items()
                      if k[0] == a and (dport is None or k[2] == dport))

    def path(self, a: str, b: str):
        return self.cores[a].transport.current_path(self.cores[b].node_id)

    def node_id(self, name: str):
        return self.cores[name].node_id


def largest_gap(arrivals: list[tuple], start: float, end: float) -> float:
    """The longest time without an arrival between ``start`` and ``end`` (arrival times, sorted or not)."""
    times = sorted(t for _, _, t in arrivals if start <= t <= end)
    edges = [start] + times + [end]
    return max(b - a for a, b in zip(edges, edges[1:]))


# -- the RON experiment -------------------------------------------------------------------------

@dataclass
class OutageModel:
    """Outages on the simulated underlay: arrivals, scope, kind and duration."""

    #: Outages starting per simulated minute (Poisson).
    per_minute: float = 1.0
    #: Share of outages that hit a whole region pair (the rest hit one node pair).
    region_share: float = 0.5
    #: Share of outages that cut the path completely (the rest degrade it: loss and added delay).
    cut_share: float = 0.7
    degraded_loss: tuple = (0.2, 0.5)
    degraded_delay: tuple = (0.05, 0.3)
    #: Durations: log-normal with this median (seconds) and sigma, clipped.
    median: float = 30.0
    sigma: float = 1.0
    min_duration: float = 5.0
    max_duration: float = 300.0


@dataclass
class RonResult:
    detour: bool
    outages: list = field(default_factory=list)
    affected: list = field(default_factory=list)


def run_ron(nodes: int = 16, regions: int = 6, pairs: int = 30, duration: float = 900.0, seed: int = 1,
            rate: float = 10.0, model: OutageModel | None = None, detour: bool = True, progress=None) -> dict:
    """Run the experiment once (with or without detours); returns per-outage, per-pair results."""
    from weftnet.sim.underlay import Underlay, UnderlayConfig

    model = model or OutageModel()
    rng = random.Random(seed)
    under = Underlay(UnderlayConfig(regions=regions, jitter=0.05), random.Random(seed ^ 0xA5))
    idx = [under.add_node() for _ in range(nodes)]
    lab = PathLab(seed, delay=0.0, jitter=0.0)
    hosts = {}
    for i in idx:
        host = f"10.{i // 200}.{i % 200}.1"
        hosts[host] = i
        lab.node(f"n{i}", {"isp": host}, transit=True,
                 paths={"detour": detour, "active_for": 5.0, "track_for": 60.0})
    lab.net.delay_fn = lambda s, d: under.base_rtt(hosts[s[0]], hosts[d[0]]) / 2.0 * (1.0 + 0.05 * lab.net.rng.random())
    names = list(lab.cores)
    lab.mesh(settle=5.0)
    all_pairs = [(a, b) for a in names for b in names if a != b]
    chosen = rng.sample(all_pairs, min(pairs, len(all_pairs)))
    # The outage schedule, fixed by the seed (the same for the run with and without detours).
    t0 = lab.net.now + 20.0
    outages = []
    t = t0
    while True:
        t += rng.expovariate(model.per_minute / 60.0)
        if t >= t0 + duration - 30.0:
            break
        dur = min(model.max_duration, max(model.min_duration, rng.lognormvariate(math.log(model.median), model.sigma)))
        dur = min(dur, t0 + duration - 10.0 - t)
        cut = rng.random() < model.cut_share
        loss = 1.0 if cut else rng.uniform(*model.degraded_loss)
        delay = 0.0 if cut else rng.uniform(*model.degraded_delay)
        if rng.random() < model.region_share and regions > 1:
            ra, rb = rng.sample(range(regions), 2)
            scope = ("region", ra, rb)

            def match(s, d, ra=ra, rb=rb):
                return {under.region[hosts[s[0]]], under.region[hosts[d[0]]]} == {ra, rb}
        else:
            a, b = rng.choice(chosen)
            ha, hb = lab.addrs[a][0], lab.addrs[b][0]
            scope = ("pair", a, b)

            def match(s, d, ha=ha, hb=hb):
                return {s[0], d[0]} == {ha, hb}
        outages.append({"start": t, "end": t + dur, "cut": cut, "loss": loss, "delay": delay, "scope": scope,
                        "match": match})
    for o in outages:
        lab.net.impair(Impairment(o["match"], o["loss"], o["delay"], 0.0, o["start"], o["end"]))
    # Traffic: each chosen pair sends ``rate`` packets a second, all at once per tick.
    lab.run(t0 - lab.net.now)
    step = 1.0 / rate
    end = t0 + duration
    seq = 0
    sent_at: dict[tuple, list] = {p: [] for p in chosen}
    next_report = t0
    while lab.net.now < end:
        now = lab.net.now
        for a, b in chosen:
            lab.cores[a].transport.send_to(lab.cores[b].node_id, overlay_packet(seq, now), now)
            sent_at[(a, b)].append((seq, now))
            lab.net.flush(lab.addrs[a])
        seq += 1
        lab.net.run_for(step)
        if lab.net.now >= next_report:
            lab.drain()
            next_report = lab.net.now + 5.0
            if progress:
                progress((lab.net.now - t0) / duration)
    lab.run(3.0)
    return _ron_results(lab, under, hosts, chosen, outages, t0, end, detour, rate)


def _ron_results(lab: PathLab, under, hosts, chosen, outages, t0, end, detour, rate) -> dict:
    region = {name: under.region[hosts[lab.addrs[name][0]]] for name in lab.cores}
    rows = []
    for o in outages:
        for a, b in chosen:
            ha, hb = lab.addrs[a][0], lab.addrs[b][0]
            if not o["match"]((ha, 4500), (hb, 4500)):
                continue
            got = lab.received(b, a)
            start, stop = o["start"], o["end"]
            during = [(s, sent, arr) for s, sent, arr in got if start <= sent < stop]
            expected = max(1, int((stop - start) * rate))
            before = [arr for s, sent, arr in got if sent < start]
            last_before = max([x for x in before if x <= start] or [start])
            # Recovery: the first packet sent after the outage began that arrived, and when.
            first = min((arr for s, sent, arr in during), default=None)
            # A cut is routed around when packets sent during it arrive before it ends (a second's
            # margin: a packet sent just before the end may arrive after it by the direct path).
            routed = o["cut"] and first is not None and first < stop - 1.0
            base = under.base_rtt(hosts[ha], hosts[hb]) / 2.0
            lat = [arr - sent for s, sent, arr in during if arr - sent > 0]
            late = sorted(lat)[len(lat) // 2] if lat else None
            rows.append({
                "scope": o["scope"][0], "cut": o["cut"], "duration": round(stop - start, 3),
                "pair": [a, b], "regions": [region[a], region[b]],
                "delivered": round(len(during) / expected, 4),
                "recovery": None if first is None or not o["cut"] else round(first - max(start, last_before), 3),
                "routed_around": bool(routed),
                "stretch": None if late is None or base <= 0 else round(late / base, 3),
            })
    det = sum(c.paths.stats["detours_taken"] for c in lab.cores.values())
    probes = sum(c.paths.stats["probes_sent"] for c in lab.cores.values())
    return {
        "detour": detour,
        "nodes": len(lab.cores),
        "pairs": len(chosen),
        "duration": end - t0,
        "outages": [{k: v for k, v in o.items() if k != "match"} for o in outages],
        "affected": rows,
        "detours_taken": det,
        "probes_per_node_per_second": round(probes / len(lab.cores) / (end - t0 + 30.0), 2),
    }
