"""Bounded read-only views of the BGP, EVPN, L3VPN, layer-2 and hardening state, for operators.

The Prometheus collector (runtime/metrics.py) and the dashboard
(runtime/web/dashboard.py) read the subsystems through these functions, so a
number on the page and the metric of the same name always agree. Each view
reads counters the subsystems keep anyway (their ``stats`` dicts and table
sizes): O(neighbours + VNIs + VRFs + networks), plus one pass over each VRF's
forwarding table to count its routes by kind. Nothing here changes state.

Label values are bounded: BGP neighbours, VNIs, VRFs and networks come from
the config; states, kinds, directions and reasons from fixed sets in the code
(a reason a subsystem invents at run time is reported under ``other``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["paths_view", "bgp_view", "evpn_view", "vrf_view", "l2_view", "hardening_view", "reach_view", "peer_reach_reader",
           "BGP_STATES", "STORE_REFUSALS", "PATH_KINDS", "NAT_CLASSES"]

#: RFC 4271 section 8 states, as the label values of weftnet_bgp_peer_state.
BGP_STATES = ("idle", "connect", "active", "opensent", "openconfirm", "established")
#: The DHT's quota refusals (core/dht/engine.py ``_over_quota``) -> a label value.
STORE_REFUSALS = {"quota of this peer reached": "peer-quota", "quota of this address prefix reached": "prefix-quota"}
#: Layer-2 counters (core/vpn/l2network.py ``L2Network.l2``) other than frames and floods.
L2_EVENTS = ("flood_copies", "unknown_unicast", "arp_suppressed", "nd_suppressed", "arp_local", "nd_local")
#: Path kinds of core/reach/paths.py and NAT classes of core/reach/messages.py, as label values.
PATH_KINDS = ("direct", "tcp", "relay")
NAT_CLASSES = ("unknown", "public", "endpoint-independent", "endpoint-dependent", "udp-blocked")
#: The relay's refusal counters (core/reach/relay.py ``RelayService.stats``) -> a label value.
RELAY_REFUSALS = {"refused_not_registered": "not-registered", "refused_peer_rate": "peer-rate",
                  "refused_total_rate": "total-rate", "refused_no_session": "no-session",
                  "refused_open_rate": "open-rate", "registrations_refused": "relay-full"}
#: Per-table counters of the layer-2 aging tables (core/vpn/l2switch.py).
L2_TABLE_EVENTS = ("learned", "moved", "aged", "quota", "full", "removed")


def _speakers(daemon: Any) -> list[tuple[str, Any]]:
    """(instance, BgpService): the node's own speaker ("global") and each VRF's CE speaker."""
    out = []
    if getattr(daemon, "bgp", None) is not None:
        out.append(("global", daemon.bgp))
    l3 = getattr(daemon, "l3vpn", None)
    for name, svc in sorted(getattr(l3, "ce_bgp", {}).items()):
        out.append((f"vrf:{name}", svc))
    return out


def bgp_view(daemon: Any) -> list[dict]:
    """One row per BGP speaker: its neighbours with state, uptime, prefixes and message counters."""
    out = []
    for instance, svc in _speakers(daemon):
        sp = svc.speaker
        now = svc.now()
        peers = []
        for key, p in sp.peers.items():
            s = p.established or p.session
            st = s.stats
            peers.append({
                "peer": key, "remote_as": p.cfg.remote_as, "state": s.state.value.lower(),
                "uptime": None if p.up_since is None or p.established is None else round(now - p.up_since, 1),
                "prefixes_received": p.prefixes_in,
                "prefixes_sent": sum(len(t) for t in p.adj_out.values()),
                "updates_in": st.get("updates_in", 0), "updates_out": st.get("updates_out", 0),
                "notifications_in": st.get("notifications_in", 0), "notifications_out": st.get("notifications_out", 0),
                "messages_in": st.get("messages_in", 0), "messages_out": st.get("messages_out", 0),
                "established": st.get("established", 0), "last_error": s.last_error,
            })
        out.append({"instance": instance, "asn": sp.cfg.asn,
                    "routes": {str(f): sp.rib.count(f) for f in sp.cfg.families},
                    "peers": peers, "stats": dict(sp.stats)})
    return out


def evpn_view(daemon: Any) -> dict | None:
    """EVPN instances (per VNI: MACs and IPs learned locally and from BGP) and the dataplane's counters."""
    bgp = getattr(daemon, "bgp", None)
    evpn = getattr(bgp, "evpn", None)
    if evpn is None:
        return None
    vnis = []
    for vni, inst in sorted(evpn.instances.items()):
        local_ips = sum(sum(1 for ip in ips if ip is not None) for ips in inst.local_macs.values())
        remote_ips = len({c.ip for cands in inst.remote.values() for c in cands.values() if c.ip is not None})
        vnis.append({"vni": vni, "local_macs": len(inst.local_macs), "remote_macs": len(inst.remote),
                     "local_ips": local_ips, "remote_ips": remote_ips, "remote_vteps": len(inst.bum),
                     "remote_prefixes": len(inst.prefixes), "installed_macs": len(inst.installed),
                     "mac_moves": inst.stats.get("mac_moves", 0),
                     "mac_limit_drops": inst.stats.get("mac_limit_drops", 0)})
    dp = getattr(bgp, "dataplane", None)
    dp_stats = {k: v for k, v in dict(getattr(dp, "stats", {}) or {}).items() if isinstance(v, int)}
    return {"vnis": vnis, "routes_in": dict(evpn.stats), "dataplane": dp_stats}


def vrf_view(daemon: Any) -> dict | None:
    """VRFs: routes by kind, traffic, drops; the PE's label and route counts."""
    plane = getattr(daemon.core, "l3vpn", None)
    if plane is None or not plane.vrfs:
        return None
    exported: dict[bytes, int] = {}
    for rd, _p in plane.exports:
        exported[rd] = exported.get(rd, 0) + 1
    vrfs = []
    for name in sorted(plane.vrfs):
        vrf = plane.vrfs[name]
        kinds = {"local": 0, "remote": 0, "vrf": 0, "unresolved": 0}
        for entry in vrf.fib.values():
            kinds[entry.kind] = kinds.get(entry.kind, 0) + 1
        c = vrf.counters
        vrfs.append({"vrf": name, "prefixes": vrf.prefixes(), "routes": kinds, "exported": exported.get(vrf.rd, 0),
                     "refused": vrf.refused, "packets_in": c.packets_in, "packets_out": c.packets_out,
                     "bytes_in": c.bytes_in, "bytes_out": c.bytes_out, "drops": dict(c.drops)})
    svc = getattr(daemon, "l3vpn", None)
    return {"vrfs": vrfs, "vpn_routes": len(plane._vpn), "labels_in_use": len(plane.labels),
            "drops": dict(plane.drops), "stats": {**plane.stats, **dict(getattr(svc, "stats", {}) or {})}}


def l2_view(daemon: Any) -> list[dict]:
    """Layer-2 networks: MAC and neighbour tables, frames, floods and floods refused by the rate limit."""
    out = []
    for net in daemon.core.vpn.networks():
        l2 = getattr(net, "l2", None)
        if not isinstance(l2, dict):
            continue  # a layer-3 network
        out.append({"network": net.descriptor.name,
                    "macs": len(net.macs), "neighbors": len(net.neighbors),
                    "mac_table": dict(net.macs.stats), "neighbor_table": dict(net.neighbors.stats),
                    "frames_in": l2.get("frames_in", 0), "frames_out": l2.get("frames_out", 0),
                    "floods_out": l2.get("flooded", 0), "floods_in": l2.get("floods_in", 0),
                    "floods_rate_limited": net.drops.get("flood-rate", 0),
                    "events": {k: l2.get(k, 0) for k in L2_EVENTS}})
    return out


def hardening_view(core: Any) -> dict:
    """What the protections refused: handshakes, half-open peers, ID puzzles, store quotas, forged texts."""
    t, dht = core.transport, core.dht
    st = t.stats
    refused = {"peer-quota": 0, "prefix-quota": 0, "other": 0}
    for reason, n in dht.reject_reasons.items():
        refused[STORE_REFUSALS.get(reason, "other")] += n
    return {
        "handshakes_rate_limited": st.get("handshakes_rate_limited", 0),
        "cookies_sent": st.get("cookies_sent", 0),
        "half_open_peers": len(getattr(t, "_half_open", ())),
        "half_open": {"admitted": st.get("half_open", 0), "confirmed": st.get("confirmed", 0),
                      "expired": st.get("half_open_expired", 0), "held": st.get("held_until_confirmed", 0)},
        "peers_evicted": st.get("peers_evicted", 0), "peers_forgotten": st.get("peers_forgotten", 0),
        "contacts_refused": {"id-puzzle": dht.table.puzzle_refusals, "prefix-limit": dht.table.prefix_refusals},
        "contacts_evicted": dht.table.evictions,
        "store_refused": refused,
        "dht_held_unverified": dht.stats["held_unverified"],
        "dht_hints_deferred": dht.stats["hints_deferred"],
        "dht_hint_fallbacks_dropped": dht.stats["hint_fallbacks_dropped"],
        "texts_dropped": {"forged": core.texts_dropped.get("forged", 0),
                          "unsigned": core.texts_dropped.get("unsigned", 0)},
        "internal_errors": core.internal_errors,
    }


def reach_view(core: Any, now: float) -> dict | None:
    """NAT traversal and relaying (docs/reach.md): our NAT class, sessions by path kind, the relays we
    use, and, on a relay, what it forwarded and refused."""
    reach = getattr(core, "reach", None)
    if reach is None:
        return None
    from weftnet.core.reach.messages import NAT_NAMES
    from weftnet.core.reach.paths import path_kind

    by_kind = dict.fromkeys(PATH_KINDS, 0)
    for _node, target, _srtt in core.transport.sessions():
        by_kind[path_kind(target)] += 1
    out: dict[str, Any] = {
        "nat": NAT_NAMES.get(reach.nat.classify(now), "unknown"), "reachable": reach.nat.reachable,
        "sessions_by_path": by_kind, "relays_used": len(reach._leases), "stats": dict(reach.stats),
    }
    relay = getattr(reach, "relay", None)
    if relay is not None:
        st = relay.stats
        refused = dict.fromkeys(RELAY_REFUSALS.values(), 0)
        for key, label in RELAY_REFUSALS.items():
            refused[label] += st.get(key, 0)
        out["relay"] = {"registered": len(relay.registered(now)), "max_sessions": relay.config.max_sessions,
                        "forwarded": st.get("forwarded", 0), "forwarded_bytes": st.get("forwarded_bytes", 0),
                        "registrations": st.get("registered", 0), "expired": st.get("expired", 0),
                        "opened_for_peers": st.get("opened_for_peers", 0), "refused": refused,
                        "pairs": len(relay.by_pair)}
    return out


def peer_reach_reader(core: Any):
    """A function node ID -> (path kind in use, the peer's NAT class from its endpoint record, or
    "unknown"), for one scrape: the lookups are bound once, not per peer."""
    from weftnet.core.reach.messages import NAT_NAMES
    from weftnet.core.reach.paths import path_kind

    cache, current = core.reach._cache, core.transport.current_path

    def read(node_id: Any) -> tuple[str, str]:
        cached = cache.get(node_id)
        return path_kind(current(node_id)), "unknown" if cached is None else NAT_NAMES.get(cached[0].nat, "unknown")
    return read


def paths_view(core: Any, now: float, peers: Any) -> dict | None:
    """Measured paths (docs/paths.md) of ``peers`` (node IDs: the caller bounds them), the
    engine's counters, its links, traffic classes and detours."""
    engine = getattr(core, "paths", None)
    if engine is None:
        return None
    from weftnet.core.paths.engine import describe_target
    from weftnet.core.reach.paths import path_kind

    current_path = core.transport.current_path
    rows = []
    table = engine._peers
    for node_id in peers:
        p = table.get(node_id)
        if p is None:
            continue
        current = current_path(node_id)
        for target, m in p.meters.items():
            rows.append({"peer": node_id, "path": describe_target(target), "kind": path_kind(target),
                         "link": engine._link_info(node_id, target)[0], "in_use": target == current,
                         "state": m.state, "rtt": m.srtt, "jitter": m.jitter if m.srtt is not None else None,
                         "loss": m.loss})
    st = engine.status(now) if engine.links or engine.classes else None
    return {
        "paths": rows,
        "stats": dict(engine.stats),
        "on_detour": sum(1 for p in table.values() if p.on_detour),
        "links": [] if st is None else st["links"],
        "classes": [] if st is None else st["classes"],
    }
