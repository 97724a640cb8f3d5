"""Paths: the overlay chooses the path — measured paths, explicit routes, detours, SD-WAN steering. Sans-IO.

Theory of operation (docs/paths.md)
-----------------------------------
A peer is reached over *paths* (core/reach/paths.py): a UDP endpoint from the
main socket, a :class:`LinkAddr` from one of the node's extra underlay links,
a TCP link, or a :class:`Via` through overlay nodes. This engine decides
which of them are measured and which carry traffic; the transport does the
sending and the forwarding (one ``Forward`` header for relays, detours and
explicit routes alike).

* **Tracking.** A peer becomes *active* when data-plane traffic (a private
  network's or the overlay interface's packets, or a ping) goes to it; it stays
  active for ``active_for`` seconds after the last packet and *tracked* for
  ``track_for``. At most ``max_tracked`` peers are tracked; peers with an
  explicit route always are. Untracked peers (the many quiet DHT contacts)
  cost nothing: the reachability policy of core/reach chooses their path.
* **Measurement.** Every path of a tracked peer is probed (``PathProbe``, answered
  on the path it came on): every ``interval`` while the peer is active, every
  ``idle_interval`` while it is idle. Each path keeps a :class:`PathMeter`: RTT,
  jitter, loss and BFD-like liveness (down after ``detect`` seconds without an
  answer). Probes in all are capped at ``max_probe_rate`` a second, replies to one
  peer at ``max_reply_rate``.
* **Paths measured.** The path in use; one per usable pair of our links and the
  peer's (from its ``PathAdvert``); other paths the transport knows that answered
  recently (a punched path, a relay); the explicit route, if any; and, for an
  active peer, up to ``detour_candidates`` one-hop detours ``Via((C,), peer)``
  through peers C that offer transit and that we reach directly — RON's rule:
  candidates come from peers already measured, one intermediate is enough.
  Detours are probed every ``detour_interval``, and every ``interval`` once the
  direct path is down or degraded; the worst candidate is replaced now and then.
* **Choice** (:meth:`choose`, called by the transport through
  :class:`MeasuringPolicy`). An explicit route wins. Otherwise the best direct
  path that is up (unmetered links first; the lowest RTT + 2 jitter + loss
  score; the path in use is kept unless another is better by
  ``switch_margin``), unless the best detour beats it by
  ``detour_latency_margin`` of RTT or ``detour_loss_margin`` of loss, or no
  direct path is up. Back from a detour only once a direct path has been up for
  ``hold`` seconds and the detour no longer beats it by half the margins
  (hysteresis). With no measurement yet, the reachability policy decides.
* **Classes** (:meth:`steer`, called by the transport per data-plane payload when
  classes are configured): the payload's class (core/paths/classes.py) picks
  among the paths that are up and meet the class's SLA: ``best`` (lowest
  score), ``cheapest`` (lowest link cost), ``balance`` (flows hashed over them),
  ``duplicate`` (the two best on different links; the receiver's replay window
  drops the second copy, before any decryption).

Inputs: transport events and path payloads (via NodeCore), DHT completions,
data-plane payloads (steer), ``now``. Outputs go through the transport and the
DHT; ``status()`` reports every path, link, class and route.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from weftnet.core.counters import Counters
from weftnet.core.dht import events as dht_events
from weftnet.core.identity import Identity, NodeId, RandomSource
from weftnet.core.paths.classes import DATA_TYPES, Classifier
from weftnet.core.paths.config import ClassSpec, LinkSpec, PathsConfig, RouteSpec, check_route
from weftnet.core.paths.messages import (
    FLAG_TRANSIT,
    MAX_LINKS,
    LinkInfo,
    PathAdvert,
    PathProbe,
    PathProbeReply,
)
from weftnet.core.paths.meter import DOWN, UP, PathMeter
from weftnet.core.paths.transit import Transit
from weftnet.core.reach.paths import RELAY, LinkAddr, PathPolicy, StreamLink, Via, path_kind
from weftnet.core.wire import decode, encode
from weftnet.errors import ConfigError, DecodeError

__all__ = ["Paths", "PathsEvent", "MeasuringPolicy", "describe_target", "MAIN_LINK"]

#: The name of the main socket's link when no [[link]] names it.
MAIN_LINK = "main"
_PING = 0x10
_ACTIVE_TYPES = DATA_TYPES | {_PING}
_DEFER: Any = object()
#: A path in use is kept unless another scores better by this much (seconds) and 10%.
_SWITCH_MARGIN = 0.005
#: Replace the worst detour candidate this often (seconds), to find better intermediates.
_ROTATE = 30.0
#: A payload's data header and AEAD tag (core/session/transport.py), and a PathProbe's datagram.
_SEALED = 30
_PROBE_SIZE = 14 + _SEALED
_LOOKUP_AGAIN = 10.0


@dataclass(frozen=True)
class PathsEvent:
    """Something an operator wants in the log: a path down or up, a detour taken or left."""

    kind: ClassVar[str] = "paths"
    what: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "what": self.what, "detail": self.detail}


def describe_target(target) -> str:
    """A path as text: ``10.1.0.2:4500``, ``10.2.0.2:4500 on lte``, ``tcp 198.51.100.7:443``, ``via wn1…``."""
    if target is None:
        return "-"
    t = type(target)
    if t is Via:
        return "via " + ",".join(NodeId(h).text() for h in target.hops)
    host, port = target[0], target[1]
    ep = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if t is StreamLink:
        return f"tcp {ep}"
    if t is LinkAddr:
        return f"{ep} on {target.link}"
    return ep


class _Bucket:
    __slots__ = ("rate", "tokens", "at")

    def __init__(self, rate: float, now: float):
        self.rate = self.tokens = float(rate)
        self.at = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class _Peer:
    __slots__ = ("node_id", "meters", "last_data", "active", "detours", "rotate_at", "choice", "on_detour",
                 "advert_sent", "best_direct", "tried")

    def __init__(self, node_id: NodeId, now: float):
        self.node_id = node_id
        self.meters: dict[Any, PathMeter] = {}
        self.last_data = now
        self.active = False
        self.detours: list[Via] = []
        self.rotate_at = now + _ROTATE
        self.choice: dict[int, tuple] = {}  # class index -> (policy, targets, links, SLA met), cleared on any change
        self.on_detour = False
        self.advert_sent = False
        self.best_direct = None
        self.tried: dict[bytes, float] = {}  # intermediates whose detour was down -> not before


class _View:
    """One path as the choice sees it."""

    __slots__ = ("target", "meter", "direct", "link", "cost", "metered", "score")

    def __init__(self, target, meter: PathMeter, direct: bool, link: str, cost: int, metered: bool):
        self.target, self.meter, self.direct = target, meter, direct
        self.link, self.cost, self.metered = link, cost, metered
        self.score = meter.score()


class MeasuringPolicy(PathPolicy):
    """The transport's path policy: measurements for tracked peers, reachability rules for the rest."""

    def __init__(self, engine: "Paths", trust: float = 2.0):
        super().__init__(trust)
        self.engine = engine

    def on_rx(self, paths, current, target, now: float) -> bool:
        d = self.engine.on_rx(paths.node_id, current, target, now, paths)
        return super().on_rx(paths, current, target, now) if d is _DEFER else d

    def choose(self, paths, current, now: float):
        d = self.engine.choose(paths.node_id, paths, current, now)
        return super().choose(paths, current, now) if d is _DEFER else d

    def handshake_targets(self, paths, current) -> list:
        route = self.engine.route_target(getattr(paths, "node_id", None))
        if route is not None:
            return [route]
        return super().handshake_targets(paths, current)


class Paths:
    """Measured paths, explicit routes, detours and traffic classes for one node (module docstring)."""

    MAX_ADVERTS = 4096
    MAX_PROBES = 8192
    #: Paths that answered a probe of ours are remembered this long (at most MAX_PROVEN of them): a
    #: peer tracked again (its session restarted, it was idle) has them probed as proven paths, not
    #: paid for from reach's ledger again as if it had only named them.
    MAX_PROVEN = 4096
    PROVEN_FOR = 600.0
    MAX_CANDIDATES = 1024
    #: A reply this long after its probe timed out still counts for liveness and RTT (meter.py),
    #: not as an answer for loss: a path whose round trips spike past the timeout is slow, not dead.
    LATE_FOR = 5.0

    def __init__(self, identity: Identity, transport: Any, dht: Any, rng: RandomSource, now: float,
                 config: PathsConfig | None = None, emit: Callable[[Any], None] | None = None,
                 network_name: Callable[[bytes], str | None] | None = None):
        self.identity = identity
        self.node_id = identity.node_id
        self.transport = transport
        self.dht = dht
        self.cfg = cfg = config or PathsConfig()
        self._rng = rng
        self._emit = emit or (lambda ev: None)
        self.transit = Transit(transport.relay, cfg.transit, cfg.transit_peer_rate, cfg.transit_total_rate, now)
        transport.relay = self.transit
        self.policy = MeasuringPolicy(self, getattr(transport.policy, "trust", 2.0))
        self.policy.heard = getattr(transport.policy, "heard", None)  # reach's path validation
        self.policy.pay = getattr(transport.policy, "pay", None)  # reach's ledger of unproven sends
        transport.policy = self.policy
        transport.steer = self.steer if cfg.enabled else None
        self.links: tuple[LinkSpec, ...] = ()
        self._by_link: dict[str, LinkSpec] = {}
        self._peers: dict[NodeId, _Peer] = {}
        #: The same peers keyed by the ID's bytes, for steer (once per payload sent): a bytes key
        #: hashes in C from its cached hash, a NodeId key calls NodeId.__hash__ (Python) per look-up.
        #: Changed only with _peers, by _track and _untrack.
        self._by_raw: dict[bytes, _Peer] = {}
        self.set_links(cfg.links, now)
        self.classes: tuple[ClassSpec, ...] = cfg.classes
        self._network_name = network_name
        self.classifier = Classifier(cfg.classes, network_name) if cfg.classes else None
        self._class_stats = [dict(packets=0, bytes=0, duplicated=0, sla_unmet=0, default=0, links={})
                             for _ in cfg.classes]
        self._routes: dict[NodeId, RouteSpec] = {}
        for r in cfg.routes:
            self._routes[r.node] = r
        self._candidates: dict[NodeId, float] = {}  # active but not yet tracked -> last data
        self._adverts: dict[NodeId, PathAdvert] = {}
        self._probes: dict[int, tuple] = {}  # txid -> (node, target, sent)
        #: Probes past their timeout, counted lost, whose reply may still come (LATE_FOR): txid ->
        #: (node, target, sent, timed out at), in the order they timed out (MAX_PROBES at most).
        self._late: dict[int, tuple] = {}
        self._proven: dict[tuple, float] = {}  # (node ID bytes, target) -> when it last answered a probe
        self._probe_order: deque | tuple = ()  # (deadline, txid); a deque from the first probe (624 bytes)
        self._budget = _Bucket(cfg.max_probe_rate, now)
        self._reply_buckets: dict[NodeId, _Bucket] = {}
        self._lookups: dict[int, NodeId] = {}
        self._looked_up: dict[NodeId, float] = {}
        self._wake: float | None = now if self._routes else None
        self.stats = Counters(
            ("probes_sent", "probe_replies", "probe_replies_late", "probes_lost", "probes_deferred", "probes_unpaid", "replies_unpaid",
             "replies_limited", "adverts_sent", "adverts_received", "paths_down", "paths_up", "switches",
             "detours_taken", "detours_left", "steered", "duplicated", "malformed"))

    # -- configuration ------------------------------------------------------------
    def set_links(self, links, now: float) -> None:
        """This node's underlay links, with the endpoints their sockets are bound to (the runtime knows)."""
        links = tuple(links)[:MAX_LINKS]
        if links == self.links:
            return
        self.links = links
        self._by_link = {s.name: s for s in links}
        for p in self._peers.values():
            p.advert_sent = False
            p.choice.clear()
        self._wake = now

    def reconfigure(self, cfg: PathsConfig, now: float) -> list[str]:
        """A reloaded [paths]/[[class]]/[[route]] config, in force at once; links keep their sockets
        (a [[link]] change is the runtime's: runtime/pathsctl.relink re-opens the sockets and calls
        set_links). Routes the config no longer has go; API routes stay."""
        old = self.cfg
        from dataclasses import replace

        self.cfg = replace(cfg, links=old.links)
        self.transport.steer = self.steer if cfg.enabled else None
        t = self.transit
        t.enabled, t.peer_rate = cfg.transit, cfg.transit_peer_rate
        t._total.rate = float(cfg.transit_total_rate)
        for b in t._buckets.values():
            b.rate = float(cfg.transit_peer_rate)
        out = [f"paths: probe every {cfg.interval:g} s (idle {cfg.idle_interval:g} s), down after {cfg.detect:g} s, "
               f"detours {'on' if cfg.detour else 'off'}, transit {'on' if cfg.transit else 'off'}"]
        if cfg.classes != self.classes:
            self.classes = cfg.classes
            self.classifier = Classifier(cfg.classes, self._network_name) if cfg.classes else None
            self._class_stats = [dict(packets=0, bytes=0, duplicated=0, sla_unmet=0, default=0, links={})
                                 for _ in cfg.classes]
            out.append(f"paths: {len(cfg.classes)} traffic classes (their counters start again)")
        for p in self._peers.values():
            p.choice.clear()
        old_routes = {r.node: r for r in old.routes}
        new_routes = {r.node: r for r in cfg.routes}
        for node, r in old_routes.items():
            if node not in new_routes and self._routes.get(node) == r:
                self.clear_route(node, now)
                out.append(f"paths: route to {node.text()} removed")
        for node, r in new_routes.items():
            if self._routes.get(node) != r:
                self.set_route(node, r.via, now)
                out.append(f"paths: route to {node.text()} via {', '.join(h.text() for h in r.via)}")
        self._wake = now
        return out

    def main_link(self) -> LinkSpec:
        for s in self.links:
            if s.main:
                return s
        return LinkSpec(MAIN_LINK, 1, False, None, True)

    def set_route(self, node: NodeId, via, now: float) -> RouteSpec:
        """Pin the path to ``node`` through ``via`` (nearest first); raises ConfigError if it cannot be."""
        hops = check_route(node, list(via), self.node_id)
        if node == self.node_id:
            raise ConfigError("a route to this node itself makes no sense")
        if node not in self._routes and len(self._routes) >= 256:
            raise ConfigError("too many explicit routes (at most 256)")
        spec = self._routes[node] = RouteSpec(node, hops)
        p = self._track(node, now)
        if p is not None:
            p.choice.clear()
            for target in [t for t in p.meters if type(t) is Via and t not in p.detours]:
                if target != self.route_target(node):
                    del p.meters[target]
        self._wake = now
        self.transport.rechoose(node, now)
        return spec

    def clear_route(self, node: NodeId | None, now: float) -> int:
        """Remove one explicit route (or all with None); returns how many went."""
        nodes = list(self._routes) if node is None else ([node] if node in self._routes else [])
        for n in nodes:
            route = self.route_target(n)
            del self._routes[n]
            p = self._peers.get(n)
            if p is not None:
                p.meters.pop(route, None)
                p.choice.clear()
                self.transport.rechoose(n, now)
        return len(nodes)

    def routes(self, now: float) -> list[dict]:
        out = []
        for node, spec in sorted(self._routes.items(), key=lambda kv: kv[0].raw):
            target = self.route_target(node)
            p = self._peers.get(node)
            m = p.meters.get(target) if p is not None else None
            row = {"node_id": node.text(), "via": [h.text() for h in spec.via],
                   "in_use": self.transport.current_path(node) == target}
            row.update(m.info(now) if m is not None else {"state": "unknown"})
            out.append(row)
        return out

    def route_target(self, node: NodeId | None) -> Via | None:
        spec = self._routes.get(node) if node is not None else None
        if spec is None:
            return None
        return Via(tuple(h.raw for h in spec.via), node.raw)

    def track(self, node_id: NodeId, now: float) -> None:
        """Treat ``node_id`` as active (traffic flows to it): measure its paths from now on."""
        if node_id == self.node_id:
            return
        p = self._peers.get(node_id)
        if p is None:
            self._candidate(node_id, now)
            self._wake = now
        else:
            if not p.active:
                self._wake = now
            p.last_data = now

    # -- transport and node hooks ----------------------------------------------------
    def steer(self, node_id: NodeId, payload: bytes, now: float):
        """Per payload sent to a peer: note data traffic; for a classified payload, the path(s) to use."""
        if len(payload) < 2 or payload[1] not in _ACTIVE_TYPES:
            return None
        p = self._by_raw.get(node_id.raw)
        if p is None:
            if node_id not in self._candidates:
                self._wake = now
            self._candidate(node_id, now)
            return None
        if now - p.last_data >= self.cfg.active_for:
            self._wake = now  # it was idle: probe fast from now
        p.last_data = now
        classifier = self.classifier
        if classifier is None:
            return None
        c = classifier.classify(payload)
        if c is None:
            return None
        idx, flow = c
        entry = p.choice.get(idx)
        if entry is None:
            entry = p.choice[idx] = self._class_choice(p, self.classes[idx], idx, now)
        st = self._class_stats[idx]
        st["packets"] += 1
        st["bytes"] += len(payload)
        policy, targets, links, met = entry
        if not met:
            st["sla_unmet"] += 1
        if not targets:
            st["default"] += 1
            return None
        self.stats["steered"] += 1
        if policy == "balance":
            i = flow % len(targets)
            by = st["links"]
            by[links[i]] = by.get(links[i], 0) + 1
            return (targets[i],)
        by = st["links"]
        for name in links:
            by[name] = by.get(name, 0) + 1
        if len(targets) == 2:
            st["duplicated"] += 1
            self.stats["duplicated"] += 1
        return targets

    def on_rx(self, node_id: NodeId | None, current, target, now: float, paths=None):
        """An authenticated packet came on ``target``, not the path in use: follow it? (_DEFER: reach decides)."""
        p = self._peers.get(node_id) if node_id is not None else None
        if node_id in self._routes:
            return False  # pinned
        if p is None:
            if type(target) is not Via and type(current) is not Via and current is not None and \
                    self._local_link(target) != self._local_link(current):
                return False  # the peer probing our other links: not a move (roaming is within one link)
            if type(current) is Via and type(target) is Via and paths is not None:
                # The peer measures detours through several intermediates: its probes come through
                # each. Stay on ours while it is heard from.
                cp = paths.get(current)
                heard = None if cp is None else max(cp.last_rx or 0.0, cp.confirmed or 0.0)
                if heard and now - heard < self.policy.trust:
                    return False
            return _DEFER
        if target in p.meters:
            return False  # measured: the choice follows measurements, not the peer's own choice of path
        m = p.meters.get(current)
        if type(target) is not Via and type(current) is not Via and current is not None and \
                self._local_link(target) != self._local_link(current) and (m is None or m.state != DOWN):
            return False  # another of our links: the measurements will tell whether it is better
        if m is not None and m.state == UP and m.last_answer is not None and now - m.last_answer < self.policy.trust:
            return False  # the path in use answers: a new source is the peer's business
        # Up by a meter that has not heard an answer lately (an idle peer is probed every 5 s and
        # found down after 15): reach's rule decides, as for an untracked peer (PathPolicy.on_rx:
        # a direct path in use that the peer has not been heard on for ``trust`` is left for the
        # relay or detour its packets now come through), so our answers follow them at once.
        return _DEFER  # roaming: follow the peer at once (WireGuard), then measure it

    def choose(self, node_id: NodeId | None, paths, current, now: float):
        if node_id is None:
            return _DEFER
        route = self.route_target(node_id)
        if route is not None:
            return route
        p = self._peers.get(node_id)
        if p is None or not p.meters:
            return _DEFER
        direct, indirect = self._views(p, up_only=True, paths=paths, now=now)
        best_d = self._pick(direct, current)
        best_i = self._pick(indirect, current)
        p.best_direct = best_d.target if best_d is not None else None
        if best_d is None and best_i is None:
            cm = p.meters.get(current)
            if cm is not None and cm.state == DOWN:
                # What we use is down and nothing measured is up: let the reachability policy pick
                # among what it knows (a relay), but not a path we have seen down.
                alt = PathPolicy.choose(self.policy, _Filtered(paths, p), current, now)
                return alt if alt is not None else _DEFER
            return None  # nothing better known: keep it
        if best_i is None:
            return best_d.target
        if best_d is None:
            cm = p.meters.get(current)
            if type(current) is Via or (cm is not None and cm.state == DOWN):
                return best_i.target
            return None  # the direct path in use is not known to be down (it is new): keep it
        cfg = self.cfg
        md, mi = best_d.meter, best_i.meter
        if type(current) is Via and current not in p.detours:
            return best_d.target  # leaving a relay (reachability) for a direct path that answers: at once
        on_detour = type(current) is Via and current == best_i.target
        half = 0.5 if on_detour else 1.0
        lat_gain = (md.srtt or 10.0) - (mi.srtt or 10.0)
        loss_gain = md.loss - mi.loss
        detour_better = (lat_gain > half * cfg.detour_latency_margin + 1e-9 or
                         (cfg.detour_loss_margin > 0 and loss_gain > half * cfg.detour_loss_margin))
        if on_detour:
            if md.up_since is None or now - md.up_since < cfg.hold or detour_better:
                return best_i.target
            return best_d.target
        if cfg.detour and detour_better:
            return best_i.target
        return best_d.target

    def on_session_up(self, node_id: NodeId, endpoint, now: float) -> None:
        if self._links_to_advertise() or self.cfg.transit:
            self._send_advert(node_id, now)
        if node_id in self._routes or node_id in self._candidates:
            self._wake = now

    def on_session_down(self, node_id: NodeId, now: float) -> None:
        p = self._peers.get(node_id)
        if p is not None and node_id not in self._routes:
            self._untrack(node_id)
        self._reply_buckets.pop(node_id, None)

    def on_path_changed(self, node_id: NodeId, target, previous, now: float) -> None:
        p = self._peers.get(node_id)
        if p is None or previous is None:
            return
        self.stats["switches"] += 1
        detour = type(target) is Via and target != self.route_target(node_id)
        if detour and not p.on_detour:
            self.stats["detours_taken"] += 1
            self._emit(PathsEvent("detour taken", f"{node_id.text()} {describe_target(target)} "
                                                  f"(was {describe_target(previous)})"))
        elif p.on_detour and not detour:
            self.stats["detours_left"] += 1
            self._emit(PathsEvent("detour left", f"{node_id.text()} back on {describe_target(target)}"))
        p.on_detour = detour
        p.choice.clear()

    def on_message(self, node_id: NodeId, payload: bytes, addr, now: float) -> None:
        """A paths payload (PATHS_TYPES) from an authenticated peer, arrived on path ``addr``."""
        try:
            msg = decode(payload)
        except DecodeError:
            self.stats["malformed"] += 1
            return
        t = type(msg)
        if t is PathProbe:
            b = self._reply_buckets.get(node_id)
            if b is None:
                if len(self._reply_buckets) >= self.MAX_ADVERTS:
                    self._reply_buckets.pop(next(iter(self._reply_buckets)))
                b = self._reply_buckets[node_id] = _Bucket(self.cfg.max_reply_rate, now)
            if not b.take(now):
                self.stats["replies_limited"] += 1
                return
            # The reply is exactly as long as the probe, and goes back the way the probe came; to a
            # source that never answered (maybe spoofed by the key holder) only if the peer pays.
            reply = encode(PathProbeReply(msg.txid, msg.seq))
            pay = self.policy.pay
            if pay is not None and not pay(node_id, addr, len(reply) + _SEALED, now, request=len(payload) + _SEALED):
                self.stats["replies_unpaid"] += 1
                return
            self.transport.send_on(node_id, reply, addr, now)
        elif t is PathProbeReply:
            entry = self._probes.pop(msg.txid, None)
            in_time = entry is not None
            if entry is None:
                entry = self._late.pop(msg.txid, None)
            if entry is None or entry[0] != node_id:
                return
            self.stats["probe_replies" if in_time else "probe_replies_late"] += 1
            target, sent = entry[1], entry[2]
            self._prove(node_id, target, now)
            p = self._peers.get(node_id)
            m = p.meters.get(target) if p is not None else None
            if m is None:
                return
            was = m.state
            if m.answer(now - sent, now, in_time):
                self.stats["paths_up"] += 1
                if was == DOWN:
                    self._emit(PathsEvent("path up", f"{node_id.text()} {describe_target(target)}"))
            p.choice.clear()
            self._decide(p, now)
        elif t is PathAdvert:
            self.stats["adverts_received"] += 1
            if len(self._adverts) >= self.MAX_ADVERTS and node_id not in self._adverts:
                # The oldest of a peer we neither measure nor route through, one that offers no
                # transit first: a peer with many identities must not make us forget the links of
                # the peers our traffic goes to, nor (before its own) the detour intermediates.
                adverts, keep = self._adverts, self._peers.keys() | self._routes.keys()
                victim = next((n for n, a in adverts.items() if n not in keep and not a.flags & FLAG_TRANSIT), None)
                if victim is None:
                    victim = next((n for n in adverts if n not in keep), None)
                adverts.pop(victim if victim is not None else next(iter(adverts)))
            self._adverts[node_id] = msg
            p = self._peers.get(node_id)
            if p is not None:
                p.choice.clear()
                self._wake = now

    def on_dht_event(self, ev: Any, now: float) -> bool:
        node = self._lookups.pop(getattr(ev, "op_id", None), None)
        if node is None:
            return False
        if isinstance(ev, dht_events.LookupDone):
            match = next((c for c in ev.contacts if c.node_id == node), None)
            if match is not None:
                self._connect_contact(node, match, now)
        return True

    # -- timers ---------------------------------------------------------------------
    def get_timer(self) -> float | None:
        return self._wake

    def handle_timer(self, now: float) -> None:
        if not self.cfg.enabled:
            self._wake = None
            return
        cfg = self.cfg
        self._expire_probes(now)
        for node, last in list(self._candidates.items()):
            if now - last >= cfg.track_for or node == self.node_id:
                del self._candidates[node]
            elif self.transport.has_session(node) or node in self._routes:
                del self._candidates[node]
                self._track(node, now, last)
        for node in list(self._routes):
            if node not in self._peers:
                self._track(node, now)
        wake = None
        for p in list(self._peers.values()):
            w = self._tend(p, now)
            if w is not None and (wake is None or w < wake):
                wake = w
        if self._probe_order:
            d = self._probe_order[0][0]
            wake = d if wake is None or d < wake else wake
        if self._candidates:
            wake = now + 1.0 if wake is None else min(wake, now + 1.0)
        self._wake = None if wake is None else max(wake, now + 0.001)

    # -- internals: tracking and probing ------------------------------------------------
    def _candidate(self, node_id: NodeId, now: float) -> None:
        c = self._candidates
        if node_id not in c and len(c) >= self.MAX_CANDIDATES:
            c.pop(next(iter(c)))
        c[node_id] = now

    def _track(self, node: NodeId, now: float, last: float | None = None) -> _Peer | None:
        p = self._peers.get(node)
        if p is not None:
            return p
        if len(self._peers) >= self.cfg.max_tracked:
            # Make room: the peer idle longest that has no explicit route.
            idle = [q for q in self._peers.values() if q.node_id not in self._routes]
            if not idle:
                return None
            victim = min(idle, key=lambda q: (q.last_data, q.node_id.raw))
            if last is not None and victim.last_data >= last:
                return None
            self._untrack(victim.node_id)
        p = self._peers[node] = self._by_raw[node.raw] = _Peer(node, now if last is None else last)
        return p

    def _untrack(self, node: NodeId) -> None:
        del self._peers[node]
        del self._by_raw[node.raw]

    def _tend(self, p: _Peer, now: float) -> float | None:
        """Probe what is due, expire what is silent, re-decide; returns the next time this peer needs us."""
        cfg = self.cfg
        t = self.transport
        node = p.node_id
        routed = node in self._routes
        if routed:
            self._tend_route(node, now)
        if not t.has_session(node):
            if not routed:
                self._untrack(node)
                return None
            return now + 1.0
        idle_for = now - p.last_data
        if not routed and idle_for >= cfg.track_for:
            self._untrack(node)
            return None
        active = routed or idle_for < cfg.active_for
        if active != p.active:
            p.active = active
            for m in p.meters.values():
                if active:
                    m.next_due = now
                    m.watch_from = now
                    m.unanswered = 0
        if not p.advert_sent and (self._links_to_advertise() or cfg.transit):
            self._send_advert(node, now)
        wanted = self._targets(p, now)
        for target in [x for x in p.meters if x not in wanted]:
            del p.meters[target]
            p.choice.clear()
        changed = False
        wake = None
        direct_ok = self._direct_ok(p)
        for target, origin in wanted.items():
            m = p.meters.get(target)
            if m is None:
                m = p.meters[target] = PathMeter(target, cfg.loss_window, origin)
                m.next_due = now
                m.watch_from = now
            interval = self._interval(p, m, direct_ok, now)
            detect = max(cfg.detect if interval <= cfg.interval else 3.0 * interval,
                         2.0 * (m.srtt or 0.0) + interval)
            if m.check(now, detect):
                changed = True
                self.stats["paths_down"] += 1
                self._emit(PathsEvent("path down", f"{node.text()} {describe_target(target)}"))
            if now >= m.next_due:
                if self._budget.take(now):
                    self._probe(node, m, now)
                    m.next_due = now + interval * (0.9 + 0.2 * self._rng.random())
                else:
                    self.stats["probes_deferred"] += 1
                    m.next_due = now + 1.0 / cfg.max_probe_rate
            due = m.next_due
            if m.state != DOWN and m.unanswered:
                since = max(m.last_answer if m.last_answer is not None else (m.first_tx or now), m.watch_from)
                due = min(due, since + detect)
            if wake is None or due < wake:
                wake = due
        if changed:
            p.choice.clear()
            self._decide(p, now)
        if not routed:
            wake = min(wake, p.last_data + cfg.track_for) if wake is not None else p.last_data + cfg.track_for
            if p.active:
                wake = min(wake, p.last_data + cfg.active_for)
        return wake

    def _interval(self, p: _Peer, m: PathMeter, direct_ok: bool, now: float) -> float:
        cfg = self.cfg
        if not p.active:
            return cfg.idle_interval
        if m.state == DOWN and m.down_since is not None:
            # Down for a while (a cut link, a pair of links that do not reach each other): back off
            # towards the idle interval; a path that comes back is still noticed within seconds.
            return min(cfg.idle_interval, max(cfg.interval, (now - m.down_since) / 10.0))
        if type(m.target) is Via and m.target in p.detours and direct_ok and not p.on_detour:
            return cfg.detour_interval
        return cfg.interval

    def _direct_ok(self, p: _Peer) -> bool:
        """A direct path is up and not lossy: detours can be probed slowly."""
        for target, m in p.meters.items():
            if type(target) is not Via and m.state == UP and m.loss < self.cfg.detour_loss_margin:
                return True
        return False

    def _probe(self, node: NodeId, m: PathMeter, now: float) -> None:
        txid = self._rng.getrandbits(64)
        pay = self.policy.pay
        if m.last_answer is None and pay is not None and not self._answered_before(node, m.target, now) and \
                not pay(node, m.target, _PROBE_SIZE, now):
            # A path that never answered (a link the peer advertised, an address it named): probed
            # only as far as the peer pays for it with what it sent us (security.md, item 18).
            self.stats["probes_unpaid"] += 1
            return
        seq = m.probe_sent(now)
        if not self.transport.send_on(node, encode(PathProbe(txid, seq)), m.target, now):
            m.sent -= 1
            m.pending -= 1
            m.unanswered = max(0, m.unanswered - 1)
            return
        if len(self._probes) >= self.MAX_PROBES:
            old = next(iter(self._probes))
            del self._probes[old]
        self._probes[txid] = (node, m.target, now)
        if type(self._probe_order) is tuple:
            self._probe_order = deque()
        self._probe_order.append((now + m.timeout(), txid))
        self.stats["probes_sent"] += 1

    def _prove(self, node: NodeId, target, now: float) -> None:
        """``target`` answered a probe of ours (its txid, from there): it is the peer's, both ways."""
        proven = self._proven
        key = (node.raw, target)
        if proven.pop(key, None) is None and len(proven) >= self.MAX_PROVEN:
            del proven[next(iter(proven))]  # the one that answered longest ago
        proven[key] = now

    def _answered_before(self, node: NodeId, target, now: float) -> bool:
        """Did ``target`` answer a probe of ours within PROVEN_FOR (also before the peer was tracked again)?"""
        at = self._proven.get((node.raw, target))
        return at is not None and now - at < self.PROVEN_FOR

    def _expire_probes(self, now: float) -> None:
        order = self._probe_order
        while order and order[0][0] <= now:
            _, txid = order.popleft()
            entry = self._probes.pop(txid, None)
            if entry is None:
                continue
            node, target, sent = entry
            p = self._peers.get(node)
            m = p.meters.get(target) if p is not None else None
            if m is not None:
                if m.up_since is not None and sent < m.up_since:
                    m.pending = max(0, m.pending - 1)
                    continue  # sent during the outage the path has since come back from: not a loss now
                m.timed_out(now)
                p.choice.clear()
                self.stats["probes_lost"] += 1
                late = self._late
                if len(late) >= self.MAX_PROBES:
                    del late[next(iter(late))]
                late[txid] = (node, target, sent, now)
        late = self._late
        while late:
            txid = next(iter(late))
            if now - late[txid][3] < self.LATE_FOR:
                break
            del late[txid]

    def _decide(self, p: _Peer, now: float) -> None:
        self.transport.rechoose(p.node_id, now)

    # -- internals: which paths ---------------------------------------------------------
    def _targets(self, p: _Peer, now: float) -> dict:
        """Paths to measure for this peer -> how we know them."""
        t = self.transport
        node = p.node_id
        out: dict = {}
        route = self.route_target(node)
        if route is not None:
            out[route] = "route"
        current = t.current_path(node)
        if current is not None:
            out.setdefault(current, "in use")
        for target in self._link_pairs(node, current):
            out.setdefault(target, "link")
        cm = p.meters.get(current)
        direct_ok = type(current) is not Via and (cm is None or cm.state != DOWN) or self._direct_ok(p)
        for row in t.path_table(node, now):
            target = row["target"]
            if target in out or (row.get("dead") and target not in p.meters):
                continue
            if type(target) is Via and (direct_ok or row.get("origin") == "probe"):
                continue  # a relay costs its operator: measured only while no direct path is up
            fresh = [a for a in (row.get("rx_age"), row.get("confirmed_age")) if a is not None and a < 30.0]
            if fresh:
                out[target] = row.get("origin") or "known"
        if self.cfg.detour and route is None and p.active:
            for via in self._pick_detours(p, now):
                out.setdefault(via, "detour")
        else:
            p.detours = []
        while len(out) > 20:
            out.popitem()
        return out

    def _link_pairs(self, node: NodeId, current) -> list:
        """One target per (our link, the peer's link) pair of one address family."""
        remote: list[tuple] = []
        adv = self._adverts.get(node)
        if adv is not None:
            remote = [tuple(li.endpoint) for li in adv.links]
        if current is not None and type(current) is tuple and tuple(current) not in remote:
            remote.append(tuple(current))
        if not remote:
            return []
        links = self.links or ()
        if not any(not s.main for s in links):
            # Only the main socket: the peer's advertised links are still paths from it.
            return [ep for ep in remote if ep != current]
        out = []
        for spec in links:
            fam = None if spec.endpoint is None else (6 if ":" in spec.endpoint[0] else 4)
            for ep in remote:
                if fam is not None and (6 if ":" in ep[0] else 4) != fam:
                    continue
                out.append(ep if spec.main else LinkAddr(ep[0], ep[1], spec.name))
        if not any(s.main for s in links):
            out.extend(ep for ep in remote)  # the main socket, unnamed, is a link too
        return out

    def _pick_detours(self, p: _Peer, now: float) -> list:
        cfg = self.cfg
        t = self.transport
        node = p.node_id
        want = cfg.detour_candidates
        keep = []
        for v in p.detours:
            m = p.meters.get(v)
            if not self._transit_ok(NodeId(v.hops[0]), node):
                continue
            if m is not None and m.state == DOWN and v != t.current_path(node):
                p.tried[v.hops[0]] = now + _ROTATE  # this intermediate does not get through now: try another
                continue
            keep.append(v)
        if keep and len(keep) >= want and now >= p.rotate_at:
            p.rotate_at = now + _ROTATE
            current = t.current_path(node)
            worst = max((v for v in keep if v != current),
                        key=lambda v: (p.meters[v].state != UP, p.meters[v].score()) if v in p.meters else (True, 10.0),
                        default=None)
            if worst is not None and len(self._transit_peers(node, keep)) > 0:
                keep.remove(worst)
        if len(keep) < want:
            for raw, until in list(p.tried.items()):
                if until <= now:
                    del p.tried[raw]
            fresh = [c for c in self._transit_peers(node, keep) if c.raw not in p.tried]
            for c in fresh[:want - len(keep)]:
                keep.append(Via((c.raw,), node.raw))
        p.detours = keep
        return keep

    def _transit_ok(self, c: NodeId, dest: NodeId) -> bool:
        if c == dest or c == self.node_id:
            return False
        adv = self._adverts.get(c)
        if adv is None or not adv.flags & FLAG_TRANSIT or not self.transport.has_session(c):
            return False
        return path_kind(self.transport.current_path(c)) != RELAY

    def _transit_peers(self, dest: NodeId, taken: list) -> list[NodeId]:
        used = {v.hops[0] for v in taken}
        out = []
        for c in self._adverts:
            if c.raw in used or not self._transit_ok(c, dest):
                continue
            p = self._peers.get(c)
            m = p.meters.get(self.transport.current_path(c)) if p is not None else None
            rtt = m.srtt if m is not None and m.srtt is not None else None
            if rtt is None:
                path = self.transport.path(c, self.transport.current_path(c))
                rtt = path.rtt if path is not None and path.rtt is not None else 1.0
            out.append((self._rng.random(), rtt, c))
        # In random order, as RON does: the intermediates nearest to us tend to share our failures
        # (a region cut off), and candidates that turn out down are replaced at once.
        out.sort(key=lambda x: (x[0], x[1]))
        return [c for _, _, c in out]

    def _views(self, p: _Peer, up_only: bool, links: tuple = (), paths=None, now: float = 0.0) -> tuple[list, list]:
        direct, indirect = [], []
        route = self.route_target(p.node_id)
        items = list(p.meters.items())
        if paths is not None:
            # A path the transport saw answer (reach's probe, a handshake) since our meter last said
            # otherwise counts as up, with its RTT, until our own probes say more.
            for path in paths:
                if path.dead or path.confirmed is None or now - path.confirmed > 2 * self.cfg.detect + 1.0:
                    continue
                m = p.meters.get(path.target)
                if m is not None and (m.state == UP or (m.down_since or 0.0) >= path.confirmed):
                    continue
                stand_in = PathMeter(path.target, 1, "confirmed")
                stand_in.answer(path.rtt if path.rtt is not None else 1.0, path.confirmed)
                stand_in.state = UP
                stand_in.up_since = path.confirmed
                items = [(t, x) for t, x in items if t != path.target] + [(path.target, stand_in)]
        for target, m in items:
            if up_only and m.state != UP:
                continue
            if target == route:
                continue
            link, cost, metered = self._link_info(p.node_id, target)
            if links and link not in links:
                continue
            v = _View(target, m, type(target) is not Via, link, cost, metered)
            (direct if v.direct else indirect).append(v)
        return direct, indirect

    def _pick(self, views: list, current) -> _View | None:
        if not views:
            return None
        unmetered = [v for v in views if not v.metered]
        pool = unmetered or views
        best = min(pool, key=lambda v: (v.score, describe_target(v.target)))
        # Paths about as good as the best are equals: the cheapest of them, and among those the one in use.
        margin = best.score + max(_SWITCH_MARGIN, 0.1 * best.score)
        near = [v for v in pool if v.score <= margin]
        cost = min(v.cost for v in near)
        near = [v for v in near if v.cost == cost]
        cur = next((v for v in near if v.target == current), None)
        return cur if cur is not None else min(near, key=lambda v: (v.score, describe_target(v.target)))

    def _local_link(self, target) -> str:
        t = type(target)
        if t is LinkAddr:
            return target.link
        if t is StreamLink:
            return "tcp"
        return self.main_link().name

    def _link_info(self, node: NodeId, target) -> tuple[str, int, bool]:
        """(our link name, cost of the pair, metered) of a path."""
        t = type(target)
        if t is Via:
            hop = NodeId(target.hops[0])
            first = self.transport.current_path(hop)
            if first is None or type(first) is Via:
                return "via", 100, False
            link, cost, metered = self._link_info(hop, first)
            return link, cost + 1, metered
        if t is StreamLink:
            return "tcp", 10, False
        spec = self._by_link.get(target.link) if t is LinkAddr else self.main_link()
        if spec is None:
            return (target.link if t is LinkAddr else MAIN_LINK), 1, False
        cost, metered = spec.cost, spec.metered
        adv = self._adverts.get(node)
        if adv is not None:
            ep = (target[0], target[1])
            for li in adv.links:
                if tuple(li.endpoint) == ep:
                    cost += li.cost
                    metered = metered or bool(li.metered)
                    break
        return spec.name, cost, metered

    def _class_choice(self, p: _Peer, c: ClassSpec, idx: int, now: float) -> tuple:
        """(policy, targets, link names) for one class to one peer; empty targets = the default path."""
        direct, indirect = self._views(p, up_only=True, links=c.links)
        if self.route_target(p.node_id) is not None:
            return c.policy, (), (), True
        ups = direct + indirect
        if not ups:
            return c.policy, (), (), True

        def meets(v: _View) -> bool:
            m = v.meter
            return ((c.latency is None or (m.srtt is not None and m.srtt <= c.latency)) and
                    (c.jitter is None or m.jitter <= c.jitter) and
                    (c.loss is None or m.loss <= c.loss))

        ok = [v for v in ups if meets(v)]
        pool = ok or ups
        current = self.transport.current_path(p.node_id)
        if c.policy == "best":
            best = self._pick([v for v in pool if v.direct] or pool, current)
            chosen = [best]
        elif c.policy == "cheapest":
            chosen = [min(pool, key=lambda v: (v.cost, v.score, describe_target(v.target)))]
        elif c.policy == "balance":
            direct_pool = [v for v in pool if v.direct] or pool
            chosen = sorted(direct_pool, key=lambda v: describe_target(v.target))
            return "balance", tuple(v.target for v in chosen), tuple(v.link for v in chosen), bool(ok)
        else:  # duplicate: the two best, on two different links of ours if there are two
            ranked = sorted(pool, key=lambda v: (v.score, describe_target(v.target)))
            first = ranked[0]
            second = next((v for v in ranked[1:] if v.link != first.link), None)
            if second is None:
                second = next((v for v in ranked[1:]), None)
            chosen = [first] if second is None else [first, second]
        return c.policy, tuple(v.target for v in chosen), tuple(v.link for v in chosen), bool(ok)

    # -- internals: adverts and explicit routes ------------------------------------------
    def _links_to_advertise(self) -> tuple:
        return tuple(LinkInfo(s.name, tuple(s.endpoint), s.cost, 1 if s.metered else 0)
                     for s in self.links if s.endpoint is not None and s.endpoint[0] not in ("0.0.0.0", "::"))

    def _send_advert(self, node: NodeId, now: float) -> None:
        msg = PathAdvert(FLAG_TRANSIT if self.cfg.transit else 0, self._links_to_advertise())
        if self.transport.send_to(node, encode(msg), now):
            self.stats["adverts_sent"] += 1
            p = self._peers.get(node)
            if p is not None:
                p.advert_sent = True

    def _tend_route(self, node: NodeId, now: float) -> None:
        t = self.transport
        spec = self._routes[node]
        hop = spec.via[0]
        if not t.has_session(hop) and not t.handshaking(hop):
            self._connect(hop, now)
        if not t.has_session(node) and not t.handshaking(node):
            pk = t.public_key_of(node)
            if pk is None:
                self._connect(node, now)
            elif t.has_session(hop):
                t.connect(self.route_target(node), now, pk)

    def _connect(self, node: NodeId, now: float) -> None:
        contact = self.dht.contact_for(node)
        if contact is not None:
            self._connect_contact(node, contact, now)
            return
        if now - self._looked_up.get(node, -1e18) < _LOOKUP_AGAIN:
            return
        if len(self._looked_up) >= self.MAX_CANDIDATES:
            self._looked_up.pop(next(iter(self._looked_up)))
        self._looked_up[node] = now
        self._lookups[self.dht.find_node(node, now)] = node

    def _connect_contact(self, node: NodeId, contact, now: float) -> None:
        t = self.transport
        if node in self._routes:
            spec = self._routes[node]
            if t.has_session(spec.via[0]):
                t.connect(self.route_target(node), now, contact.public_key)
            else:
                t.learn_endpoint(contact.public_key, self.route_target(node), now)
            return
        t.connect(tuple(contact.endpoint), now, contact.public_key)

    # -- introspection ------------------------------------------------------------------
    def path_rows(self, node_id: NodeId, rows: list[dict], now: float) -> list[dict]:
        """The transport's path table of a peer, with each path's measurements added."""
        p = self._peers.get(node_id)
        known = set()
        for row in rows:
            target = row["target"]
            known.add(target)
            m = p.meters.get(target) if p is not None else None
            self._annotate(node_id, row, target, m, now)
        if p is not None:
            for target, m in p.meters.items():
                if target not in known:
                    row = {"target": target, "in_use": False, "kind": path_kind(target), "origin": m.origin}
                    self._annotate(node_id, row, target, m, now)
                    rows.append(row)
        return rows

    def _annotate(self, node_id: NodeId, row: dict, target, m: PathMeter | None, now: float) -> None:
        link, cost, metered = self._link_info(node_id, target)
        row.update({"link": link, "cost": cost, "metered": metered})
        if type(target) is Via:
            row["role"] = ("route" if target == self.route_target(node_id) else
                           "detour" if node_id in self._peers and target in self._peers[node_id].detours else "relay")
        if m is not None:
            row["measured"] = m.info(now)

    def trace(self, node_id: NodeId, now: float) -> dict | None:
        """The overlay path in use to a peer, hop by hop, when it goes through other nodes; else None."""
        t = self.transport
        current = t.current_path(node_id)
        if type(current) is not Via:
            return None
        p = self._peers.get(node_id)
        role = ("route" if current == self.route_target(node_id) else
                "detour" if p is not None and current in p.detours else "relay")
        hops = []
        for i, raw in enumerate(current.hops):
            hop = NodeId(raw)
            row = {"node_id": hop.text(), "endpoint": None, "rtt": None}
            if i == 0:
                first = t.current_path(hop)
                row["endpoint"] = describe_target(first)
                q = self._peers.get(hop)
                m = q.meters.get(first) if q is not None else None
                path = t.path(hop, first) if first is not None else None
                rtt = m.srtt if m is not None and m.srtt is not None else (path.rtt if path is not None else None)
                row["rtt"] = None if rtt is None else round(rtt, 6)
            hops.append(row)
        m = p.meters.get(current) if p is not None else None
        hops.append({"node_id": node_id.text(), "endpoint": "end to end",
                     "rtt": None if m is None or m.srtt is None else round(m.srtt, 6)})
        return {"role": role, "path": describe_target(current), "hops": hops,
                "loss": None if m is None else round(m.loss, 4)}

    def peer_status(self, node_id: NodeId, now: float) -> dict | None:
        p = self._peers.get(node_id)
        if p is None:
            return None
        current = self.transport.current_path(node_id)
        return {
            "node_id": node_id.text(),
            "active": p.active,
            "path": describe_target(current),
            "on_detour": p.on_detour,
            "routed": node_id in self._routes,
            "paths": [{"path": describe_target(t), "kind": path_kind(t), "in_use": t == current,
                       "link": self._link_info(node_id, t)[0], "origin": m.origin, **m.info(now)}
                      for t, m in p.meters.items()],
        }

    def status(self, now: float) -> dict[str, Any]:
        links = []
        for spec in (self.links or (self.main_link(),)):
            up = down = 0
            for p in self._peers.values():
                for t, m in p.meters.items():
                    if type(t) is not Via and self._link_info(p.node_id, t)[0] == spec.name:
                        if m.state == UP:
                            up += 1
                        elif m.state == DOWN:
                            down += 1
            links.append({"name": spec.name, "endpoint": None if spec.endpoint is None else
                          describe_target(tuple(spec.endpoint)), "cost": spec.cost, "metered": spec.metered,
                          "main": spec.main, "paths_up": up, "paths_down": down})
        classes = []
        for c, st in zip(self.classes, self._class_stats):
            classes.append({"name": c.name, "policy": c.policy,
                            "sla": {"latency": c.latency, "jitter": c.jitter, "loss": c.loss},
                            **{k: (dict(v) if isinstance(v, dict) else v) for k, v in st.items()}})
        cfg = self.cfg
        return {
            "enabled": cfg.enabled,
            "interval": cfg.interval,
            "idle_interval": cfg.idle_interval,
            "detect": cfg.detect,
            "detour": cfg.detour,
            "transit": self.transit.status(),
            "links": links,
            "classes": classes,
            "routes": self.routes(now),
            "peers": [self.peer_status(n, now) for n in sorted(self._peers, key=lambda n: n.raw)],
            "stats": dict(self.stats),
        }


class _Filtered:
    """A PathSet seen without the paths our measurements say are down."""

    def __init__(self, paths, p: _Peer):
        self._paths, self._p = paths, p

    def __iter__(self):
        for path in self._paths:
            m = self._p.meters.get(path.target)
            if m is None or m.state != DOWN:
                yield path

    def get(self, target):
        return self._paths.get(target)
