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
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

if TYPE_CHECKING:
    from weftnet.core.node import NodeCore
    from weftnet.runtime.driver import UdpDriver

__all__ = ["NodeCollector", "make_registry", "exposition", "CONTENT_TYPE"]

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
        self._names: dict[bytes, str] = {}  # node ID -> its text form (a SHA-256 and base32 each)
        #: How long the previous scrape's collection took on the event loop (seconds).
        self.last_duration = 0.0

    def describe(self) -> list:
        return []  # families are dynamic; registering must not trigger a collection

    def collect(self) -> Iterator[Metric]:
        t0 = time.perf_counter()
        now = self.clock()
        core = self.core
        out: list[Metric] = [
            GaugeMetricFamily("weftnet_metrics_collect_seconds",
                              "How long the previous scrape took to collect these metrics.", value=self.last_duration)]
        out += self._node(core, now)
        out += self._transport(core, now)
        out += self._udp()
        out += self._dht(core)
        out += self._vpn(core)
        out += self._overlay(core)
        out += self._extra()
        self.last_duration = time.perf_counter() - t0
        return iter(out)

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
        pb = CounterMetricFamily("weftnet_peer_bytes", "Payload bytes through this peer's session, by direction.",
                                 labels=["peer", "direction"])
        pp = CounterMetricFamily("weftnet_peer_packets", "Payloads through this peer's session, by direction.",
                                 labels=["peer", "direction"])
        rtt = GaugeMetricFamily("weftnet_peer_rtt_seconds", "Smoothed round-trip time to this peer (RFC 6298).",
                                labels=["peer"])
        names = self._names
        if len(names) > 4 * max(self.peer_series, 1024):
            names.clear()  # bounded: peers come and go
        for node_id, bytes_in, bytes_out, packets_in, packets_out, srtt in chosen:
            peer = names.get(node_id.raw)
            if peer is None:
                peer = names[node_id.raw] = node_id.text()
            pb.add_metric([peer, "in"], bytes_in)
            pb.add_metric([peer, "out"], bytes_out)
            pp.add_metric([peer, "in"], packets_in)
            pp.add_metric([peer, "out"], packets_out)
            if srtt is not None:
                rtt.add_metric([peer], srtt)
        yield pb
        yield pp
        yield rtt
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
