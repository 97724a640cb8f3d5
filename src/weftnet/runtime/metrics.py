"""Prometheus metrics of a running node, read from the cores' counters at scrape time.

Nothing on the packet path is instrumented: the transport, DHT and VPN cores
already count what they do (their ``stats`` dicts, per-peer counters, the
DHT's latency histogram), and :class:`NodeCollector` turns a snapshot of
those into metric families when Prometheus scrapes ``/metrics``. A scrape
costs O(peers) once, on the event loop, so it sees one consistent state and
never races the core.

Cardinality is bounded: per-peer series exist for at most ``peer_series``
peers (the ones with the most bytes through their session; the rest are in
the node totals and counted by ``weftnet_peer_series_omitted``); drop
reasons, operation kinds and outcomes come from fixed sets in the code.
docs/metrics.md lists every metric; a test compares that table with a scrape.
"""

from __future__ import annotations

import heapq
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.utils import floatToGoString
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from weftnet.runtime import opsview

if TYPE_CHECKING:
    from weftnet.core.node import NodeCore
    from weftnet.runtime.driver import UdpDriver

__all__ = ["NodeCollector", "Exposition", "render_text", "make_registry", "exposition", "CONTENT_TYPE"]

log = logging.getLogger("weftnet.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: transport ``stats`` key -> the ``reason`` of weftnet_transport_dropped_total
_TRANSPORT_DROPS = {
    "auth_failures": "auth-failed",
    "replays_dropped": "replay",
    "malformed_dropped": "malformed",
    "unknown_index_dropped": "unknown-session",
    "expired_dropped": "session-expired",
    "queue_dropped": "queue-full",
    "hello_dropped": "hello-rate-limited",
    "fragments_expired": "fragment-timeout",
}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("weftnet")
    except Exception:
        return "unknown"


class NodeCollector:
    """A prometheus_client custom collector over one node's cores.

    ``extra`` maps a subsystem name to a callable returning its ``stats``
    dict of counters; each appears as ``weftnet_subsystem_events_total``
    (a hook for subsystems without metrics of their own yet).
    """

    def __init__(self, core: "NodeCore", driver: "UdpDriver | None" = None, peer_series: int = 100,
                 daemon: Any = None, clock: Callable[[], float] = time.time):
        self.core = core
        self.driver = driver
        self.peer_series = peer_series
        self.daemon = daemon
        self.clock = clock
        self.extra: dict[str, Callable[[], dict[str, int]]] = {}
        self._version = _version()
        #: node ID -> its label values and label strings (its text form costs a SHA-256 and base32)
        self._labels: dict[bytes, tuple] = {}
        self._path_texts: dict[tuple[str, str, str], str] = {}  # (peer label, path kind, NAT) -> label string
        self._chosen: list = []  # this scrape's peers with per-peer series (node IDs)
        #: How long the previous scrape's collection and rendering took on the event loop (seconds).
        self.last_duration = 0.0

    def describe(self) -> list:
        return []  # families are dynamic; registering must not trigger a collection

    def families(self) -> list:
        """This scrape's families: prometheus_client Metrics, and the per-peer ones as :class:`_Lines`."""
        now = self.clock()
        core = self.core
        out: list = [
            GaugeMetricFamily("weftnet_metrics_collect_seconds",
                              "How long the previous scrape took to collect and render these metrics on the "
                              "event loop.", value=self.last_duration)]
        out += self._node(core, now)
        out += self._transport(core, now)
        out += self._udp()
        out += self._dht(core)
        out += self._vpn(core)
        out += self._overlay(core)
        out += self._hardening(core)
        out += self._reach(core, now)
        out += self._paths(core, now)
        if self.daemon is not None:
            out += self._subsystems(self.daemon)
        out += self._extra()
        return out

    def collect(self) -> Iterator[Metric]:
        """The registry protocol (for a caller's own prometheus_client registry); /metrics uses :meth:`render`."""
        t0 = time.perf_counter()
        out = [f.to_metric() if isinstance(f, _Lines) else f for f in self.families()]
        self.last_duration = time.perf_counter() - t0
        return iter(out)

    def render(self) -> str:
        """The text exposition (0.0.4) of this node's families, built in one pass."""
        t0 = time.perf_counter()
        text = render_text(self.families())
        self.last_duration = time.perf_counter() - t0
        return text

    # -- families -------------------------------------------------------------
    def _node(self, core: "NodeCore", now: float) -> Iterator[Metric]:
        g = GaugeMetricFamily("weftnet_info", "This node: constant 1, with its identity as labels.",
                              labels=["node_id", "address", "version"])
        g.add_metric([core.node_id.text(), str(core.address), self._version], 1)
        yield g
        yield GaugeMetricFamily("weftnet_uptime_seconds", "Seconds since the node started.", value=now - core.started)
        yield GaugeMetricFamily("weftnet_requests_in_flight", "User requests (ping, get, ...) not yet completed.",
                                value=len(core._ops))

    def _transport(self, core: "NodeCore", now: float) -> Iterator[Metric]:
        t = core.transport
        st = t.stats
        peers = t.session_counters()
        yield GaugeMetricFamily("weftnet_sessions", "Peers with an established session.", value=len(peers))
        yield CounterMetricFamily("weftnet_handshakes_initiated", "Handshakes this node started.",
                                  value=st.get("handshakes_initiated", 0))
        c = CounterMetricFamily("weftnet_handshakes", "Handshakes finished, by result.", labels=["result"])
        c.add_metric(["completed"], st.get("handshakes_completed", 0))
        c.add_metric(["failed"], st.get("handshakes_failed", 0))
        yield c
        c = CounterMetricFamily("weftnet_transport_dropped", "Datagrams the transport dropped, by reason.",
                                labels=["reason"])
        for key, reason in _TRANSPORT_DROPS.items():
            c.add_metric([reason], st.get(key, 0))
        yield c
        c = CounterMetricFamily("weftnet_cookies", "Cookie replies (load protection), by direction.",
                                labels=["direction"])
        c.add_metric(["sent"], st.get("cookies_sent", 0))
        c.add_metric(["received"], st.get("cookies_received", 0))
        yield c
        yield CounterMetricFamily("weftnet_keepalives_sent", "Keepalives sent on idle sessions.",
                                  value=st.get("keepalives_sent", 0))
        yield CounterMetricFamily("weftnet_hello_replies", "Hello (key discovery) requests answered.",
                                  value=st.get("hello_replies", 0))
        totals = t.traffic_totals()
        b = CounterMetricFamily("weftnet_transport_bytes", "Payload bytes through all sessions, by direction.",
                                labels=["direction"])
        b.add_metric(["in"], totals["bytes_in"])
        b.add_metric(["out"], totals["bytes_out"])
        yield b
        p = CounterMetricFamily("weftnet_transport_packets", "Payloads through all sessions, by direction.",
                                labels=["direction"])
        p.add_metric(["in"], totals["packets_in"])
        p.add_metric(["out"], totals["packets_out"])
        yield p
        # Per peer: the busiest `peer_series` sessions only (bounded cardinality).
        chosen = peers if len(peers) <= self.peer_series else heapq.nlargest(
            self.peer_series, peers, key=lambda i: (i[1] + i[2], i[0].raw))
        self._chosen = [row[0] for row in chosen]
        pb = _Lines("weftnet_peer_bytes", "counter", "Payload bytes through this peer's session, by direction.",
                    ("peer", "direction"))
        pp = _Lines("weftnet_peer_packets", "counter", "Payloads through this peer's session, by direction.",
                    ("peer", "direction"))
        rtt = _Lines("weftnet_peer_rtt_seconds", "gauge", "Smoothed round-trip time to this peer (RFC 6298).",
                     ("peer",))
        path = _Lines("weftnet_peer_path", "gauge", "Constant 1: the kind of path in use to this peer (direct, "
                      "tcp, relay) and the peer's NAT class as its endpoint record says.", ("peer", "path", "nat"))
        reach = getattr(core, "reach", None)
        peer_reach = opsview.peer_reach_reader(core) if reach is not None else None
        path_texts = self._path_texts
        names = self._labels
        if len(names) > 4 * max(self.peer_series, 1024):
            names.clear()  # bounded: peers come and go
        b_rows, p_rows, r_rows = pb.rows, pp.rows, rtt.rows
        for node_id, bytes_in, bytes_out, packets_in, packets_out, srtt in chosen:
            lab = names.get(node_id.raw)
            if lab is None:  # the ID's text form (a hash and base32) and its label strings, once per peer
                peer = node_id.text()
                q = _escape(peer)
                lab = names[node_id.raw] = ((peer, "in"), f'peer="{q}",direction="in"',
                                            (peer, "out"), f'peer="{q}",direction="out"', (peer,), f'peer="{q}"')
            v_in, t_in, v_out, t_out, v_peer, t_peer = lab
            b_rows.append((t_in, bytes_in, v_in))
            b_rows.append((t_out, bytes_out, v_out))
            p_rows.append((t_in, packets_in, v_in))
            p_rows.append((t_out, packets_out, v_out))
            if srtt is not None:
                r_rows.append((t_peer, srtt, v_peer))
            if peer_reach is not None:
                kind, nat = peer_reach(node_id)
                key = (t_peer, kind, nat)
                text = path_texts.get(key)
                if text is None:
                    if len(path_texts) > 4 * max(self.peer_series, 1024):
                        path_texts.clear()
                    text = path_texts[key] = f'{t_peer},path="{kind}",nat="{nat}"'
                path.rows.append((text, 1, (v_peer[0], kind, nat)))
        yield pb
        yield pp
        yield rtt
        if reach is not None:
            yield path
        yield GaugeMetricFamily("weftnet_peer_series_omitted",
                                "Sessions left out of the per-peer series ([metrics] peer_series).",
                                value=len(peers) - len(chosen))

    def _udp(self) -> Iterator[Metric]:
        d = self.driver
        if d is None:
            return
        c = CounterMetricFamily("weftnet_udp_datagrams", "UDP datagrams on the underlay socket, by direction.",
                                labels=["direction"])
        c.add_metric(["in"], d.received)
        c.add_metric(["out"], d.sent)
        yield c
        yield CounterMetricFamily("weftnet_udp_send_errors", "UDP sends the kernel refused.", value=d.send_errors)
        yield CounterMetricFamily("weftnet_udp_backlog_dropped",
                                  "Datagrams dropped because the send backlog was full.", value=d.dropped)
        yield CounterMetricFamily("weftnet_udp_gso_sends", "sendmsg calls that carried several datagrams (GSO).",
                                  value=d.gso_sends)

    def _dht(self, core: "NodeCore") -> Iterator[Metric]:
        dht = core.dht
        st = dht.stats
        summary = dht.summary()
        yield GaugeMetricFamily("weftnet_dht_contacts", "Contacts in the routing table.", value=summary["contacts"])
        yield GaugeMetricFamily("weftnet_dht_buckets", "k-buckets in the routing table.", value=summary["buckets"])
        yield GaugeMetricFamily("weftnet_dht_records", "Records this node stores.", value=summary["records"])
        yield GaugeMetricFamily("weftnet_dht_records_max", "Records this node stores at most ([dht] max_records).",
                                value=dht.config.max_records)
        yield GaugeMetricFamily("weftnet_dht_operations_in_flight", "DHT operations (lookups, puts, routes) running.",
                                value=summary["operations_in_flight"])
        c = CounterMetricFamily("weftnet_dht_requests", "DHT requests, by direction.", labels=["direction"])
        c.add_metric(["sent"], st.get("requests_sent", 0))
        c.add_metric(["received"], st.get("requests_received", 0))
        yield c
        yield CounterMetricFamily("weftnet_dht_responses", "Answers to our requests that matched one.",
                                  value=st.get("responses", 0))
        yield CounterMetricFamily("weftnet_dht_request_timeouts", "Requests that got no answer in time.",
                                  value=st.get("timeouts", 0))
        yield CounterMetricFamily("weftnet_dht_rate_limited",
                                  "Requests refused by the per-peer quota (token bucket).", value=st.get("rate_limited", 0))
        yield CounterMetricFamily("weftnet_dht_unsolicited", "Answers nobody asked for (dropped).",
                                  value=st.get("unsolicited", 0))
        c = CounterMetricFamily("weftnet_dht_record_events", "Records stored, rejected, evicted and expired here.",
                                labels=["event"])
        for event in ("stored", "rejected", "evicted", "expired"):
            c.add_metric([event], st.get(f"records_{event}", 0))
        yield c
        c = CounterMetricFamily("weftnet_dht_routes", "Key-based routing messages, by what this node did.",
                                labels=["result"])
        for result in ("forwarded", "delivered", "dropped"):
            c.add_metric([result], st.get(f"routes_{result}", 0))
        yield c
        h = HistogramMetricFamily("weftnet_dht_operation_duration_seconds",
                                  "Duration of DHT operations, by kind and outcome.", labels=["kind", "outcome"])
        hist = dht.latency
        if hist is not None:
            bounds = [repr(float(b)) for b in hist.buckets] + ["+Inf"]
            for (kind, outcome), (counts, total) in sorted(hist.snapshot().items()):
                cum, acc = [], 0
                for bound, n in zip(bounds, counts):
                    acc += n
                    cum.append((bound, acc))
                h.add_metric([kind, outcome], cum, total)
        yield h

    def _vpn(self, core: "NodeCore") -> Iterator[Metric]:
        vpn = core.vpn
        st = vpn.stats
        tun_info = getattr(self.daemon, "_tun_info", {}) if self.daemon is not None else {}
        info = GaugeMetricFamily("weftnet_network_info", "A private network this node runs: constant 1.",
                                 labels=["network", "network_id", "tun"])
        members = GaugeMetricFamily("weftnet_network_members", "Members of the network this node knows.",
                                    labels=["network"])
        flows = GaugeMetricFamily("weftnet_network_flows", "Firewall connection-tracking entries.", labels=["network"])
        nb = CounterMetricFamily("weftnet_network_bytes", "IP bytes to and from members, by direction.",
                                 labels=["network", "direction"])
        npk = CounterMetricFamily("weftnet_network_packets", "IP packets to and from members, by direction.",
                                  labels=["network", "direction"])
        drops = CounterMetricFamily("weftnet_network_drops",
                                    "Packets dropped, by reason (\"firewall\": no rule allowed it).",
                                    labels=["network", "reason"])
        for net in vpn.networks():
            name = net.descriptor.name
            nid = net.network_id.hex()
            info.add_metric([name, nid, str(tun_info.get(nid, {}).get("tun", ""))], 1)
            members.add_metric([name], len(net.members()))
            flows.add_metric([name], len(net.firewall))
            t = {"bytes_in": 0, "bytes_out": 0, "packets_in": 0, "packets_out": 0}
            for c in net.peers.values():
                t["bytes_in"] += c.bytes_in
                t["bytes_out"] += c.bytes_out
                t["packets_in"] += c.packets_in
                t["packets_out"] += c.packets_out
            nb.add_metric([name, "in"], t["bytes_in"])
            nb.add_metric([name, "out"], t["bytes_out"])
            npk.add_metric([name, "in"], t["packets_in"])
            npk.add_metric([name, "out"], t["packets_out"])
            drops.add_metric([name, "firewall"], net.drops.get("firewall", 0))  # always present: alerts need it
            for reason, n in sorted(net.drops.items()):
                if reason != "firewall":
                    drops.add_metric([name, reason], n)
        yield from (info, members, flows, nb, npk, drops)
        c = CounterMetricFamily("weftnet_vpn_dropped", "VPN messages for no network of ours, by reason.",
                                labels=["reason"])
        for reason in ("undecodable", "unknown-network"):
            c.add_metric([reason], vpn.switch.drops.get(reason, 0))
        yield c
        c = CounterMetricFamily("weftnet_vpn_member_lookups",
                                "DHT lookups for members: locate (by node ID), resolve (by IP address).",
                                labels=["kind", "result"])
        c.add_metric(["locate", "started"], st.get("locate_started", 0))
        c.add_metric(["locate", "failed"], st.get("locate_failed", 0))
        c.add_metric(["resolve", "started"], st.get("resolve_started", 0))
        c.add_metric(["resolve", "found"], st.get("resolved", 0))
        c.add_metric(["resolve", "failed"], st.get("resolve_failed", 0))
        yield c
        yield CounterMetricFamily("weftnet_vpn_pending_dropped", "Packets dropped while their member was looked up.",
                                  value=st.get("pending_dropped", 0))
        yield CounterMetricFamily("weftnet_vpn_records_published", "Directory and revocation records published.",
                                  value=st.get("published", 0))
        yield CounterMetricFamily("weftnet_vpn_revocations_installed", "Newer revocation lists installed.",
                                  value=st.get("revocations_installed", 0))
        errors = getattr(self.daemon, "tun_write_errors", 0) if self.daemon is not None else 0
        yield CounterMetricFamily("weftnet_tun_write_errors", "Packets the kernel refused on a TUN write.",
                                  value=errors)

    def _overlay(self, core: "NodeCore") -> Iterator[Metric]:
        """The overlay interface (weft0, docs/overlay.md) and LAN discovery."""
        ov = getattr(core, "overlay", None)
        if ov is None:
            return
        data = ov.data
        yield GaugeMetricFamily("weftnet_overlay_up", "1 while the overlay interface (weft0) carries traffic.",
                                value=1 if data is not None else 0)
        b = CounterMetricFamily("weftnet_overlay_bytes", "IP bytes through the overlay interface, by direction.",
                                labels=["direction"])
        pk = CounterMetricFamily("weftnet_overlay_packets", "IP packets through the overlay interface, by direction.",
                                 labels=["direction"])
        drops = CounterMetricFamily("weftnet_overlay_drops", "Overlay packets dropped, by reason.", labels=["reason"])
        flows = GaugeMetricFamily("weftnet_overlay_flows", "The overlay firewall's connection-tracking entries.",
                                  labels=[])
        if data is not None:
            t = data.totals
            b.add_metric(["in"], t.bytes_in)
            b.add_metric(["out"], t.bytes_out)
            pk.add_metric(["in"], t.packets_in)
            pk.add_metric(["out"], t.packets_out)
            drops.add_metric(["firewall"], data.drops.get("firewall", 0))
            for reason, n in sorted(data.drops.items()):
                if reason != "firewall":
                    drops.add_metric([reason], n)
            flows.add_metric([], len(data.firewall))
        yield from (b, pk, drops, flows)
        c = CounterMetricFamily("weftnet_overlay_events", "Overlay data-plane events (no endpoint, probes, ...).",
                                labels=["event"])
        for k, v in sorted(ov.stats.items()):
            c.add_metric([k], v)
        yield c
        c = CounterMetricFamily("weftnet_overlay_resolver_events",
                                "Lookups of overlay addresses in the DHT: cache hits, misses, results.",
                                labels=["event"])
        for k, v in sorted(ov.cache.stats.items()):
            c.add_metric([k], v)
        yield c
        lan = getattr(core, "lan", None)
        if lan is not None:
            c = CounterMetricFamily("weftnet_lan_discovery_events", "LAN discovery beacons sent, heard and refused.",
                                    labels=["event"])
            for k, v in sorted(lan.stats.items()):
                c.add_metric([k], v)
            yield c

    def _hardening(self, core: "NodeCore") -> Iterator[Metric]:
        """What the protections of docs/security.md refused (always present, zero until they act)."""
        h = opsview.hardening_view(core)
        yield CounterMetricFamily("weftnet_handshakes_rate_limited",
                                  "Handshake Inits refused by admission (per-address and per-prefix rate).",
                                  value=h["handshakes_rate_limited"])
        yield GaugeMetricFamily("weftnet_half_open_peers",
                                "Peers with a session that has not yet proven return routability.",
                                value=h["half_open_peers"])
        c = CounterMetricFamily("weftnet_half_open", "Half-open peers: admitted, confirmed (return routability "
                                "proven), expired unconfirmed, and messages held until confirmed.", labels=["event"])
        for k, v in h["half_open"].items():
            c.add_metric([k], v)
        yield c
        c = CounterMetricFamily("weftnet_peer_table_events",
                                "Peers pushed out of the bounded peer table (evicted) or dropped after idling.",
                                labels=["event"])
        c.add_metric(["evicted"], h["peers_evicted"])
        c.add_metric(["forgotten"], h["peers_forgotten"])
        yield c
        c = CounterMetricFamily("weftnet_dht_contacts_refused",
                                "Contacts kept out of the routing table, by reason (ID puzzle, per-prefix limit).",
                                labels=["reason"])
        for k, v in h["contacts_refused"].items():
            c.add_metric([k], v)
        yield c
        yield CounterMetricFamily("weftnet_dht_contacts_evicted", "Contacts replaced in full k-buckets.",
                                  value=h["contacts_evicted"])
        c = CounterMetricFamily("weftnet_dht_store_refused",
                                "Records refused: over a peer's or an address prefix's quota, or invalid (other).",
                                labels=["reason"])
        for k, v in h["store_refused"].items():
            c.add_metric([k], v)
        yield c
        c = CounterMetricFamily("weftnet_dht_deferred",
                                "DHT work put off for safety: messages held from unverified senders, hints not "
                                "followed yet, second datagrams to a hint's address not sent.", labels=["what"])
        c.add_metric(["held-unverified"], h["dht_held_unverified"])
        c.add_metric(["hint"], h["dht_hints_deferred"])
        c.add_metric(["hint-fallback"], h["dht_hint_fallbacks_dropped"])
        yield c
        c = CounterMetricFamily("weftnet_texts_dropped",
                                "Routed texts dropped because their origin is not proven.", labels=["reason"])
        for k, v in h["texts_dropped"].items():
            c.add_metric([k], v)
        yield c
        yield CounterMetricFamily("weftnet_internal_errors",
                                  "Messages whose handling raised an unexpected error (logged; a bug).",
                                  value=h["internal_errors"])

    def _reach(self, core: "NodeCore", now: float) -> Iterator[Metric]:
        """NAT traversal and relays (docs/reach.md)."""
        r = opsview.reach_view(core, now)
        if r is None:
            return
        g = GaugeMetricFamily("weftnet_nat_class", "1 for this node's NAT class as its peers' reports show it, "
                              "0 for the others.", labels=["class"])
        for c in opsview.NAT_CLASSES:
            g.add_metric([c], 1 if r["nat"] == c else 0)
        yield g
        yield GaugeMetricFamily("weftnet_reachable_unsolicited", "1 if a dial-back reached this node unasked, "
                                "0 if not, -1 while unknown.",
                                value=-1 if r["reachable"] is None else int(bool(r["reachable"])))
        g = GaugeMetricFamily("weftnet_sessions_by_path", "Sessions by the kind of path in use: direct UDP, a TCP "
                              "link, or through relays.", labels=["path"])
        for k, n in r["sessions_by_path"].items():
            g.add_metric([k], n)
        yield g
        yield GaugeMetricFamily("weftnet_relays_used", "Relays this node is registered with.", value=r["relays_used"])
        c = CounterMetricFamily("weftnet_reach_events", "NAT traversal events (probes, punches and their "
                                "results, paths upgraded or dead, fallbacks to a relay, records, dial-backs).",
                                labels=["event"])
        for k, n in sorted(r["stats"].items()):
            c.add_metric([k], n)
        yield c
        rel = r.get("relay")
        if rel is None:
            return
        yield GaugeMetricFamily("weftnet_relay_sessions", "Nodes registered with this relay.", value=rel["registered"])
        yield GaugeMetricFamily("weftnet_relay_sessions_max", "Registrations this relay accepts at most "
                                "([relay] max_sessions).", value=rel["max_sessions"])
        yield CounterMetricFamily("weftnet_relay_registrations", "Registrations granted (a node's first lease).",
                                  value=rel["registrations"])
        yield CounterMetricFamily("weftnet_relay_forwarded_packets", "Packets this relay passed on.",
                                  value=rel["forwarded"])
        yield CounterMetricFamily("weftnet_relay_forwarded_bytes", "Bytes this relay passed on.",
                                  value=rel["forwarded_bytes"])
        c = CounterMetricFamily("weftnet_relay_refused", "What the relay refused, by limit: not registered, a "
                                "sender's or the total rate, no session to the next hop, session opens per minute, "
                                "registrations when full.", labels=["reason"])
        for k, n in rel["refused"].items():
            c.add_metric([k], n)
        yield c

    def _paths(self, core: "NodeCore", now: float) -> Iterator[Metric]:
        """Measured paths, detours, links and traffic classes (docs/paths.md): per path only for
        the peers that have per-peer series (``peer_series``), so the cardinality stays bounded."""
        v = opsview.paths_view(core, now, self._chosen)
        if v is None:
            return
        labels = ["peer", "path", "kind", "link"]
        up = GaugeMetricFamily("weftnet_path_up", "1 while the path answers its probes, 0 once declared down "
                               "(absent while not yet measured).", labels=labels)
        use = GaugeMetricFamily("weftnet_path_in_use", "1 for the path carrying the peer's traffic, 0 for the "
                                "others measured.", labels=labels)
        rtt = GaugeMetricFamily("weftnet_path_rtt_seconds", "Smoothed round-trip time of the path's probes.",
                                labels=labels)
        jit = GaugeMetricFamily("weftnet_path_jitter_seconds", "Mean deviation of the path's round-trip times.",
                                labels=labels)
        loss = GaugeMetricFamily("weftnet_path_loss_ratio", "Share of the path's recent probes unanswered.",
                                 labels=labels)
        for row in v["paths"]:
            lv = [self._peer_text(row["peer"]), row["path"], row["kind"], row["link"]]
            if row["state"] != "unknown":
                up.add_metric(lv, 1 if row["state"] == "up" else 0)
            use.add_metric(lv, 1 if row["in_use"] else 0)
            if row["rtt"] is not None:
                rtt.add_metric(lv, row["rtt"])
                jit.add_metric(lv, row["jitter"])
            loss.add_metric(lv, row["loss"])
        yield from (up, use, rtt, jit, loss)
        yield GaugeMetricFamily("weftnet_peers_on_detour", "Peers whose traffic takes a one-hop detour "
                                "because the direct path is down or worse.", value=v["on_detour"])
        c = CounterMetricFamily("weftnet_paths_events", "Path measurement and choice: probes, replies, losses, "
                                "paths up and down, switches, detours taken and left, steering.", labels=["event"])
        for k, n in sorted(v["stats"].items()):
            c.add_metric([k], n)
        yield c
        if v["links"]:
            g = GaugeMetricFamily("weftnet_link_paths", "Measured paths over the link, by state.",
                                  labels=["link", "state"])
            pk = CounterMetricFamily("weftnet_link_packets", "Datagrams over the underlay link, by direction.",
                                     labels=["link", "direction"])
            counters = self._link_counters()
            for link in v["links"]:
                g.add_metric([link["name"], "up"], link["paths_up"])
                g.add_metric([link["name"], "down"], link["paths_down"])
                lc = counters.get(link["name"])
                if lc is not None:
                    pk.add_metric([link["name"], "out"], lc.get("tx_packets", 0))
                    pk.add_metric([link["name"], "in"], lc.get("rx_packets", 0))
            yield g
            yield pk
        if v["classes"]:
            fams = {k: CounterMetricFamily(f"weftnet_class_{k}", text, labels=["class"]) for k, text in (
                ("packets", "Payloads of the traffic class steered."), ("bytes", "Bytes of the traffic class."),
                ("duplicated", "Payloads of the class sent on two links."),
                ("sla_unmet", "Payloads sent while no path met the class's SLA."))}
            for cl in v["classes"]:
                for k, fam in fams.items():
                    fam.add_metric([cl["name"]], cl.get(k, 0))
            yield from fams.values()

    def _peer_text(self, node_id: Any) -> str:
        lab = self._labels.get(node_id.raw)
        return lab[4][0] if lab is not None else node_id.text()

    def _link_counters(self) -> dict:
        d = self.driver
        if d is None:
            return {}
        if getattr(d, "underlay", None) is None:
            return {"main": {"tx_packets": d.sent, "rx_packets": d.received}}
        return d.underlay.status()

    def _subsystems(self, daemon: Any) -> Iterator[Metric]:
        """BGP, EVPN, VRFs and layer-2 networks: families only where the subsystem runs."""
        for fn in (self._bgp, self._evpn, self._vrfs, self._l2):
            try:
                yield from fn(daemon)
            except Exception:  # a subsystem's bug must not break the scrape (its families go missing)
                log.exception("metrics: %s failed", fn.__name__)

    def _bgp(self, daemon: Any) -> Iterator[Metric]:
        speakers = opsview.bgp_view(daemon)
        if not speakers:
            return
        lab = ["instance", "peer"]
        info = GaugeMetricFamily("weftnet_bgp_peer_info", "A configured BGP neighbour: constant 1.",
                                 labels=[*lab, "remote_as"])
        state = GaugeMetricFamily("weftnet_bgp_peer_state",
                                  "1 for the neighbour's current BGP state (RFC 4271 section 8), 0 for the others.",
                                  labels=[*lab, "state"])
        up = GaugeMetricFamily("weftnet_bgp_peer_uptime_seconds", "Seconds since the session was established.",
                               labels=lab)
        pfx = GaugeMetricFamily("weftnet_bgp_peer_prefixes",
                                "Prefixes received from (accepted) and sent to the neighbour.",
                                labels=[*lab, "direction"])
        msgs = CounterMetricFamily("weftnet_bgp_peer_messages",
                                   "BGP messages on the current session, by type (update, notification, other) and "
                                   "direction.", labels=[*lab, "type", "direction"])
        est = CounterMetricFamily("weftnet_bgp_peer_established",
                                  "Times the session reached Established.", labels=lab)
        routes = GaugeMetricFamily("weftnet_bgp_routes", "Prefixes in the speaker's Loc-RIB, by address family.",
                                   labels=["instance", "family"])
        events = CounterMetricFamily("weftnet_bgp_events", "The speaker's counters (updates, routes in, policy "
                                     "and loop drops, connections rejected, ...).", labels=["instance", "event"])
        for sp in speakers:
            inst = sp["instance"]
            for fam, n in sorted(sp["routes"].items()):
                routes.add_metric([inst, fam], n)
            for k, v in sorted(sp["stats"].items()):
                events.add_metric([inst, k], v)
            for p in sp["peers"]:
                lv = [inst, p["peer"]]
                info.add_metric([*lv, str(p["remote_as"])], 1)
                for s in opsview.BGP_STATES:
                    state.add_metric([*lv, s], 1 if p["state"] == s else 0)
                if p["uptime"] is not None:
                    up.add_metric(lv, p["uptime"])
                pfx.add_metric([*lv, "received"], p["prefixes_received"])
                pfx.add_metric([*lv, "sent"], p["prefixes_sent"])
                for d in ("in", "out"):
                    u, n, m = p[f"updates_{d}"], p[f"notifications_{d}"], p[f"messages_{d}"]
                    msgs.add_metric([*lv, "update", d], u)
                    msgs.add_metric([*lv, "notification", d], n)
                    msgs.add_metric([*lv, "other", d], max(0, m - u - n))
                est.add_metric(lv, p["established"])
        yield from (info, state, up, pfx, msgs, est, routes, events)

    def _evpn(self, daemon: Any) -> Iterator[Metric]:
        ev = opsview.evpn_view(daemon)
        if ev is None:
            return
        macs = GaugeMetricFamily("weftnet_evpn_macs", "MACs of the EVPN instance: local (learned on our bridge, "
                                 "advertised) and remote (learned from BGP type-2 routes).", labels=["vni", "origin"])
        ips = GaugeMetricFamily("weftnet_evpn_ips", "IP addresses bound to those MACs (MAC/IP routes).",
                                labels=["vni", "origin"])
        vteps = GaugeMetricFamily("weftnet_evpn_remote_vteps", "Remote VTEPs flooding for the VNI (type-3 routes).",
                                  labels=["vni"])
        prefixes = GaugeMetricFamily("weftnet_evpn_remote_prefixes", "IP prefixes learned (type-5 routes).",
                                     labels=["vni"])
        moves = CounterMetricFamily("weftnet_evpn_mac_moves", "MAC mobility events (RFC 7432 section 15).",
                                    labels=["vni"])
        limit = CounterMetricFamily("weftnet_evpn_mac_limit_drops", "MACs not learned: the instance's limit.",
                                    labels=["vni"])
        for v in ev["vnis"]:
            vni = str(v["vni"])
            for origin in ("local", "remote"):
                macs.add_metric([vni, origin], v[f"{origin}_macs"])
                ips.add_metric([vni, origin], v[f"{origin}_ips"])
            vteps.add_metric([vni], v["remote_vteps"])
            prefixes.add_metric([vni], v["remote_prefixes"])
            moves.add_metric([vni], v["mac_moves"])
            limit.add_metric([vni], v["mac_limit_drops"])
        routes = CounterMetricFamily("weftnet_evpn_routes_received",
                                     "EVPN routes received, by route type (ignored: no instance imports it).",
                                     labels=["type"])
        for k, n in sorted(ev["routes_in"].items()):
            routes.add_metric([k[len("type"):-len("_in")] if k.startswith("type") else k], n)
        dp = CounterMetricFamily("weftnet_evpn_dataplane_events",
                                 "What the EVPN dataplane did (FDB and flood entries, routes, netlink errors).",
                                 labels=["event"])
        for k, n in sorted(ev["dataplane"].items()):
            dp.add_metric([k], n)
        yield from (macs, ips, vteps, prefixes, moves, limit, routes, dp)

    def _vrfs(self, daemon: Any) -> Iterator[Metric]:
        v = opsview.vrf_view(daemon)
        if v is None:
            return
        routes = GaugeMetricFamily("weftnet_vrf_routes", "Forwarding entries of the VRF, by kind (local: a CE or "
                                   "static route; remote: another PE; vrf: leaked from a VRF here; unresolved).",
                                   labels=["vrf", "kind"])
        exported = GaugeMetricFamily("weftnet_vrf_exported_routes", "VPN routes this PE exports for the VRF.",
                                     labels=["vrf"])
        refused = CounterMetricFamily("weftnet_vrf_routes_refused", "Routes refused by the VRF's max_routes.",
                                      labels=["vrf"])
        b = CounterMetricFamily("weftnet_vrf_bytes", "IP bytes through the VRF's data plane, by direction (in: from "
                                "other PEs).", labels=["vrf", "direction"])
        pk = CounterMetricFamily("weftnet_vrf_packets", "IP packets through the VRF's data plane, by direction.",
                                 labels=["vrf", "direction"])
        drops = CounterMetricFamily("weftnet_vrf_drops", "Packets the VRF dropped, by reason.", labels=["vrf", "reason"])
        for r in v["vrfs"]:
            name = r["vrf"]
            for kind, n in r["routes"].items():
                routes.add_metric([name, kind], n)
            exported.add_metric([name], r["exported"])
            refused.add_metric([name], r["refused"])
            for d in ("in", "out"):
                b.add_metric([name, d], r[f"bytes_{d}"])
                pk.add_metric([name, d], r[f"packets_{d}"])
            for reason, n in sorted(r["drops"].items()):
                drops.add_metric([name, reason], n)
        yield from (routes, exported, refused, b, pk, drops)
        yield GaugeMetricFamily("weftnet_l3vpn_vpn_routes", "VPN routes from other PEs this PE holds.",
                                value=v["vpn_routes"])
        yield GaugeMetricFamily("weftnet_l3vpn_labels_in_use", "MPLS labels allocated by this PE.",
                                value=v["labels_in_use"])
        c = CounterMetricFamily("weftnet_l3vpn_drops", "Labelled payloads dropped before any VRF, by reason.",
                                labels=["reason"])
        for reason, n in sorted(v["drops"].items()):
            c.add_metric([reason], n)
        yield c
        c = CounterMetricFamily("weftnet_l3vpn_events", "The PE's counters (routes from CEs and other PEs, kernel "
                                "route batches, refusals).", labels=["event"])
        for k, n in sorted(v["stats"].items()):
            if isinstance(n, int):
                c.add_metric([k], n)
        yield c

    def _l2(self, daemon: Any) -> Iterator[Metric]:
        nets = opsview.l2_view(daemon)
        if not nets:
            return
        entries = GaugeMetricFamily("weftnet_l2_table_entries", "Entries of the network's switch tables: MACs "
                                    "learned behind members, IP-to-MAC bindings snooped.", labels=["network", "table"])
        tev = CounterMetricFamily("weftnet_l2_table_events", "Switch table events (learned, moved, aged, refused "
                                  "by the per-member quota or a full table, removed).",
                                  labels=["network", "table", "event"])
        frames = CounterMetricFamily("weftnet_l2_frames", "Ethernet frames through the network, by direction.",
                                     labels=["network", "direction"])
        floods = CounterMetricFamily("weftnet_l2_floods", "Frames flooded to all members (out) or received as "
                                     "floods (in).", labels=["network", "direction"])
        limited = CounterMetricFamily("weftnet_l2_floods_rate_limited",
                                      "Floods dropped by the flood rate limit (ours and each member's).",
                                      labels=["network"])
        events = CounterMetricFamily("weftnet_l2_events", "Other switch events (flood copies, unknown unicast, "
                                     "ARP/ND answered on the host).", labels=["network", "event"])
        for n in nets:
            name = n["network"]
            entries.add_metric([name, "mac"], n["macs"])
            entries.add_metric([name, "neighbor"], n["neighbors"])
            for table in ("mac", "neighbor"):
                st = n[f"{table}_table"]
                for e in opsview.L2_TABLE_EVENTS:
                    tev.add_metric([name, table, e], st.get(e, 0))
            frames.add_metric([name, "in"], n["frames_in"])
            frames.add_metric([name, "out"], n["frames_out"])
            floods.add_metric([name, "in"], n["floods_in"])
            floods.add_metric([name, "out"], n["floods_out"])
            limited.add_metric([name], n["floods_rate_limited"])
            for k, v in n["events"].items():
                events.add_metric([name, k], v)
        yield from (entries, tev, frames, floods, limited, events)

    def _extra(self) -> Iterator[Metric]:
        if not self.extra:
            return
        c = CounterMetricFamily("weftnet_subsystem_events",
                                "Counters of subsystems without metrics of their own, by subsystem and counter.",
                                labels=["subsystem", "counter"])
        for name, fn in sorted(self.extra.items()):
            try:
                stats = fn() or {}
            except Exception:  # a subsystem's bug must not break the scrape
                continue
            for key, value in sorted(stats.items()):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    c.add_metric([name, str(key)], value)
        yield c


class _Lines:
    """A family whose samples are kept as ready label strings: the per-peer series, which are
    most of a scrape's lines, are rendered without building a label dict per sample."""

    __slots__ = ("name", "type", "documentation", "labelnames", "rows")

    def __init__(self, name: str, typ: str, documentation: str, labelnames: tuple[str, ...]):
        self.name, self.type, self.documentation, self.labelnames = name, typ, documentation, labelnames
        self.rows: list[tuple[str, float, tuple[str, ...]]] = []  # (label string, value, label values)

    def to_metric(self) -> Metric:
        cls = CounterMetricFamily if self.type == "counter" else GaugeMetricFamily
        m = cls(self.name, self.documentation, labels=list(self.labelnames))
        for _text, value, values in self.rows:
            m.add_metric(list(values), value)
        return m


def _escape(value: str) -> str:
    if "\\" in value or "\"" in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\"", "\\\"")
    return value


def _number(v: float) -> str:
    if type(v) is int:
        return str(v)
    return floatToGoString(v)


def render_text(families: list) -> str:
    """The text exposition format 0.0.4 of ``families`` (prometheus_client Metrics and :class:`_Lines`).

    What prometheus_client's ``generate_latest`` writes for the same families, without its
    per-sample validation of names that are constants here: a scrape of 1,000 peers spends
    most of its time in that loop otherwise (bench/results/metrics.md).
    """
    out: list[str] = []
    add = out.append
    for m in families:
        name = m.name + "_total" if m.type == "counter" else m.name
        doc = m.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        add(f"# HELP {name} {doc}\n# TYPE {name} {m.type}\n")
        if isinstance(m, _Lines):
            out.extend([f"{name}{{{text}}} {_number(v)}\n" for text, v, _values in m.rows])
            continue
        for s in m.samples:
            if s.labels:
                labels = ",".join([f'{k}="{_escape(v)}"' for k, v in s.labels.items()])
                add(f"{s.name}{{{labels}}} {_number(s.value)}\n")
            else:
                add(f"{s.name} {_number(s.value)}\n")
    return "".join(out)


class Exposition:
    """What ``/metrics`` serves: the node's families (:meth:`NodeCollector.render`), then the
    process, platform and garbage-collector families of prometheus_client."""

    def __init__(self, collector: NodeCollector):
        self.collector = collector
        self.process = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.process)
        PlatformCollector(registry=self.process)
        GCCollector(registry=self.process)

    def __call__(self) -> bytes:
        return self.collector.render().encode() + generate_latest(self.process)


def make_registry(collector: NodeCollector) -> CollectorRegistry:
    """A registry with the node's collector and the process, platform and GC collectors."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    GCCollector(registry=reg)
    return reg


def exposition(registry: CollectorRegistry) -> bytes:
    """The text exposition format (version 0.0.4) of everything in ``registry``."""
    return generate_latest(registry)
