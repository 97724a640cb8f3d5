"""EVPN inside the overlay: the BGP EVPN control plane (docs/evpn.md) steering a layer-2 network's switch.

A ``[[bgp.evpn]]`` instance whose ``bridge`` is the bridge of a layer-2
network (docs/l2.md) does not get a kernel VXLAN device: its "VTEPs" are the
network's members, reached through their encrypted sessions, and its BGP
peers are members too (``[[bgp.peers]] node = "wn1…"``, reached at their
overlay addresses, so the BGP sessions themselves travel inside the
overlay). :class:`L2EvpnDataplane` is the EVPN dataplane driver for such
instances (the interface of ``core/bgp/evpn.py``) and hands every other
instance to the Linux driver:

* **remote MAC/IP** (type 2) -> ``L2Network.install_remote``: the switch
  sends unicast to that member instead of flooding, and answers ARP and
  neighbour solicitations for the IP on the spot. Where a MAC lives is the
  EVPN instance's decision (best route, MAC mobility); the IPs come from
  every MAC/IP route (a listener on the speaker, :meth:`attach`). The route's next hop (the
  member's ``local_vtep``) names the member: one of its certified addresses
  in the network, or its overlay address. A route for a member not known yet
  is kept and installed once the member is (the member scan finds it), and a
  route its certificate does not grant is refused (counted): BGP can steer
  frames, never widen what a member may source;
* **local MACs**: the bridge monitor of the BGP runtime reports MACs learned
  on the bridge's local ports (the TAP is the excluded port, as a VXLAN
  device is for the Linux driver); the switch reports IP/MAC bindings it
  snooped behind our bridge (``VpnLocalBinding``), advertised as MAC/IP
  routes by :meth:`local_binding`;
* **type 3** (inclusive multicast) routes are counted only: the switch
  floods to every member anyway (head-end replication over the sessions).

The bridge must be in the daemon's own namespace (``[networks.NAME] netns``
unset): the BGP runtime's bridge monitor listens there.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from weftnet.core.identity import NodeId
from weftnet.errors import NetworkError

__all__ = ["L2EvpnDataplane"]

log = logging.getLogger("weftnet.evpn")
#: Remote routes waiting for their member, at most (a bound like every table's).
MAX_WAITING = 10_000


class L2EvpnDataplane:
    """EvpnDataplane for instances bound to a layer-2 network; others go to the Linux VXLAN driver."""

    def __init__(self, networks: dict[str, tuple[Any, str]], dstport: int = 4789, fallback: Any = None):
        """``networks``: bridge name -> (L2Network, TAP name), for the networks this node runs."""
        self.networks = networks
        self.dstport = dstport
        self._fallback = fallback
        self.by_vni: dict[int, Any] = {}
        self._devices: dict[int, tuple[int, int]] = {}  # vni -> (bridge ifindex, excluded port: the TAP)
        # (vni, MAC, IP or None) -> the member it is installed for / the VTEP of a route waiting for its member
        self.installed: dict[tuple[int, bytes, str | None], bytes] = {}
        self.waiting: dict[tuple[int, bytes, str | None], Any] = {}
        self.l2_stats = {"remote_installed": 0, "remote_withdrawn": 0, "remote_refused": 0, "remote_waiting": 0,
                         "bum_endpoints": 0, "local_bindings": 0}

    @property
    def devices(self) -> dict[int, tuple[int, int]]:
        """Bridges for the BGP runtime's monitor: vni -> (bridge, port whose MACs are not local)."""
        return {**getattr(self._fallback, "devices", {}), **self._devices}

    @property
    def stats(self) -> dict:
        return {**getattr(self._fallback, "stats", {}), **self.l2_stats}

    # -- instances --------------------------------------------------------------------------
    def _linux(self) -> Any:
        if self._fallback is None:
            from weftnet.runtime.evpn_linux import LinuxEvpnDataplane

            self._fallback = LinuxEvpnDataplane(self.dstport)
        return self._fallback

    def _ours(self, vni: int) -> Any:
        return self.by_vni.get(vni)

    def setup_instance(self, cfg) -> None:
        bound = self.networks.get(cfg.bridge)
        if bound is None:
            self._linux().setup_instance(cfg)
            return
        net, tap = bound
        try:
            self._devices[cfg.vni] = (socket.if_nametoindex(cfg.bridge), socket.if_nametoindex(tap))
        except OSError:
            raise NetworkError(f"EVPN VNI {cfg.vni}: bridge {cfg.bridge} or TAP {tap} of network "
                               f"{net.descriptor.name!r} is not in this namespace") from None
        self.by_vni[cfg.vni] = net
        log.info("EVPN instance on a layer-2 network", extra={"vni": cfg.vni, "network": net.descriptor.name,
                                                              "bridge": cfg.bridge, "local_vtep": str(cfg.local_vtep)})

    def cleanup_instance(self, cfg) -> None:
        net = self.by_vni.pop(cfg.vni, None)
        if net is None:
            if self._fallback is not None:
                self._fallback.cleanup_instance(cfg)
            return
        self._devices.pop(cfg.vni, None)
        for (vni, mac, ip), node in list(self.installed.items()):
            if vni == cfg.vni:
                self._uninstall(net, node, mac, ip)
                del self.installed[(vni, mac, ip)]

    # -- remote side ---------------------------------------------------------------------------
    def _member(self, net: Any, vtep) -> bytes | None:
        node = net.route(vtep)
        if node is not None:
            return node.raw
        for cert in net.members():
            if NodeId(cert.node_id).address() == vtep:
                return cert.node_id
        return None

    def _install(self, vni: int, mac: bytes, ip: str | None, vtep) -> None:
        """One remote MAC (``ip`` None) or MAC/IP binding, installed or left waiting for its member."""
        net = self.by_vni[vni]
        key = (vni, mac, ip)
        node = self._member(net, vtep)
        if node is None:
            if len(self.waiting) < MAX_WAITING:
                self.waiting[key] = vtep
            self.l2_stats["remote_waiting"] = len(self.waiting)
            return
        self.waiting.pop(key, None)
        old = self.installed.pop(key, None)
        if old is not None and old != node:
            self._uninstall(net, old, mac, ip)
        if net.install_remote(node, mac, ip):
            self.installed[key] = node
            self.l2_stats["remote_installed"] += 1
        else:
            self.l2_stats["remote_refused"] += 1
        self.l2_stats["remote_waiting"] = len(self.waiting)

    @staticmethod
    def _uninstall(net: Any, node: bytes, mac: bytes, ip: str | None) -> None:
        if ip is None:
            net.withdraw_remote(node, mac)
        else:
            net.withdraw_binding(node, ip)

    def _remove(self, vni: int, mac: bytes, ip: str | None) -> None:
        key = (vni, mac, ip)
        self.waiting.pop(key, None)
        node = self.installed.pop(key, None)
        if node is not None:
            self._uninstall(self.by_vni[vni], node, mac, ip)
            self.l2_stats["remote_withdrawn"] += 1
        self.l2_stats["remote_waiting"] = len(self.waiting)

    def setup_dataplane_for_remote_endpoint(self, vni: int, mac: bytes, ip, vtep) -> None:
        """Where a MAC lives, as the EVPN instance decided (best route, MAC mobility): a unicast entry."""
        if self._ours(vni) is None:
            return self._linux().setup_dataplane_for_remote_endpoint(vni, mac, ip, vtep)
        self._install(vni, mac, None, vtep)

    def remove_dataplane_for_remote_endpoint(self, vni: int, mac: bytes, ip, vtep) -> None:
        if self._ours(vni) is None:
            return self._linux().remove_dataplane_for_remote_endpoint(vni, mac, ip, vtep)
        self._remove(vni, mac, None)

    def attach(self, service: Any) -> None:
        """Hear every best-path change of the speaker: MAC/IP routes become bindings (the instance itself
        programs one entry per MAC, whichever of its routes carried an IP)."""
        service.speaker.add_listener(self._on_best)

    def _on_best(self, fam, key: bytes, old, new, now: float) -> None:
        from weftnet.core.bgp.family import L2VPN_EVPN
        from weftnet.core.bgp.nlri import EvpnMacIp

        if fam != L2VPN_EVPN:
            return
        for path, add in ((old, False), (new, True)):
            if path is None or path.local or not isinstance(path.nlri, EvpnMacIp) or path.nlri.ip is None:
                continue
            n = path.nlri
            if n.vni not in self.by_vni or path.next_hop is None:
                continue
            if add:
                self._install(n.vni, n.mac, str(n.ip), path.next_hop)
            else:
                self._remove(n.vni, n.mac, str(n.ip))

    def retry_waiting(self) -> int:
        """Install routes whose member was not known when they came (call when members change)."""
        done = 0
        for (vni, mac, ip), vtep in list(self.waiting.items()):
            net = self._ours(vni)
            if net is not None and self._member(net, vtep) is not None:
                self._install(vni, mac, ip, vtep)
                done += 1
        self.l2_stats["remote_waiting"] = len(self.waiting)
        return done

    def add_dataplane_for_bum_endpoint(self, vni: int, vtep) -> None:
        if self._ours(vni) is None:
            return self._linux().add_dataplane_for_bum_endpoint(vni, vtep)
        self.l2_stats["bum_endpoints"] += 1

    def remove_dataplane_for_bum_endpoint(self, vni: int, vtep) -> None:
        if self._ours(vni) is None:
            return self._linux().remove_dataplane_for_bum_endpoint(vni, vtep)
        self.l2_stats["bum_endpoints"] -= 1

    def add_dataplane_for_prefix(self, vni: int, prefix, vtep, gateway, router_mac) -> None:
        if self._ours(vni) is None:
            return self._linux().add_dataplane_for_prefix(vni, prefix, vtep, gateway, router_mac)

    def remove_dataplane_for_prefix(self, vni: int, prefix, vtep) -> None:
        if self._ours(vni) is None:
            return self._linux().remove_dataplane_for_prefix(vni, prefix, vtep)

    def vif_plugged(self, vni: int, mac: bytes, ip) -> None:
        if self._ours(vni) is None and self._fallback is not None:
            self._fallback.vif_plugged(vni, mac, ip)

    def vif_unplugged(self, vni: int, mac: bytes, ip) -> None:
        if self._ours(vni) is None and self._fallback is not None:
            self._fallback.vif_unplugged(vni, mac, ip)

    # -- local side ------------------------------------------------------------------------------
    def local_binding(self, service: Any, network_id: bytes, mac: bytes, ip) -> None:
        """A host behind our bridge (MAC and IP snooped by the switch): advertise it as a MAC/IP route."""
        if service.evpn is None:
            return
        for vni, net in self.by_vni.items():
            if net.network_id == network_id:
                self.l2_stats["local_bindings"] += 1
                service.evpn.local_mac(vni, mac, service.now(), ip=ip)
                service.transmit()

    def flush(self) -> None:
        if self._fallback is not None and hasattr(self._fallback, "flush"):
            self._fallback.flush()

    def close(self) -> None:
        if self._fallback is not None and hasattr(self._fallback, "close"):
            self._fallback.close()


def dataplane_for(settings: Any, plane: Any, tun_info: dict[str, dict]) -> L2EvpnDataplane | None:
    """The daemon's EVPN dataplane: ours when an ``[[bgp.evpn]]`` bridge is a layer-2 network's, else None
    (the BGP runtime then uses the Linux VXLAN driver)."""
    networks = {}
    for net in plane.networks():
        info = tun_info.get(net.network_id.hex(), {})
        if info.get("bridge") and info.get("tap"):
            networks[info["bridge"]] = (net, info["tap"])
    if not any(evi.bridge in networks for evi in settings.evpn):
        return None
    return L2EvpnDataplane(networks, settings.vxlan_port)
