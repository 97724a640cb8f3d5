"""The Linux EVPN dataplane: a kernel VXLAN device in a bridge, programmed over netlink (pyroute2 only).

Per instance (VNI): a bridge and a VXLAN device (VNI, local VTEP address, UDP
4789, learning off, bridge-port learning off) enslaved to it, created unless
``create = false`` names existing ones. Then, as the EVPN instance asks:

* remote MAC -> ``MAC dev VXLAN dst VTEP self extern_learn`` and the bridge's
  ``MAC dev VXLAN master BRIDGE extern_learn`` (one request with NTF_SELF |
  NTF_MASTER | NTF_EXT_LEARNED, as FRR's zebra programs it);
* remote VTEP -> the flood entry ``00:00:00:00:00:00 dev VXLAN dst VTEP self permanent``
  (head-end replication of broadcast, unknown unicast and multicast);
* type-5 prefix with a gateway IP (RFC 9136 section 4.4.1) -> a route via that
  gateway on the bridge; a prefix without one needs an L3VNI/VRF, which this
  kernel lacks, so it is recorded only.

All netlink requests run on one worker thread, in order, batched per input
(:meth:`flush`). :class:`BridgeMonitor` listens for bridge FDB changes on a
second thread and reports MACs learned on or aged from local ports.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from weftnet.core.bgp.evpn import EviConfig
from weftnet.core.bgp.nlri.evpn import format_mac
from weftnet.errors import NetworkError

__all__ = ["LinuxEvpnDataplane", "BridgeMonitor"]

log = logging.getLogger("weftnet.evpn")
AF_BRIDGE = 7
NTF_SELF, NTF_MASTER, NTF_EXT_LEARNED = 0x02, 0x04, 0x10
NUD_REACHABLE, NUD_NOARP, NUD_PERMANENT = 0x02, 0x40, 0x80
ZERO_MAC = "00:00:00:00:00:00"


class LinuxEvpnDataplane:
    """EvpnDataplane for the Linux kernel (see the module docstring)."""

    def __init__(self, dstport: int = 4789):
        self.dstport = dstport
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evpn-netlink")
        self._ipr: Any = None
        self._ops: list[tuple] = []
        self._pending: list = []
        self.devices: dict[int, tuple[int, int]] = {}  # vni -> (bridge ifindex, vxlan ifindex)
        self.names: dict[int, tuple[str, str, bool]] = {}  # vni -> (bridge, vxlan, created)
        self.stats = {"fdb_installed": 0, "fdb_removed": 0, "flood_installed": 0, "flood_removed": 0,
                      "routes_installed": 0, "routes_removed": 0, "netlink_errors": 0}
        self.last_error = ""

    # -- worker-thread side ------------------------------------------------------------
    def _nl(self):
        if self._ipr is None:
            from pyroute2 import IPRoute

            self._ipr = IPRoute()
        return self._ipr

    def _setup(self, cfg: EviConfig) -> tuple[int, int]:
        from pyroute2.netlink.exceptions import NetlinkError

        ipr = self._nl()
        br_name = cfg.bridge or f"br{cfg.vni}"
        vx_name = cfg.vxlan or f"vxlan{cfg.vni}"
        created = False
        try:
            br = ipr.link_lookup(ifname=br_name)
            if not br:
                if not cfg.create:
                    raise NetworkError(f"EVPN VNI {cfg.vni}: bridge {br_name} does not exist (create = false)")
                ipr.link("add", ifname=br_name, kind="bridge")
                br = ipr.link_lookup(ifname=br_name)
                created = True
            vx = ipr.link_lookup(ifname=vx_name)
            if not vx:
                if not cfg.create:
                    raise NetworkError(f"EVPN VNI {cfg.vni}: VXLAN device {vx_name} does not exist (create = false)")
                kw = {"vxlan_id": cfg.vni, "vxlan_port": self.dstport, "vxlan_learning": 0}
                kw["vxlan_local6" if cfg.local_vtep.version == 6 else "vxlan_local"] = str(cfg.local_vtep)
                ipr.link("add", ifname=vx_name, kind="vxlan", **kw)
                vx = ipr.link_lookup(ifname=vx_name)
                created = True
            ipr.link("set", index=vx[0], master=br[0])
            ipr.brport("set", index=vx[0], learning=0)
            ipr.link("set", index=vx[0], state="up")
            ipr.link("set", index=br[0], state="up")
        except NetlinkError as exc:
            raise NetworkError(f"EVPN VNI {cfg.vni}: cannot set up {br_name}/{vx_name}: {exc.args[1]}") from None
        self.names[cfg.vni] = (br_name, vx_name, created)
        return br[0], vx[0]

    def _apply(self, ops: list[tuple]) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        ipr = self._nl()
        for op in ops:
            kind = op[0]
            try:
                if kind == "fdb_add":
                    _, vx, mac, vtep = op
                    ipr.fdb("replace", ifindex=vx, lladdr=mac, dst=vtep,
                            flags=NTF_SELF | NTF_MASTER | NTF_EXT_LEARNED, state=NUD_REACHABLE)
                    self.stats["fdb_installed"] += 1
                elif kind == "fdb_del":
                    _, vx, mac, vtep = op
                    for flags in (NTF_MASTER, NTF_SELF):
                        try:
                            ipr.fdb("del", ifindex=vx, lladdr=mac, **({"dst": vtep} if flags == NTF_SELF else {}),
                                    flags=flags)
                        except NetlinkError as exc:
                            if exc.code != 2:  # ENOENT: already gone (aged, or moved)
                                raise
                    self.stats["fdb_removed"] += 1
                elif kind == "flood_add":
                    _, vx, vtep = op
                    try:
                        ipr.fdb("append", ifindex=vx, lladdr=ZERO_MAC, dst=vtep, flags=NTF_SELF, state=NUD_PERMANENT)
                    except NetlinkError as exc:
                        if exc.code != 17:  # EEXIST: already there
                            raise
                    self.stats["flood_installed"] += 1
                elif kind == "flood_del":
                    _, vx, vtep = op
                    ipr.fdb("del", ifindex=vx, lladdr=ZERO_MAC, dst=vtep, flags=NTF_SELF)
                    self.stats["flood_removed"] += 1
                elif kind == "route_add":
                    _, br, prefix, gw = op
                    ipr.route("replace", dst=prefix, gateway=gw, oif=br, flags=4)  # RTNH_F_ONLINK
                    self.stats["routes_installed"] += 1
                elif kind == "route_del":
                    _, br, prefix = op
                    ipr.route("del", dst=prefix, oif=br)
                    self.stats["routes_removed"] += 1
            except NetlinkError as exc:
                self.stats["netlink_errors"] += 1
                self.last_error = f"{kind} {op[1:]}: {exc.args[1]}"
                log.warning("netlink request failed", extra={"op": kind, "error": str(exc.args[1])})

    def _cleanup(self, vni: int) -> None:
        names = self.names.pop(vni, None)
        if names is None or not names[2]:
            return
        ipr = self._nl()
        for name in (names[1], names[0]):
            idx = ipr.link_lookup(ifname=name)
            if idx:
                try:
                    ipr.link("del", index=idx[0])
                except Exception:  # noqa: BLE001 - best effort at shutdown
                    pass

    # -- EvpnDataplane (called from the event loop; queued) --------------------------------
    def setup_instance(self, cfg: EviConfig) -> None:
        self.devices[cfg.vni] = self._pool.submit(self._setup, cfg).result()

    def cleanup_instance(self, cfg: EviConfig) -> None:
        self.flush_sync()
        self._pool.submit(self._cleanup, cfg.vni).result()
        self.devices.pop(cfg.vni, None)

    def setup_dataplane_for_remote_endpoint(self, vni, mac, ip, vtep) -> None:
        self._ops.append(("fdb_add", self.devices[vni][1], format_mac(mac), str(vtep)))

    def remove_dataplane_for_remote_endpoint(self, vni, mac, ip, vtep) -> None:
        self._ops.append(("fdb_del", self.devices[vni][1], format_mac(mac), str(vtep)))

    def add_dataplane_for_bum_endpoint(self, vni, vtep) -> None:
        self._ops.append(("flood_add", self.devices[vni][1], str(vtep)))

    def remove_dataplane_for_bum_endpoint(self, vni, vtep) -> None:
        self._ops.append(("flood_del", self.devices[vni][1], str(vtep)))

    def add_dataplane_for_prefix(self, vni, prefix, vtep, gateway, router_mac) -> None:
        if gateway is not None and gateway.version == prefix.version:
            self._ops.append(("route_add", self.devices[vni][0], str(prefix), str(gateway)))

    def remove_dataplane_for_prefix(self, vni, prefix, vtep) -> None:
        self._ops.append(("route_del", self.devices[vni][0], str(prefix)))

    def vif_plugged(self, vni, mac, ip) -> None:
        pass  # the bridge already forwards to a local port it learned

    def vif_unplugged(self, vni, mac, ip) -> None:
        pass

    def flush(self) -> None:
        """Hand the queued requests to the worker thread (in order)."""
        if self._ops:
            ops, self._ops = self._ops, []
            fut = self._pool.submit(self._apply, ops)
            self._pending = [f for f in self._pending if not f.done()] + [fut]

    def flush_sync(self) -> None:
        self.flush()
        for f in self._pending:
            f.result()
        self._pending = []

    def close(self) -> None:
        try:
            self.flush_sync()
            for vni in list(self.names):
                self._pool.submit(self._cleanup, vni).result()
            if self._ipr is not None:
                self._pool.submit(self._ipr.close).result()
        finally:
            self._pool.shutdown(wait=True)


class BridgeMonitor:
    """Reports MACs learned on / gone from local bridge ports: ``on_event(kind, bridge_ifindex, mac)``,
    kind ``learned`` or ``gone``, called in the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, bridges: dict[int, int],
                 on_event: Callable[[str, int, bytes], None]):
        self.loop = loop
        self.bridges = bridges  # bridge ifindex -> vxlan ifindex
        self.on_event = on_event
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="evpn-monitor", daemon=True)
        self._ready = threading.Event()
        self._ipr: Any = None

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def _classify(self, msg) -> tuple[str, int, bytes] | None:
        if msg.get("family") != AF_BRIDGE:
            return None
        master = msg.get_attr("NDA_MASTER")
        if master not in self.bridges:
            return None
        lladdr = msg.get_attr("NDA_LLADDR")
        if not lladdr:
            return None
        mac = bytes.fromhex(lladdr.replace(":", ""))
        if mac[0] & 1 or mac == bytes(6):
            return None
        event = msg.get("event")
        if msg["ifindex"] == self.bridges[master] or msg["flags"] & NTF_EXT_LEARNED:
            # now behind the VXLAN port: if it was local, it moved away
            return ("gone", master, mac) if event == "RTM_NEWNEIGH" else None
        if event == "RTM_DELNEIGH":
            return ("gone", master, mac)
        if msg["state"] & NUD_PERMANENT:
            return None  # a port's own address
        return ("learned", master, mac)

    def _run(self) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.rtnl import RTMGRP_NEIGH

        try:
            self._ipr = ipr = IPRoute()
            ipr.bind(groups=RTMGRP_NEIGH)
            existing = []
            with IPRoute() as dump:
                for br in self.bridges:
                    for msg in dump.fdb("dump", master=br):
                        msg["event"] = "RTM_NEWNEIGH"
                        existing.append(msg)
            for msg in existing:
                self._emit(msg)
        finally:
            self._ready.set()
        while not self._stop.is_set():
            try:
                msgs = ipr.get()
            except Exception:  # noqa: BLE001 - the socket was closed by stop()
                break
            for msg in msgs:
                self._emit(msg)

    def _emit(self, msg) -> None:
        try:
            ev = self._classify(msg)
        except (KeyError, ValueError, TypeError):
            return
        if ev is not None:
            self.loop.call_soon_threadsafe(self.on_event, *ev)

    def stop(self) -> None:
        self._stop.set()
        if self._ipr is not None:
            try:
                # a neighbour event wakes get(); closing the socket ends it for good
                self._ipr.close()
            except Exception:  # noqa: BLE001
                pass
        self._thread.join(timeout=2)
