"""NATs in the simulator: whole NodeCores behind modelled NAT boxes, on the hostile-network harness.

:class:`NatNetwork` is :class:`~weftnet.sim.harness.SimNetwork` with NAT
boxes between some nodes and the "Internet". A node behind a box has a
private address; what leaves the box is rewritten to the box's public
address and a mapped port; what arrives at the box's public address is let
in, or not, by the box's rules *at the time it arrives* (so a punch packet
that arrives before the other side's own packet left is dropped, as in a
real simultaneous open). The kinds, in RFC 4787's terms:

=================  ===========================  =============================
kind               mapping                      filtering
=================  ===========================  =============================
public             none                         none
full-cone          endpoint-independent         endpoint-independent
restricted         endpoint-independent         address-dependent
port-restricted    endpoint-independent         address-and-port-dependent
                   (keeps the port if free:     (Linux ``masquerade``)
                   Linux ``masquerade``)
symmetric          endpoint-dependent, random   address-and-port-dependent
                   port (``masquerade random``)
udp-blocked        no UDP leaves at all         TCP to a relay only
=================  ===========================  =============================

Mappings and the permissions they carry expire after ``timeout`` seconds idle
(refreshed by outbound packets, and by inbound ones let in). ``flush`` drops a
box's whole state, as ``conntrack -F`` does: the next packet out gets a new
mapping (a rebinding, for a symmetric box a new port).

TCP links to relays (for udp-blocked nodes) are :class:`StreamLink` pairs
made with :meth:`NatNetwork.open_stream`; a datagram sent to one end is
delivered at the other, whatever the boxes.

:func:`run_connectivity` is the experiment of issue 10: N nodes with a given
share behind each kind of box, relays among the public nodes, then pings
between random pairs — the share connected directly, through a relay, and
not at all, per pair of kinds. Everything runs the real code: NodeCore,
SecureTransport with its cryptography, the DHT, Reach.
"""

from __future__ import annotations

import heapq
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from weftnet.core.reach.paths import AltSource, StreamLink
from weftnet.sim.harness import LinkModel, SimNetwork

__all__ = ["NAT_KINDS", "NatBox", "NatNetwork", "NatMix", "run_connectivity"]

NAT_KINDS = ("public", "full-cone", "restricted", "port-restricted", "symmetric", "udp-blocked")

Addr = tuple[str, int]


class NatBox:
    """One NAT with one public IP address."""

    def __init__(self, kind: str, public_ip: str, rng: random.Random, timeout: float = 120.0):
        if kind not in NAT_KINDS or kind == "public":
            raise ValueError(f"not a NAT kind: {kind!r}")
        self.kind = kind
        self.ip = public_ip
        self.rng = rng
        self.timeout = timeout
        self._out: dict[Any, int] = {}  # mapping key -> public port
        self._in: dict[int, dict] = {}  # public port -> {"priv", "perms": {remote: last}, "last"}
        self.dropped_in = 0
        self.dropped_out = 0
        self._burned: set[int] = set()

    def flush(self, new_ports: bool = False) -> None:
        """Forget every mapping; ``new_ports``: never reuse the ports they had (a rebinding)."""
        if new_ports:
            self._burned.update(self._in)
        self._out.clear()
        self._in.clear()

    def _expired(self, port: int, now: float) -> bool:
        e = self._in.get(port)
        if e is None:
            return True
        if now - e["last"] > self.timeout:
            del self._in[port]
            self._out.pop(e["key"], None)
            return True
        return False

    def outbound(self, priv: Addr, dst: Addr, now: float) -> Addr | None:
        if self.kind == "udp-blocked":
            self.dropped_out += 1
            return None
        key = (priv, dst) if self.kind == "symmetric" else priv
        port = self._out.get(key)
        if port is None or self._expired(port, now):
            if self.kind == "symmetric":
                port = self.rng.randrange(1024, 65536)
                while port in self._in or port in self._burned:
                    port = self.rng.randrange(1024, 65536)
            else:
                port = priv[1]
                while port in self._burned or (port in self._in and not self._expired(port, now)):
                    port = self.rng.randrange(1024, 65536)
            self._out[key] = port
            self._in[port] = {"priv": priv, "key": key, "perms": {}, "last": now}
        e = self._in[port]
        e["last"] = now
        e["perms"][dst] = now
        return (self.ip, port)

    def inbound(self, src: Addr, port: int, now: float) -> Addr | None:
        if self._expired(port, now):
            self.dropped_in += 1
            return None
        e = self._in[port]
        perms = e["perms"]
        if self.kind == "full-cone":
            ok = True
        elif self.kind == "restricted":
            ok = any(r[0] == src[0] and now - t <= self.timeout for r, t in perms.items())
        else:
            t = perms.get(src)
            ok = t is not None and now - t <= self.timeout
        if not ok:
            self.dropped_in += 1
            return None
        e["last"] = now
        perms[src] = now
        return e["priv"]


class NatNetwork(SimNetwork):
    """A SimNetwork where some hosts sit behind NAT boxes (see the module docstring)."""

    def __init__(self, seed: int, link: LinkModel | None = None, start: float = 1_000_000.0,
                 underlay: Any = None):
        super().__init__(seed, link, start)
        #: With an Underlay (sim/underlay.py), delays come from its latency model between the
        #: hosts' node indices (``locate``); without, from ``link``.
        self.underlay = underlay
        self._where: dict[str, int] = {}
        self.boxes: dict[str, NatBox] = {}  # public IP -> box
        self.behind: dict[str, NatBox] = {}  # private host -> its box
        self._streams: dict[tuple[Addr, StreamLink], tuple[Addr, StreamLink]] = {}
        self._next_conn = 1
        self.udp_sent: dict[Addr, int] = defaultdict(int)

    def add_box(self, kind: str, public_ip: str, timeout: float = 120.0) -> NatBox:
        box = NatBox(kind, public_ip, self.rng, timeout)
        self.boxes[public_ip] = box
        return box

    def place(self, private_host: str, box: NatBox) -> None:
        self.behind[private_host] = box

    def locate(self, host: str, index: int) -> None:
        """``host`` (an address of a node, or of its NAT) sits at node ``index`` of the underlay."""
        self._where[host] = index

    def open_stream(self, client: Addr, server: Addr) -> tuple[StreamLink, StreamLink]:
        """A TCP connection from ``client`` to ``server``: (the client's link, the server's link)."""
        conn = self._next_conn
        self._next_conn += 1
        box = self.behind.get(client[0])
        seen = (box.ip, 30000 + conn) if box is not None else client
        c_link = StreamLink(server[0], server[1], conn)
        s_link = StreamLink(seen[0], seen[1], conn)
        self._streams[(client, c_link)] = (server, s_link)
        self._streams[(server, s_link)] = (client, c_link)
        return c_link, s_link

    def close_stream(self, client: Addr, c_link: StreamLink) -> StreamLink | None:
        other = self._streams.pop((client, c_link), None)
        if other is None:
            return None
        self._streams.pop(other, None)
        return other[1]

    def flush_nat(self, public_ip: str, new_ports: bool = False) -> None:
        """Forget every mapping of one box (``conntrack -F``); ``new_ports``: a rebinding to new ports."""
        self.boxes[public_ip].flush(new_ports)

    # -- the wire ------------------------------------------------------------
    def _transmit(self, src: Addr, dst: Any, data: bytes) -> None:
        if type(dst) is AltSource:  # from the node's second port
            src, dst = (src[0], src[1] + 1), (dst.host, dst.port)
        if type(dst) is StreamLink:
            peer = self._streams.get((src, dst))
            if peer is None:
                self.dropped += 1
                return
            self._push(self.now + self.link.delay, "deliver", (peer[1], peer[0], data))
            return
        box = self.behind.get(src[0])
        inside = self.behind.get(dst[0])
        if inside is not None:
            if inside is not box:  # a private address behind another NAT: not routed on the Internet
                self.dropped += 1
                return
            super()._transmit(src, dst, data)  # the same LAN
            return
        if box is not None:
            pub = box.outbound(src, dst, self.now)
            if pub is None:
                self.dropped += 1
                return
            src = pub
        self.udp_sent[src] += 1
        if self.underlay is not None:
            a, b = self._where.get(src[0]), self._where.get(dst[0])
            if a is not None and b is not None:
                if frozenset((src, dst)) in self._blocked:
                    self.dropped += 1
                    return
                delay = self.underlay.one_way(a, b)
                if delay is None:
                    self.dropped += 1
                    return
                self._push(self.now + delay, "deliver", (src, dst, data))
                return
        super()._transmit(src, dst, data)

    def step(self) -> bool:
        if not self._heap:
            return False
        when, seq, kind, payload = self._heap[0]
        if kind == "deliver":
            src, dst, data = payload
            if type(src) is not StreamLink:
                box = self.boxes.get(dst[0])
                if box is not None:
                    heapq.heappop(self._heap)
                    self.now = max(self.now, when)
                    priv = box.inbound(src, dst[1], self.now)
                    if priv is None:
                        self.dropped += 1
                        return True
                    self._push(self.now, "deliver", (src, priv, data))
                    return True
        return super().step()


# -- the connectivity experiment ---------------------------------------------------

@dataclass
class NatMix:
    """Shares of nodes behind each kind of NAT (normalised), and relays among the public nodes."""

    shares: dict = field(default_factory=lambda: {"public": 0.2, "full-cone": 0.05, "restricted": 0.1,
                                                  "port-restricted": 0.45, "symmetric": 0.15, "udp-blocked": 0.05})
    #: Public nodes that offer relaying, as a share of the public nodes (at least one).
    relay_share: float = 0.5
    #: Relays each node registers with when it needs them.
    relays_per_node: int = 2


def run_connectivity(nodes: int, pairs: int, seed: int, mix: NatMix | None = None, settle: float = 90.0,
                     underlay: Any = None, progress=None) -> dict[str, Any]:
    """Build ``nodes`` nodes behind ``mix``, join them, ping ``pairs`` random pairs; return the tables.

    Delays come from ``underlay`` (an UnderlayConfig; sim/underlay.py's latency model of the
    Internet), one node per point. For each pair the ping's outcome and, 5 s later, the path in use
    are recorded, with the time from the ping to its answer and to the first direct path where
    there is one.
    """
    from weftnet.core.identity import Identity
    from weftnet.core.node import NodeConfig, NodeCore
    from weftnet.core.reach.engine import ReachConfig
    from weftnet.core.reach.paths import path_kind
    from weftnet.core.reach.relay import RelayConfig
    from weftnet.sim.underlay import Underlay, UnderlayConfig

    mix = mix or NatMix()
    rng = random.Random(seed ^ 0x5EED)
    net = NatNetwork(seed, LinkModel(delay=0.02, jitter=0.005),
                     underlay=Underlay(underlay or UnderlayConfig(), random.Random(seed ^ 0xA11)))
    total = sum(mix.shares.values())
    kinds: list[str] = []
    for kind in NAT_KINDS:
        kinds += [kind] * round(nodes * mix.shares.get(kind, 0.0) / total)
    kinds = (kinds + ["public"] * nodes)[:nodes]
    rng.shuffle(kinds)
    if kinds[0] != "public":  # the first node is the bootstrap: public, and a relay
        i = kinds.index("public") if "public" in kinds else 0
        kinds[0], kinds[i] = "public", kinds[0]
    public = [i for i, k in enumerate(kinds) if k == "public"]
    n_relays = max(1, round(len(public) * mix.relay_share))
    relays = set(public[:n_relays])
    cores: list[Any] = []
    addrs: list[Addr] = []
    for i, kind in enumerate(kinds):
        where = net.underlay.add_node()
        # Every public address in a /24 of its own, as on the Internet (the DHT keeps at most
        # per_prefix contacts of one /24 in a bucket).
        if kind == "public":
            addr = (f"{11 + i // 65536}.{(i // 256) % 256}.{i % 256}.1", 4500)
        else:
            addr = (f"10.{(i // 256) % 256}.{i % 256}.2", 4500)
            box = net.add_box(kind, f"{51 + i // 65536}.{(i // 256) % 256}.{i % 256}.1")
            net.place(addr[0], box)
            net.locate(box.ip, where)
        net.locate(addr[0], where)
        cfg = NodeConfig(reach=ReachConfig(enabled=True, relays=mix.relays_per_node),
                         relay=RelayConfig(enabled=i in relays))
        ident = Identity.generate(random.Random(rng.getrandbits(64)))
        core = NodeCore(ident, random.Random(rng.getrandbits(64)), net.now, cfg, endpoint=addr)
        core.set_local_endpoints([addr], net.now)
        core.reach.alt_port = kind == "public"
        cores.append(core)
        addrs.append(addr)
    boot = addrs[0]
    relay_list = sorted(relays)
    for i, core in enumerate(cores):
        net.add(addrs[i], core)
        if i == 0:
            continue
        if kinds[i] == "udp-blocked":
            r = relay_list[i % len(relay_list)]
            c_link, _ = net.open_stream(addrs[i], addrs[r])
            core.connect(c_link, net.now)
        else:
            core.connect(boot, net.now)
        net.flush(addrs[i])
        net.run_for(0.2)
        _drain(cores)
        if progress:
            progress("join", i / nodes)
    for _ in range(int(settle)):
        net.run_for(1.0)
        _drain(cores)
    results = []
    for j in range(pairs):
        a, b = rng.sample(range(nodes), 2)
        ca, cb = cores[a], cores[b]
        t0 = net.now
        op = ca.ping(cb.node_id, net.now)
        net.flush(addrs[a])
        done: dict[str, Any] = {}

        def finished() -> bool:
            while (ev := ca.next_event()) is not None:
                if getattr(ev, "op_id", None) == op:
                    done["ev"] = ev
            return "ev" in done

        net.run_for(20.0, until=finished)
        ok = bool(done.get("ev") and done["ev"].ok)
        t_reply = net.now - t0 if ok else None
        t_direct = None
        end = net.now + 5.0
        while net.now < end:  # the punch schedule runs 3 s; give it 5
            if t_direct is None and ok and path_kind(ca.transport.current_path(cb.node_id)) == "direct" \
                    and ca.transport.has_session(cb.node_id):
                t_direct = net.now - t0
            net.run_for(0.05)
        _drain(cores)
        if not ok or not ca.transport.has_session(cb.node_id):
            path = "none"
        else:
            kind = path_kind(ca.transport.current_path(cb.node_id))
            path = "direct" if kind == "direct" else "relay"
        results.append((kinds[a], kinds[b], path, None if path != "direct" else t_direct, t_reply))
        if progress:
            progress("pairs", (j + 1) / pairs)
    classified: dict[str, dict[str, int]] = {}
    for kind, core in zip(kinds, cores):
        st = core.reach.nat.status(net.now)
        key = f"{st['nat']}, reachable={st['reachable']}"
        row = classified.setdefault(kind, {})
        row[key] = row.get(key, 0) + 1
    out = _tables(results, kinds, relays, nodes, pairs, seed, mix)
    out["classified"] = {k: dict(sorted(v.items())) for k, v in sorted(classified.items())}
    out["relay_forwarded"] = sum(cores[i].transport.stats["relay_forwarded"] for i in relays)
    out["virtual_seconds"] = round(net.now - 1_000_000.0, 1)
    return out


def _drain(cores) -> None:
    for core in cores:
        while core.next_event() is not None:
            pass


def _tables(results, kinds, relays, nodes, pairs, seed, mix) -> dict[str, Any]:
    def shares(rows) -> dict[str, Any]:
        n = len(rows) or 1
        out: dict[str, Any] = {k: round(sum(1 for r in rows if r[2] == k) / n, 4) for k in ("direct", "relay", "none")}
        times = sorted(r[3] for r in rows if r[3] is not None)
        if times:
            out["direct_p50_s"] = round(times[len(times) // 2], 3)
            out["direct_max_s"] = round(times[-1], 3)
        return out

    replies = sorted(r[4] for r in results if r[4] is not None)
    reply: dict[str, Any] = {}
    if replies:  # from the ping to its answer, whatever the path (a ping op resends its Ping: core/node.py)
        reply = {"p50_s": round(replies[len(replies) // 2], 3), "p90_s": round(replies[int(len(replies) * 0.9)], 3),
                 "max_s": round(replies[-1], 3), "over_1s": sum(1 for t in replies if t > 1.0),
                 "over_5s": sum(1 for t in replies if t > 5.0)}

    by_pair: dict[str, dict] = {}
    for i, a in enumerate(NAT_KINDS):
        for b in NAT_KINDS[i:]:
            rows = [r for r in results if sorted((r[0], r[1])) == sorted((a, b))]
            if rows:
                by_pair[f"{a} <-> {b}"] = {"pairs": len(rows), **shares(rows)}
    return {
        "nodes": nodes,
        "pairs": pairs,
        "seed": seed,
        "mix": {k: round(v, 4) for k, v in mix.shares.items()},
        "relays": len(relays),
        "kinds": {k: kinds.count(k) for k in NAT_KINDS},
        "overall": shares(results),
        "reply": reply,
        "by_pair": by_pair,
    }


# -- `weft sim` with a [nat] table ---------------------------------------------------

def run_nat_scenario(sc: Any, seed: int | None, nodes: int | None = None, progress=None) -> dict[str, Any]:
    """The connectivity experiment of a scenario with a ``[nat]`` table (see sim/scenario.py)."""
    from weftnet.sim.underlay import UnderlayConfig

    nat = sc.nat
    shares = {kind: float(nat.get(kind.replace("-", "_"), 0.0)) for kind in NAT_KINDS}
    mix = NatMix(shares, float(nat.get("relay_share", 0.3)), int(nat.get("relays_per_node", 2)))
    n = nodes or sc.sizes[0]
    seed = sc.seed if seed is None else seed
    return run_connectivity(n, int(nat.get("pairs", 300)), seed, mix, float(nat.get("settle", 90.0)),
                            UnderlayConfig(**sc.underlay), progress)


def nat_text(summary: dict[str, Any]) -> str:
    """The connectivity table as text (also bench/results/reach.md's)."""
    o = summary["overall"]
    lines = [f"{summary['nodes']} nodes ({', '.join(f'{k} {v}' for k, v in summary['kinds'].items() if v)}), "
             f"{summary['relays']} relays, {summary['pairs']} random pairs pinged",
             f"overall: direct {o['direct']:.1%}, through a relay {o['relay']:.1%}, not connected {o['none']:.1%}"
             + (f"; time to direct p50 {o['direct_p50_s']:.3f} s, max {o['direct_max_s']:.3f} s"
                if "direct_p50_s" in o else "")]
    r = summary.get("reply")
    if r:
        lines.append(f"ping to reply (any path): p50 {r['p50_s']:.3f} s, p90 {r['p90_s']:.3f} s, max {r['max_s']:.3f} s; "
                     f"{r['over_1s']} answered after more than 1 s, {r['over_5s']} after more than 5 s")
    lines += ["", "| NAT pair | pairs | direct | relay | none | to direct, p50 |", "|---|---|---|---|---|---|"]
    for pair, row in summary["by_pair"].items():
        p50 = f"{row['direct_p50_s']:.3f} s" if "direct_p50_s" in row else "-"
        lines.append(f"| {pair} | {row['pairs']} | {row['direct']:.0%} | {row['relay']:.0%} | {row['none']:.0%} | {p50} |")
    return "\n".join(lines)


def nat_plot(out: Any, summary: dict[str, Any]) -> Any:
    """connectivity.png: per NAT pair, the share direct / relayed / not connected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(summary["by_pair"])
    rows = [summary["by_pair"][p] for p in pairs]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(pairs) + 1.5))
    left = [0.0] * len(pairs)
    for key, colour in (("direct", "#2a9d8f"), ("relay", "#e9c46a"), ("none", "#e76f51")):
        vals = [r[key] for r in rows]
        ax.barh(pairs, vals, left=left, color=colour, label=key)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("share of pairs")
    ax.set_title(f"connectivity by NAT pair ({summary['nodes']} nodes, {summary['pairs']} pairs)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = out / "connectivity.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
