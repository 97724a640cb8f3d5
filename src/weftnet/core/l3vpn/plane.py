"""The provider edge: every VRF of this node, their VPN routes, labels and data plane, sans-IO.

Theory of operation (docs/l3vpn.md)
-----------------------------------
Control plane. Routes come in three ways, each an ordinary method call:

* :meth:`set_local_route` / :meth:`remove_local_route` / :meth:`withdraw_source`:
  a VRF's own customer prefixes (static configuration, or a CE's eBGP
  session: when the session drops, all its routes go at once);
* :meth:`update_vpn`: VPN-IPv4/IPv6 routes of other PEs (the BGP speaker's
  best path per RD and prefix), announced and withdrawn;
* this PE's own exports, which every other local VRF may import as well.

Each VRF's best local route for a prefix is exported (:attr:`exports`) with
the VRF's RD, its export targets (plus export-map additions) and a label: the
VRF's label, or one per prefix. Every VPN route is offered to the VRFs whose
import targets it carries (an index by target keeps that cheap) and imported
where the policy agrees; the next hop is resolved to a remote PE's node ID
through the PE map (BGP next hop -> node ID), or stays *unresolved* (shown,
never forwarded to). Changes come out as three drained maps: the VPN routes
to advertise or withdraw (:meth:`export_changes`), the kernel routes of each
VRF's namespace (:meth:`kernel_changes`), and the VRF table changes a CE
should hear about (:meth:`vrf_changes`).

Data plane. :meth:`outbound` takes IP packets read from a VRF's TUN, finds
the longest matching prefix in that VRF only, and sends each to the remote
PE inside the session as an :class:`~weftnet.core.l3vpn.messages.MplsPacket`
(or :class:`MplsChunk` pieces for an offloaded superpacket) with the label
that PE advertised. :meth:`on_payload` takes them from the transport: the
sender must be a known PE, the label must be one we allocated, and the
destination must be one of the label's VRF's own site routes; then the
packet goes to that VRF's TUN (:attr:`tun_out`). Two customers with the
same addresses never meet: the lookup only ever sees one VRF's table, and
the label picks the VRF at the far end.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from weftnet.core.identity import NodeId
from weftnet.core.l3vpn.ids import format_rd
from weftnet.core.l3vpn.labels import LabelAllocator
from weftnet.core.l3vpn.messages import CHUNK_HEADER, CHUNK_SIZE, MAX_CHUNKS, MPLS_HEADER, MplsChunk, MplsPacket
from weftnet.core.l3vpn.vrf import (
    LEAK, LOCAL, REMOTE, UNRESOLVED, Candidate, FibEntry, LocalRoute, Vrf, VrfConfig, VpnRoute,
)
from weftnet.core.session.reassembly import REFUSED, Reassembly
from weftnet.core.vpn.network import GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, VNET_HDR, VNET_HDR_LEN, VNET_NONE, offload_header_ok
from weftnet.core.wire import VERSION
from weftnet.errors import NetworkError

__all__ = ["L3vpnPlane", "KernelRoute", "L3VPN_TYPES"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
L3VPN_TYPES = frozenset({MplsPacket.TYPE, MplsChunk.TYPE})
_PACKET, _CHUNK = MplsPacket.TYPE, MplsChunk.TYPE
REASSEMBLY_TIMEOUT = 2.0
MAX_REASSEMBLIES = 256
MAX_REASSEMBLED = VNET_HDR_LEN + 65_535
_OFFLOADS = (GSO_NONE, GSO_TCPV4, GSO_TCPV6)


@dataclass(frozen=True, slots=True)
class KernelRoute:
    """What a VRF namespace's routing table holds for one prefix: into the TUN, or via a CE."""

    tun: bool = False
    via: str = ""
    dev: str = ""

    def to_dict(self) -> dict:
        return {"tun": self.tun, "via": self.via, "dev": self.dev}


def _kernel_route(e: FibEntry | None) -> KernelRoute | None:
    if e is None or e.kind == UNRESOLVED:
        return None
    if e.kind == LOCAL:
        r = e.local
        if not r.nexthop and not r.dev:
            return None  # a prefix the namespace already reaches (e.g. a connected subnet)
        return KernelRoute(False, r.nexthop, r.dev)
    return KernelRoute(True)


def _destination(packet: bytes) -> tuple[bytes, int] | None:
    """(destination address, total length) of an IP packet, or None if it is not one."""
    n = len(packet)
    if n >= 20 and packet[0] >> 4 == 4:
        total = packet[2] << 8 | packet[3]
        if (packet[0] & 0xF) < 5 or total > n or total < 20:
            return None
        return packet[16:20], total
    if n >= 40 and packet[0] >> 4 == 6:
        total = 40 + (packet[4] << 8 | packet[5])
        if total > n:
            return None
        return packet[24:40], total
    return None


class L3vpnPlane:
    """All VRFs of one PE (see the module docstring)."""

    #: VPN routes held from other PEs at most (beyond: refused and counted).
    MAX_VPN_ROUTES = 1_000_000

    def __init__(self, send: Callable[[NodeId, tuple[bytes, ...], float], None], tun_out: list,
                 *, nexthop: str = "", labels: LabelAllocator | None = None, max_vpn_routes: int = MAX_VPN_ROUTES):
        self._send = send
        #: (VRF key, virtio_net_hdr or b"", IP packet) for the driver to write to that VRF's TUN.
        self.tun_out = tun_out
        self.nexthop = nexthop
        self.labels = labels or LabelAllocator()
        self.max_vpn_routes = max_vpn_routes
        self.vrfs: dict[str, Vrf] = {}
        self._by_key: dict[bytes, Vrf] = {}
        self._rt_index: dict[bytes, list[Vrf]] = {}
        self._labels: dict[int, tuple[Vrf, IPNetwork | None]] = {}  # label -> VRF (and prefix, per-prefix)
        self._pes: dict[str, bytes] = {}  # BGP next hop -> PE node ID
        self._pe_nodes: dict[bytes, str] = {}  # trusted PE node ID -> its text (counters' key)
        self._overlay_pes: set[bytes] = set()
        self._names: dict[bytes, tuple[NodeId, str]] = {}  # node ID -> (NodeId, text), made once
        self._vpn: dict[tuple[bytes, IPNetwork], VpnRoute] = {}  # other PEs' routes
        self.exports: dict[tuple[bytes, IPNetwork], VpnRoute] = {}  # ours
        self._placed: dict[tuple[str, bytes, IPNetwork], list[Vrf]] = {}
        self._export_changes: dict[tuple[bytes, IPNetwork], VpnRoute | None] = {}
        self._kernel_changes: dict[tuple[str, IPNetwork], KernelRoute | None] = {}
        self._vrf_changes: dict[tuple[str, IPNetwork], FibEntry | None] = {}
        self._reassembly = Reassembly(MAX_REASSEMBLIES, REASSEMBLY_TIMEOUT, MAX_REASSEMBLED,
                                      lambda key: self._count("reassembly-timeout"))
        self._next_packet_id = 0
        self.stats = dict.fromkeys(("vpn_routes_refused", "own_routes_ignored", "labels_exhausted"), 0)
        #: Payloads dropped before any VRF was known, by reason.
        self.drops: dict[str, int] = {}

    # -- configuration ----------------------------------------------------------
    def add_vrf(self, config: VrfConfig) -> Vrf:
        if config.name in self.vrfs:
            raise NetworkError(f"VRF {config.name!r} is configured twice")
        for other in self.vrfs.values():
            if other.rd == config.rd:
                raise NetworkError(f"VRFs {other.name!r} and {config.name!r} have the same RD {format_rd(config.rd)}")
        if config.label:
            self.labels.reserve(config.label)
            label = config.label
        else:
            label = self.labels.allocate()
            if label is None:
                raise NetworkError(f"VRF {config.name!r}: the label range is exhausted")
        vrf = Vrf(config, label)
        self.vrfs[vrf.name] = vrf
        self._by_key[vrf.key] = vrf
        self._labels[label] = (vrf, None)
        for rt in sorted(config.policy.watched_targets()):
            self._rt_index.setdefault(rt, []).append(vrf)
        for route in list(self.exports.values()):
            self._place_in("local", route, [vrf])
        for route in list(self._vpn.values()):
            self._place_in("bgp", route, [vrf])
        return vrf

    def set_pes(self, pes: dict[str, NodeId | bytes]) -> None:
        """The PE map: BGP next hop -> node ID of the weftnet PE behind it. Routes re-resolve."""
        self._pes = {str(ipaddress.ip_address(k)): (v.raw if isinstance(v, NodeId) else bytes(v)) for k, v in pes.items()}
        self._pe_nodes = {raw: NodeId(raw).text() for raw in set(self._pes.values()) | self._overlay_pes}
        for route in list(self._vpn.values()):
            self._unplace("bgp", route)
            self._place("bgp", route)

    def add_overlay_pe(self, node: NodeId | bytes) -> None:
        """Trust a PE known by node ID (a BGP peer inside the overlay) for labelled packets."""
        raw = node.raw if isinstance(node, NodeId) else bytes(node)
        self._overlay_pes.add(raw)
        self._pe_nodes[raw] = NodeId(raw).text()

    def is_pe(self, node: NodeId | bytes) -> bool:
        return (node.raw if isinstance(node, NodeId) else node) in self._pe_nodes

    # -- local routes --------------------------------------------------------------
    def set_local_route(self, vrf_name: str, route: LocalRoute) -> bool:
        """Add or replace a site route; False if the VRF's prefix limit refused it."""
        vrf = self._vrf(vrf_name)
        if not vrf.room_for(route.prefix, local=True):
            vrf.refused += 1
            return False
        vrf.local.setdefault(route.prefix, {})[route.source] = route
        self._recompute(vrf, route.prefix)
        return True

    def remove_local_route(self, vrf_name: str, prefix: IPNetwork, source: str) -> None:
        vrf = self._vrf(vrf_name)
        routes = vrf.local.get(prefix)
        if routes and routes.pop(source, None) is not None:
            if not routes:
                del vrf.local[prefix]
            self._recompute(vrf, prefix)

    def withdraw_source(self, vrf_name: str, source: str) -> int:
        """Remove every route ``source`` (e.g. a CE whose session dropped) gave the VRF; returns how many."""
        vrf = self._vrf(vrf_name)
        gone = [p for p, routes in vrf.local.items() if source in routes]
        for p in gone:
            self.remove_local_route(vrf_name, p, source)
        return len(gone)

    def _vrf(self, name: str) -> Vrf:
        try:
            return self.vrfs[name]
        except KeyError:
            raise NetworkError(f"no VRF named {name!r}") from None

    # -- VPN routes from other PEs ---------------------------------------------------
    def update_vpn(self, announce: Iterable[VpnRoute] = (), withdraw: Iterable[tuple[bytes, IPNetwork]] = ()) -> None:
        """Other PEs' VPN routes: the best path per (RD, prefix), new or replaced, and withdrawals."""
        for key in withdraw:
            old = self._vpn.pop(key, None)
            if old is not None:
                self._unplace("bgp", old)
        for route in announce:
            if self.nexthop and route.nexthop == self.nexthop and route.node is None:
                self.stats["own_routes_ignored"] += 1  # our own export, reflected back
                continue
            old = self._vpn.get(route.key)
            if old is None and len(self._vpn) >= self.max_vpn_routes:
                self.stats["vpn_routes_refused"] += 1
                continue
            if old == route:
                continue
            if old is not None:
                self._unplace("bgp", old)
            self._vpn[route.key] = route
            self._place("bgp", route)

    def vpn_routes(self) -> list[VpnRoute]:
        """Every VPN route held: other PEs' and our own exports."""
        return list(self._vpn.values()) + list(self.exports.values())

    def _candidates_for(self, route: VpnRoute) -> list[Vrf]:
        seen: dict[str, Vrf] = {}
        for rt in route.rts:
            for vrf in self._rt_index.get(rt, ()):
                seen[vrf.name] = vrf
        return [seen[n] for n in sorted(seen)]

    def _place(self, origin: str, route: VpnRoute) -> None:
        self._place_in(origin, route, self._candidates_for(route))

    def _place_in(self, origin: str, route: VpnRoute, vrfs: list[Vrf]) -> None:
        if origin == "local":
            cand = Candidate(route, LEAK, vrf=route.origin_vrf)
        else:
            node = route.node if route.node is not None else self._pes.get(route.nexthop)
            if node is None:
                cand = Candidate(route, UNRESOLVED)
            else:
                named = self._names.get(node)
                if named is None:
                    nid = NodeId(node)
                    named = self._names[node] = (nid, nid.text())
                cand = Candidate(route, REMOTE, node=node, node_id=named[0], peer=named[1])
        placed = self._placed.setdefault((origin, route.rd, route.prefix), [])
        for vrf in vrfs:
            if (origin == "local" and vrf.name == route.origin_vrf) or not vrf.policy.imports(route.prefix, route.rts):
                continue
            if not vrf.room_for(route.prefix):
                vrf.refused += 1
                continue
            vrf.imported.setdefault(route.prefix, {})[(origin, route.rd)] = cand
            placed.append(vrf)
            self._recompute(vrf, route.prefix)
        if not placed:
            del self._placed[(origin, route.rd, route.prefix)]

    def _unplace(self, origin: str, route: VpnRoute) -> None:
        for vrf in self._placed.pop((origin, route.rd, route.prefix), ()):
            cands = vrf.imported.get(route.prefix)
            if cands and cands.pop((origin, route.rd), None) is not None:
                if not cands:
                    del vrf.imported[route.prefix]
                self._recompute(vrf, route.prefix)

    # -- selection, export, kernel ------------------------------------------------------
    def _recompute(self, vrf: Vrf, prefix: IPNetwork) -> None:
        vrf.note(prefix)
        new = vrf.select(prefix)
        old = vrf.fib.get(prefix)
        if new is None:
            if old is not None:
                vrf.fib.remove(prefix)
                self._kernel_changes[(vrf.name, prefix)] = None
                self._vrf_changes[(vrf.name, prefix)] = None
        else:
            vrf.fib.set(prefix, new)
            if _kernel_route(new) != _kernel_route(old):
                self._kernel_changes[(vrf.name, prefix)] = _kernel_route(new)
            if old is None or (new.local, new.candidate) != (old.local, old.candidate):
                self._vrf_changes[(vrf.name, prefix)] = new
        self._export(vrf, prefix)

    def _prefix_label(self, vrf: Vrf, prefix: IPNetwork) -> int:
        old = self.exports.get((vrf.rd, prefix))
        if old is not None and self._labels.get(old.label, (None, None))[1] == prefix:
            return old.label
        label = self.labels.allocate()
        if label is None:
            self.stats["labels_exhausted"] += 1
            return vrf.label  # fall back to the VRF's label: still correct, only coarser
        self._labels[label] = (vrf, prefix)
        return label

    def _export(self, vrf: Vrf, prefix: IPNetwork) -> None:
        key = (vrf.rd, prefix)
        old = self.exports.get(key)
        local = vrf.best_local(prefix)
        if local is None:
            if old is not None:
                del self.exports[key]
                self._free_label(old, vrf)
                self._unplace("local", old)
                self._export_changes[key] = None
            return
        label = self._prefix_label(vrf, prefix) if vrf.config.label_mode == "per-prefix" else vrf.label
        route = VpnRoute(vrf.rd, prefix, label, vrf.policy.export_targets(prefix), self.nexthop, "local",
                         local.pref, local.attrs, None, vrf.name)
        if route == old:
            return
        if old is not None:
            self._unplace("local", old)
        self.exports[key] = route
        self._export_changes[key] = route
        self._place("local", route)

    def _free_label(self, route: VpnRoute, vrf: Vrf) -> None:
        if route.label != vrf.label and self._labels.get(route.label, (None, None))[1] == route.prefix:
            del self._labels[route.label]
            self.labels.free(route.label)

    def export_changes(self) -> dict[tuple[bytes, IPNetwork], VpnRoute | None]:
        """Our VPN routes to advertise (route) or withdraw (None) since the last call."""
        out, self._export_changes = self._export_changes, {}
        return out

    def kernel_changes(self) -> dict[tuple[str, IPNetwork], KernelRoute | None]:
        """Routes to program in (KernelRoute) or remove from (None) each VRF namespace since the last call."""
        out, self._kernel_changes = self._kernel_changes, {}
        return out

    def vrf_changes(self) -> dict[tuple[str, IPNetwork], FibEntry | None]:
        """VRF table entries that changed since the last call (what CEs should hear)."""
        out, self._vrf_changes = self._vrf_changes, {}
        return out

    def kernel_routes(self, vrf_name: str) -> dict[IPNetwork, KernelRoute]:
        """The whole table a VRF namespace should hold (for a full resync)."""
        vrf = self._vrf(vrf_name)
        out = {}
        for prefix, e in vrf.fib.items():
            k = _kernel_route(e)
            if k is not None:
                out[prefix] = k
        return out

    # -- data plane ---------------------------------------------------------------------
    def _count(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def outbound(self, key: bytes, packets: list[bytes], now: float, *, vnet: bool = True) -> None:
        """Packets read from a VRF's TUN (each after its virtio_net_hdr when ``vnet``)."""
        vrf = self._by_key[key]
        c = vrf.counters
        lookup = vrf.fib.lookup
        send = self._send
        for pkt in packets:
            if vnet:
                hdr, packet = pkt[:VNET_HDR_LEN], pkt[VNET_HDR_LEN:]
            else:
                hdr, packet = VNET_NONE, pkt
            d = _destination(packet)
            if d is None:
                c.drop("malformed")
                continue
            dst, total = d
            e = lookup(dst)
            if e is None:
                c.drop("no-route")
                continue
            kind = e.kind
            if kind is REMOTE:
                if hdr == VNET_NONE:
                    if total != len(packet):
                        packet = packet[:total]
                    payloads = (e.header + packet,)
                else:
                    payloads = self._chunks(e, hdr, packet, c)
                    if payloads is None:
                        continue
                send(e.node_id, payloads, now)
                c.packets_out += 1
                c.bytes_out += len(packet)
                peer = c.peers.get(e.peer)
                if peer is None:
                    peer = c.peers[e.peer] = [0, 0]
                peer[1] += 1
            elif kind is LEAK:
                self._leak(vrf, e, b"" if hdr == VNET_NONE else hdr, packet, dst)
            elif kind is LOCAL:
                c.drop("local-destination")  # the namespace routes it to the CE itself
            else:
                c.drop("unresolved-nexthop")

    def _chunks(self, e: FibEntry, hdr: bytes, packet: bytes, c) -> tuple[bytes, ...] | None:
        gso_type = VNET_HDR.unpack(hdr)[1]
        if gso_type & ~GSO_ECN not in _OFFLOADS:
            c.drop("unsupported-offload")
            return None
        blob = hdr + packet
        count = -(-len(blob) // CHUNK_SIZE)
        if count > MAX_CHUNKS:
            c.drop("too-big")
            return None
        pid = self._next_packet_id = (self._next_packet_id + 1) & 0xFFFFFFFF
        head = e.chunk_header
        return tuple(head + MplsChunk.fields(pid, i, count) + blob[i * CHUNK_SIZE:(i + 1) * CHUNK_SIZE]
                     for i in range(count))

    def _leak(self, vrf: Vrf, e: FibEntry, hdr: bytes, packet: bytes, dst: bytes) -> None:
        """A packet for another VRF on this PE whose route this VRF imported."""
        c = vrf.counters
        target = self.vrfs.get(e.vrf)
        te = target.fib.lookup(dst) if target is not None else None
        if te is None or te.kind is not LOCAL:
            c.drop("no-local-route")
            return
        c.packets_out += 1
        c.bytes_out += len(packet)
        name = "vrf:" + target.name
        c.peers.setdefault(name, [0, 0])[1] += 1
        tc = target.counters
        tc.packets_in += 1
        tc.bytes_in += len(packet)
        tc.peers.setdefault("vrf:" + vrf.name, [0, 0])[0] += 1
        self.tun_out.append((target.key, hdr, packet))

    def on_payload(self, sender: NodeId, payload: bytes, now: float) -> None:
        """An L3VPN message (``L3VPN_TYPES``) from an authenticated node; the transport's sink."""
        raw = sender.raw
        name = self._pe_nodes.get(raw)
        if name is None:
            self._count("not-a-pe")
            return
        code = payload[1] if len(payload) >= MPLS_HEADER and payload[0] == VERSION else None
        if code is None:
            self._count("malformed")
            return
        entry = int.from_bytes(payload[2:6], "big")
        if not entry & 0x100 or entry & 0xFF == 0:
            self._count("bad-label-stack")
            return
        bound = self._labels.get(entry >> 12)
        if bound is None:
            self._count("unknown-label")
            return
        vrf, prefix = bound
        if code == _PACKET:
            self._deliver(vrf, prefix, name, b"", payload[MPLS_HEADER:])
        elif code == _CHUNK:
            if len(payload) <= CHUNK_HEADER:
                vrf.counters.drop("bad-chunk")
                return
            pid, index, count = int.from_bytes(payload[6:10], "big"), payload[10], payload[11]
            if not 1 <= count <= MAX_CHUNKS or index >= count:
                vrf.counters.drop("bad-chunk")
                return
            data = payload[CHUNK_HEADER:]
            whole = data if count == 1 else self._reassembly.add((raw, pid, entry >> 12), index, count, data, now)
            if whole is None:
                return
            if whole is REFUSED or len(whole) < VNET_HDR_LEN + 20:
                vrf.counters.drop("bad-chunk")
                return
            vnet, packet = whole[:VNET_HDR_LEN], whole[VNET_HDR_LEN:]
            if not offload_header_ok(vnet, packet):
                vrf.counters.drop("bad-offload")
                return
            self._deliver(vrf, prefix, name, vnet, packet)
        else:
            self._count("malformed")

    def _deliver(self, vrf: Vrf, prefix: IPNetwork | None, name: str, vnet: bytes, packet: bytes) -> None:
        c = vrf.counters
        d = _destination(packet)
        if d is None:
            c.drop("malformed")
            return
        dst, total = d
        e = vrf.fib.lookup(dst)
        # Only to this site: a packet from the core never goes back into the core (no loops, no transit).
        if e is None or e.kind is not LOCAL:
            c.drop("no-local-route")
            return
        if prefix is not None and e.prefix != prefix and not (e.prefix.version == prefix.version
                                                                and e.prefix.subnet_of(prefix)):
            c.drop("label-prefix-mismatch")
            return
        if total != len(packet):
            packet = packet[:total]
        c.packets_in += 1
        c.bytes_in += total
        peer_c = c.peers.get(name)
        if peer_c is None:
            peer_c = c.peers[name] = [0, 0]
        peer_c[0] += 1
        self.tun_out.append((vrf.key, vnet, packet))

    def handles(self, payload: bytes) -> bool:
        return len(payload) >= 2 and payload[0] == VERSION and payload[1] in L3VPN_TYPES

    # -- introspection --------------------------------------------------------------------
    def vrf_status(self) -> list[dict[str, Any]]:
        out = []
        for name in sorted(self.vrfs):
            vrf = self.vrfs[name]
            kinds: dict[str, int] = {}
            for _p, e in vrf.fib.items():
                kinds[e.kind] = kinds.get(e.kind, 0) + 1
            out.append({
                "name": name, "rd": format_rd(vrf.rd), "label": vrf.label, "label_mode": vrf.config.label_mode,
                **vrf.policy.describe(),
                "routes": {"local": kinds.get(LOCAL, 0), "remote": kinds.get(REMOTE, 0), "vrf": kinds.get(LEAK, 0),
                           "unresolved": kinds.get(UNRESOLVED, 0)},
                "exported": sum(1 for (rd, _p) in self.exports if rd == vrf.rd),
                "refused": vrf.refused,
                "counters": vrf.counters.as_dict(),
            })
        return out

    def vrf_routes(self, vrf_name: str) -> list[dict[str, Any]]:
        """A VRF's table as `weft vrf routes` shows it: every prefix, its best route and the alternatives."""
        vrf = self._vrf(vrf_name)
        out = []
        prefixes = sorted(vrf.local.keys() | vrf.imported.keys(), key=lambda p: (p.version, p))
        for p in prefixes:
            best = vrf.fib.get(p)
            rows = []
            for r in sorted(vrf.local.get(p, {}).values(), key=lambda r: r.source):
                rows.append({"type": "local", "source": r.source, "nexthop": r.nexthop, "dev": r.dev,
                             "best": best is not None and best.local is r})
            for cand in sorted(vrf.imported.get(p, {}).values(), key=Candidate.order):
                rows.append({"type": cand.kind, "source": cand.route.source or "local",
                             "rd": format_rd(cand.route.rd), "label": cand.route.label,
                             "nexthop": cand.route.nexthop,
                             "pe": NodeId(cand.node).text() if cand.node else "", "vrf": cand.vrf,
                             "rts": cand.route.to_dict()["rts"],
                             "best": best is not None and best.candidate is cand})
            out.append({"prefix": str(p), "kind": best.kind if best else "none", "paths": rows})
        return out

    def status(self) -> dict[str, Any]:
        return {"nexthop": self.nexthop, "vrfs": len(self.vrfs), "vpn_routes": len(self._vpn),
                "exports": len(self.exports), "labels_in_use": len(self.labels),
                "pes": {k: NodeId(v).text() for k, v in sorted(self._pes.items())},
                "drops": dict(sorted(self.drops.items())), **self.stats}

