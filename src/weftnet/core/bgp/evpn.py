"""EVPN instances over VXLAN (RFC 7432, RFC 8365; type 5 per RFC 9136), driving a small dataplane interface.

Theory of operation
-------------------
One :class:`EvpnInstance` per VNI (VLAN-based service, RFC 8365 section 5.1.2:
one broadcast domain per EVI, Ethernet tag 0). :class:`Evpn` ties instances to
a :class:`~weftnet.core.bgp.speaker.Speaker`:

* **local side** (inputs from the driver's bridge monitor): :meth:`Evpn.local_mac`
  and :meth:`Evpn.local_mac_gone` when the bridge learns or ages a MAC on a
  local port. A learned MAC is advertised as a type-2 route (RD, MAC, optional
  IP, label = VNI, route targets, encapsulation VXLAN, next hop = local VTEP);
  a gone MAC is withdrawn. Each instance always advertises its type-3 route
  (PMSI tunnel: ingress replication to the local VTEP, label = VNI) and a
  type-5 route per configured prefix.
* **remote side** (best-path changes from the speaker's Loc-RIB): routes whose
  route targets one instance imports become dataplane calls: type 2 ->
  ``setup/remove_dataplane_for_remote_endpoint`` (an FDB entry for the MAC
  towards the VTEP), type 3 -> ``add/remove_dataplane_for_bum_endpoint`` (a
  flood entry per remote VTEP), type 5 -> ``add/remove_dataplane_for_prefix``.
* **MAC mobility** (RFC 7432 section 15): per (VNI, MAC) every advertisement,
  ours and each remote PE's (under its own RD), is a candidate; the winner has
  the highest sequence number, ties going to the lowest VTEP address. A MAC
  learned locally while a remote PE advertises it is advertised with that
  sequence number + 1; when a remote advertisement beats ours the MAC has
  moved away, so ours is withdrawn and the FDB points at the remote VTEP.

The dataplane is an interface (:class:`EvpnDataplane`), the shape of
networking-bagpipe's dataplane drivers: the Linux driver
(``runtime/evpn_linux.py``) programs a kernel VXLAN device and bridge over
netlink; tests use a recording driver. This module does no I/O itself.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable, Protocol

from weftnet.core.bgp.attributes import Attributes, ExtendedCommunities, PmsiTunnel
from weftnet.core.bgp.extcommunity import TUNNEL_VXLAN, Encapsulation, MacMobility, RouteTarget, RouterMac
from weftnet.core.bgp.family import L2VPN_EVPN, Family
from weftnet.core.bgp.nlri import EvpnInclusiveMulticast, EvpnIpPrefix, EvpnMacIp, RouteDistinguisher
from weftnet.core.bgp.nlri.evpn import format_mac
from weftnet.core.bgp.policy import RouteTargetImport, route_targets
from weftnet.core.bgp.rib import Path
from weftnet.core.bgp.speaker import Speaker

__all__ = ["EvpnDataplane", "EviConfig", "EvpnInstance", "Evpn", "RecordingDataplane"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_MACS_PER_VNI = 100_000  # remote and local MACs an instance tracks (bounded like every table)
#: Remote VTEPs a VNI floods to (ingress replication: every broadcast, unknown-unicast or multicast frame
#: is copied to each). A peer names them in type-3 routes, so without a bound one UPDATE of ~190 routes
#: would have every flooded frame sent to ~190 addresses of its choosing (docs/security.md item 17).
MAX_VTEPS_PER_VNI = 1024


class EvpnDataplane(Protocol):
    """What an EVPN instance asks of the forwarding plane (networking-bagpipe's driver shape)."""

    def setup_instance(self, cfg: "EviConfig") -> None: ...
    def cleanup_instance(self, cfg: "EviConfig") -> None: ...
    def setup_dataplane_for_remote_endpoint(self, vni: int, mac: bytes, ip: IPAddress | None, vtep: IPAddress) -> None: ...
    def remove_dataplane_for_remote_endpoint(self, vni: int, mac: bytes, ip: IPAddress | None, vtep: IPAddress) -> None: ...
    def add_dataplane_for_bum_endpoint(self, vni: int, vtep: IPAddress) -> None: ...
    def remove_dataplane_for_bum_endpoint(self, vni: int, vtep: IPAddress) -> None: ...
    def add_dataplane_for_prefix(self, vni: int, prefix: IPNetwork, vtep: IPAddress, gateway: IPAddress | None,
                                 router_mac: bytes | None) -> None: ...
    def remove_dataplane_for_prefix(self, vni: int, prefix: IPNetwork, vtep: IPAddress) -> None: ...
    def vif_plugged(self, vni: int, mac: bytes, ip: IPAddress | None) -> None: ...
    def vif_unplugged(self, vni: int, mac: bytes, ip: IPAddress | None) -> None: ...


@dataclass(frozen=True)
class EviConfig:
    vni: int
    rd: RouteDistinguisher
    local_vtep: IPAddress
    import_targets: frozenset[RouteTarget]
    export_targets: tuple[RouteTarget, ...]
    prefixes: tuple[IPNetwork, ...] = ()  # advertised as type 5
    router_mac: bytes | None = None  # RFC 9135 Router's MAC on type-5 routes
    bridge: str = ""
    vxlan: str = ""
    create: bool = True  # the Linux driver creates the bridge and VXLAN device (else they must exist)

    @classmethod
    def auto(cls, vni: int, asn: int, router_id: ipaddress.IPv4Address, local_vtep: IPAddress,
             targets: Iterable[RouteTarget] = (), **kw) -> "EviConfig":
        """Defaults as FRR derives them: RD router-id:VNI, RT ASN:VNI (RFC 8365 section 5.1.2.1)."""
        rts = tuple(targets) or (RouteTarget(0 if asn <= 0xFFFF else 2, asn, vni if asn <= 0xFFFF else vni & 0xFFFF),)
        return cls(vni, RouteDistinguisher.parse(f"{router_id}:{vni & 0xFFFF}"), local_vtep, frozenset(rts), rts, **kw)


@dataclass
class _Candidate:
    vtep: IPAddress
    seq: int
    ip: IPAddress | None
    local: bool = False


@dataclass
class EvpnInstance:
    cfg: EviConfig
    local_macs: dict[bytes, set] = field(default_factory=dict)  # mac -> IPs (None = MAC-only route)
    local_seq: dict[bytes, int] = field(default_factory=dict)
    remote: dict[bytes, dict[bytes, _Candidate]] = field(default_factory=dict)  # mac -> route key -> candidate
    installed: dict[bytes, IPAddress] = field(default_factory=dict)  # mac -> VTEP in the FDB
    bum: dict[IPAddress, set[bytes]] = field(default_factory=dict)  # remote VTEP -> type-3 route keys
    bum_keys: dict[bytes, IPAddress] = field(default_factory=dict)  # type-3 route key -> its VTEP
    prefixes: dict[bytes, tuple[IPNetwork, IPAddress]] = field(default_factory=dict)
    stats: dict = field(default_factory=lambda: {"local_macs": 0, "remote_macs": 0, "remote_vteps": 0,
                                                 "remote_prefixes": 0, "mac_moves": 0, "mac_limit_drops": 0,
                                                 "vtep_limit_drops": 0})

    @property
    def vni(self) -> int:
        return self.cfg.vni

    def base_communities(self) -> list:
        return [*self.cfg.export_targets, Encapsulation(TUNNEL_VXLAN)]


class Evpn:
    """All EVPN instances of one speaker."""

    def __init__(self, speaker: Speaker, dataplane: EvpnDataplane, rt_import: RouteTargetImport | None = None):
        self.speaker = speaker
        self.dp = dataplane
        self.instances: dict[int, EvpnInstance] = {}
        self.rt_import = rt_import
        speaker.add_listener(self._on_best)
        self.stats = {"type2_in": 0, "type3_in": 0, "type5_in": 0, "ignored": 0}
        self._generation = 0  # bumped when instances change: memoised route -> instance lookups go stale

    # -- instances -------------------------------------------------------------------------
    def add_instance(self, cfg: EviConfig, now: float) -> EvpnInstance:
        if cfg.vni in self.instances:
            raise ValueError(f"VNI {cfg.vni} configured twice")
        inst = self.instances[cfg.vni] = EvpnInstance(cfg)
        self._generation += 1
        self.dp.setup_instance(cfg)
        if self.rt_import is not None:
            self.rt_import.register(cfg.import_targets)
        self.speaker.originate(self._imet(inst), self._attrs(inst, pmsi=True), cfg.local_vtep, now)
        for p in cfg.prefixes:
            self.advertise_prefix(cfg.vni, p, now)
        # routes the speaker already holds (e.g. the instance was added after sessions came up)
        for path in list(self.speaker.rib.best_paths(L2VPN_EVPN)):
            self._on_best(L2VPN_EVPN, path.nlri.key, None, path, now)
        return inst

    def remove_instance(self, vni: int, now: float) -> None:
        inst = self.instances.pop(vni, None)
        if inst is None:
            return
        self._generation += 1
        for mac in list(inst.local_macs):
            self._withdraw_local(inst, mac, now)
        self.speaker.withdraw(self._imet(inst), now)
        for p in inst.cfg.prefixes:
            self.speaker.withdraw(EvpnIpPrefix(inst.cfg.rd, p, None, vni), now)
        if self.rt_import is not None:
            self.rt_import.unregister(inst.cfg.import_targets)
        self.dp.cleanup_instance(inst.cfg)

    def _imet(self, inst: EvpnInstance) -> EvpnInclusiveMulticast:
        return EvpnInclusiveMulticast(inst.cfg.rd, inst.cfg.local_vtep)

    def _attrs(self, inst: EvpnInstance, pmsi: bool = False, extra: Iterable = ()) -> Attributes:
        comms = inst.base_communities() + list(extra)
        attrs = [ExtendedCommunities(tuple(comms))]
        if pmsi:
            attrs.append(PmsiTunnel.ingress_replication(inst.cfg.local_vtep, inst.vni))
        return Attributes(attrs)

    # -- local side ----------------------------------------------------------------------------
    def local_mac(self, vni: int, mac: bytes, now: float, ip: IPAddress | None = None) -> None:
        """The bridge of ``vni`` learned ``mac`` on a local port (with ``ip`` if an ARP/ND entry says so)."""
        inst = self.instances.get(vni)
        if inst is None:
            return
        ips = inst.local_macs.get(mac)
        if ips is None:
            if len(inst.local_macs) >= MAX_MACS_PER_VNI:
                inst.stats["mac_limit_drops"] += 1
                return
            ips = inst.local_macs[mac] = set()
            remote_seq = max((c.seq for c in inst.remote.get(mac, {}).values()), default=None)
            seq = inst.local_seq.get(mac, 0)
            if remote_seq is not None:  # RFC 7432 15.1: the MAC moved here
                seq = max(seq, remote_seq + 1)
                inst.stats["mac_moves"] += 1
            inst.local_seq[mac] = seq
            ips.add(None)
            self.dp.vif_plugged(vni, mac, None)
        elif ip is None or ip in ips:
            return
        if ip is not None:
            ips.add(ip)
        inst.stats["local_macs"] = len(inst.local_macs)
        self._advertise_local(inst, mac, now, only=ip)
        self._reselect(inst, mac, now)

    def local_mac_gone(self, vni: int, mac: bytes, now: float) -> None:
        """The bridge aged ``mac`` out, or it now lives behind another port."""
        inst = self.instances.get(vni)
        if inst is None or mac not in inst.local_macs:
            return
        self._withdraw_local(inst, mac, now)
        self.dp.vif_unplugged(vni, mac, None)
        self._reselect(inst, mac, now)

    def _local_route(self, inst: EvpnInstance, mac: bytes, ip: IPAddress | None) -> EvpnMacIp:
        return EvpnMacIp(inst.cfg.rd, mac, ip, inst.vni)

    def _advertise_local(self, inst: EvpnInstance, mac: bytes, now: float, only: IPAddress | None = None) -> None:
        seq = inst.local_seq.get(mac, 0)
        extra = [MacMobility(seq)] if seq else []
        attrs = self._attrs(inst, extra=extra)
        for ip in ([only] if only is not None else sorted(inst.local_macs[mac], key=lambda x: (x is not None, str(x)))):
            self.speaker.originate(self._local_route(inst, mac, ip), attrs, inst.cfg.local_vtep, now)

    def _withdraw_local(self, inst: EvpnInstance, mac: bytes, now: float) -> None:
        for ip in inst.local_macs.pop(mac, ()):
            self.speaker.withdraw(self._local_route(inst, mac, ip), now)
        inst.stats["local_macs"] = len(inst.local_macs)

    def advertise_prefix(self, vni: int, prefix: IPNetwork, now: float) -> None:
        inst = self.instances[vni]
        extra = [RouterMac(inst.cfg.router_mac)] if inst.cfg.router_mac else []
        self.speaker.originate(EvpnIpPrefix(inst.cfg.rd, prefix, None, vni), self._attrs(inst, extra=extra),
                               inst.cfg.local_vtep, now)

    def withdraw_prefix(self, vni: int, prefix: IPNetwork, now: float) -> None:
        inst = self.instances[vni]
        self.speaker.withdraw(EvpnIpPrefix(inst.cfg.rd, prefix, None, vni), now)

    # -- remote side -----------------------------------------------------------------------------
    def _instance_for(self, path: Path) -> EvpnInstance | None:
        rts = route_targets(path.attrs)
        matches = path.attrs.memo(("evpn_instances", id(self), self._generation),
                                  lambda a: [i for i in self.instances.values() if rts & i.cfg.import_targets])
        if len(matches) > 1:  # several instances import the target: the VNI in the label decides
            label = getattr(path.nlri, "label", None)
            matches = [i for i in matches if i.vni == label] or matches[:1]
        return matches[0] if matches else None

    def _on_best(self, fam: Family, key: bytes, old: Path | None, new: Path | None, now: float) -> None:
        if fam != L2VPN_EVPN:
            return
        if old is not None and not old.local:
            self._remote_gone(old, now)
        if new is not None and not new.local:
            self._remote_add(new, now)

    def _remote_add(self, path: Path, now: float) -> None:
        inst = self._instance_for(path)
        n = path.nlri
        vtep = path.next_hop
        if inst is None or vtep is None or vtep == inst.cfg.local_vtep:
            self.stats["ignored"] += 1
            return
        if isinstance(n, EvpnMacIp):
            self.stats["type2_in"] += 1
            cands = inst.remote.setdefault(n.mac, {})
            if not cands and len(inst.remote) > MAX_MACS_PER_VNI:
                del inst.remote[n.mac]
                inst.stats["mac_limit_drops"] += 1
                return
            seq = path.attrs.memo("mac_mobility", _mobility_seq)
            cands[n.key] = _Candidate(vtep, seq, n.ip)
            inst.stats["remote_macs"] = len(inst.remote)
            self._reselect(inst, n.mac, now)
        elif isinstance(n, EvpnInclusiveMulticast):
            self.stats["type3_in"] += 1
            pmsi = path.attrs.pmsi
            ep = pmsi.endpoint if pmsi is not None and pmsi.endpoint is not None else n.originator
            old_ep = inst.bum_keys.get(n.key)
            if old_ep is not None and old_ep != ep:
                self._bum_gone(inst, n.key)
            keys = inst.bum.get(ep)
            if keys is None:
                if len(inst.bum) >= MAX_VTEPS_PER_VNI:
                    inst.stats["vtep_limit_drops"] += 1
                    return
                keys = inst.bum[ep] = set()
                self.dp.add_dataplane_for_bum_endpoint(inst.vni, ep)
            keys.add(n.key)
            inst.bum_keys[n.key] = ep
            inst.stats["remote_vteps"] = len(inst.bum)
        elif isinstance(n, EvpnIpPrefix):
            self.stats["type5_in"] += 1
            rmac = next((c.mac for c in path.attrs.ext_communities if isinstance(c, RouterMac)), None)
            prev = inst.prefixes.get(n.key)
            if prev is not None and prev != (n.prefix, vtep):
                self.dp.remove_dataplane_for_prefix(inst.vni, prev[0], prev[1])
            inst.prefixes[n.key] = (n.prefix, vtep)
            self.dp.add_dataplane_for_prefix(inst.vni, n.prefix, vtep, n.gateway, rmac)
            inst.stats["remote_prefixes"] = len(inst.prefixes)

    def _remote_gone(self, path: Path, now: float) -> None:
        n = path.nlri
        for inst in self.instances.values():
            if isinstance(n, EvpnMacIp):
                cands = inst.remote.get(n.mac)
                if cands and cands.pop(n.key, None) is not None:
                    if not cands:
                        del inst.remote[n.mac]
                    inst.stats["remote_macs"] = len(inst.remote)
                    self._reselect(inst, n.mac, now)
            elif isinstance(n, EvpnInclusiveMulticast):
                self._bum_gone(inst, n.key)  # by the route's key: one lookup, not a walk over every VTEP
            elif isinstance(n, EvpnIpPrefix):
                prev = inst.prefixes.pop(n.key, None)
                if prev is not None:
                    self.dp.remove_dataplane_for_prefix(inst.vni, prev[0], prev[1])
                inst.stats["remote_prefixes"] = len(inst.prefixes)

    def _bum_gone(self, inst: EvpnInstance, key: bytes) -> None:
        ep = inst.bum_keys.pop(key, None)
        if ep is None:
            return
        keys = inst.bum.get(ep)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del inst.bum[ep]
                self.dp.remove_dataplane_for_bum_endpoint(inst.vni, ep)
        inst.stats["remote_vteps"] = len(inst.bum)

    def _reselect(self, inst: EvpnInstance, mac: bytes, now: float) -> None:
        """Decide where ``mac`` lives (RFC 7432 15): program the FDB, or withdraw our route if we lost."""
        cands = list(inst.remote.get(mac, {}).values())
        best_remote = min(cands, key=lambda c: (-c.seq, c.vtep.version, int(c.vtep))) if cands else None
        if mac in inst.local_macs:
            ours = inst.local_seq.get(mac, 0)
            lv = inst.cfg.local_vtep
            if best_remote is None or (best_remote.seq, -int(best_remote.vtep)) < (ours, -int(lv)):
                best_remote = None  # we win: the MAC is here
            else:  # it moved away from us
                inst.stats["mac_moves"] += 1
                inst.local_seq[mac] = best_remote.seq
                self._withdraw_local(inst, mac, now)
                self.dp.vif_unplugged(inst.vni, mac, None)
        current = inst.installed.get(mac)
        target = best_remote.vtep if best_remote is not None else None
        if current == target:
            return
        if current is not None:
            inst.installed.pop(mac)
            if target is None:
                self.dp.remove_dataplane_for_remote_endpoint(inst.vni, mac, None, current)
        if target is not None:
            inst.installed[mac] = target
            self.dp.setup_dataplane_for_remote_endpoint(inst.vni, mac, best_remote.ip, target)

    # -- views -------------------------------------------------------------------------------
    def status(self) -> list[dict]:
        out = []
        for vni, inst in sorted(self.instances.items()):
            out.append({"vni": vni, "rd": str(inst.cfg.rd), "local_vtep": str(inst.cfg.local_vtep),
                        "import_targets": sorted(map(str, inst.cfg.import_targets)),
                        "export_targets": [str(t) for t in inst.cfg.export_targets],
                        "vteps": sorted(map(str, inst.bum)),
                        "advertised_macs": sorted(format_mac(m) for m in inst.local_macs)[:1000], **inst.stats})
        return out


def _mobility_seq(attrs: Attributes) -> int:
    mm = [c for c in attrs.ext_communities if isinstance(c, MacMobility)]
    return mm[0].sequence if mm else 0


class RecordingDataplane:
    """A dataplane that records what it was asked (for tests and dry runs); the FDB is a dict."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.fdb: dict[tuple[int, bytes], IPAddress] = {}
        self.flood: dict[int, set[IPAddress]] = {}
        self.routes: dict[tuple[int, IPNetwork], IPAddress] = {}
        self.plugged: set[tuple[int, bytes]] = set()

    def setup_instance(self, cfg: EviConfig) -> None:
        self.calls.append(("setup", cfg.vni))

    def cleanup_instance(self, cfg: EviConfig) -> None:
        self.calls.append(("cleanup", cfg.vni))

    def setup_dataplane_for_remote_endpoint(self, vni, mac, ip, vtep) -> None:
        self.calls.append(("fdb_add", vni, mac, vtep))
        self.fdb[(vni, mac)] = vtep

    def remove_dataplane_for_remote_endpoint(self, vni, mac, ip, vtep) -> None:
        self.calls.append(("fdb_del", vni, mac, vtep))
        self.fdb.pop((vni, mac), None)

    def add_dataplane_for_bum_endpoint(self, vni, vtep) -> None:
        self.calls.append(("flood_add", vni, vtep))
        self.flood.setdefault(vni, set()).add(vtep)

    def remove_dataplane_for_bum_endpoint(self, vni, vtep) -> None:
        self.calls.append(("flood_del", vni, vtep))
        self.flood.get(vni, set()).discard(vtep)

    def add_dataplane_for_prefix(self, vni, prefix, vtep, gateway, router_mac) -> None:
        self.calls.append(("route_add", vni, prefix, vtep))
        self.routes[(vni, prefix)] = vtep

    def remove_dataplane_for_prefix(self, vni, prefix, vtep) -> None:
        self.calls.append(("route_del", vni, prefix, vtep))
        self.routes.pop((vni, prefix), None)

    def vif_plugged(self, vni, mac, ip) -> None:
        self.plugged.add((vni, mac))

    def vif_unplugged(self, vni, mac, ip) -> None:
        self.plugged.discard((vni, mac))
