"""The provider edge at run time: VRF namespaces and TUNs, CE sessions, the BGP glue and the kernel sync.

The protocol is in ``weftnet.core.l3vpn`` (the plane: VRF tables, import and
export, labels, the labelled data plane) and ``weftnet.core.bgp`` (the
speakers). This module only connects them to the world (docs/l3vpn.md):

* per VRF, a :class:`~weftnet.runtime.vrfnet.LinuxVrf` (its namespace, TUN
  and routing table) and, if it has CE neighbours, a BGP speaker of its own
  whose sockets live in the VRF's namespace (IPv4/IPv6 unicast, eBGP). A
  CE's paths become the VRF's site routes (a path listener, so a CE route is
  heard even where a route we originate for the same prefix is preferred);
  the VRF's imported routes are originated towards its CEs;
* the node's ``[bgp]`` speaker carries VPNv4/VPNv6 between PEs: its best
  paths feed :meth:`L3vpnPlane.update_vpn`; the plane's exports are
  originated there with RD, route targets and label;
* kernel route changes go to the namespaces from one task, in batches, in
  a worker thread.

After any input the service runs :meth:`_pump` once (scheduled, so a burst of
routes is one batch): exports to the PE speaker, VRF changes to the CE
speakers, kernel changes to the sync task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

from weftnet.core.l3vpn.bgp import ce_attributes, export_route, site_route_from_path, vpn_route_from_path, withdrawal
from weftnet.core.l3vpn.labels import LabelAllocator
from weftnet.core.l3vpn.vrf import LocalRoute, vrf_key
from weftnet.errors import ConfigError, NetworkError
from weftnet.runtime.tun import read_wakeup
from weftnet.runtime.vrfnet import LinuxVrf

__all__ = ["L3vpnService"]

log = logging.getLogger("weftnet.l3vpn")


class L3vpnService:
    def __init__(self, core: Any, driver: Any, cfg: Any, tuns: dict, loop: asyncio.AbstractEventLoop):
        self.core = core
        self.plane = core.l3vpn
        self.driver = driver
        self.cfg = cfg
        self.tuns = tuns  # the daemon's TUN table: VRF TUNs are written through it and closed with it
        self.loop = loop
        self.vrfs: dict[str, LinuxVrf] = {}
        self.ce_bgp: dict[str, Any] = {}  # VRF name -> BgpService in its namespace
        self.bgp: Any = None  # the node's [bgp] service (PE-PE VPN routes)
        self._pump_scheduled = False
        #: VRF TUNs whose last wake-up read several packets; the others send a wake-up's first
        #: packet before reading on (:meth:`_on_tun_readable`).
        self._dense: set[bytes] = set()
        self._kernel_pending: dict[str, dict] = {}
        self._kernel_wake = asyncio.Event()
        self.stats = {"kernel_batches": 0, "kernel_routes": 0, "ce_routes_in": 0, "vpn_routes_in": 0}
        #: Monotonic times (the loop's clock) of the first and latest VPN route change from BGP, and of the
        #: end of the latest kernel batch: how long a burst of routes took, as the daemon saw it.
        self.times = {"vpn_first": None, "vpn_last": None, "kernel_done": None}

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, bgp: Any) -> None:
        """Bring up every VRF (namespace, TUN, static routes) and hook into the PE speaker ``bgp``
        (call before ``bgp.start()``, so no route is missed). CE sessions start in :meth:`start_ce`."""
        cfg, plane = self.cfg, self.plane
        l3 = cfg.l3vpn
        if l3 is not None:
            plane.labels = LabelAllocator(l3.label_low, l3.label_high)
        nexthop = (l3.nexthop if l3 is not None else "") or (str(cfg.bgp.router_id) if cfg.bgp is not None else "")
        plane.nexthop = nexthop
        if l3 is not None and l3.pes:
            plane.set_pes(l3.pes)
        if any(vs.ce for vs in cfg.vrfs.values()) and cfg.bgp is None:
            raise ConfigError("a [vrf] with ce neighbours needs a [bgp] section (the PE's AS and router ID)")
        self.bgp = bgp
        if bgp is not None:
            bgp.speaker.add_listener(self._on_vpn_best)
        for name, vs in cfg.vrfs.items():
            plane.add_vrf(vs.core)
            lv = LinuxVrf(name, vs.netns, vs.tun, vs.mtu, vs.offload)
            self.vrfs[name] = lv
            tun = await self.loop.run_in_executor(lv.executor, lv.setup)
            key = vrf_key(name)
            self.tuns[key] = tun
            tun.set_blocking(False)
            self.loop.add_reader(tun.fileno(), self._on_tun_readable, key, tun)
            for r in vs.static:
                plane.set_local_route(name, LocalRoute(r.prefix, "static", r.via, r.dev))
            log.info("vrf up", extra={"vrf": name, "netns": vs.netns, "tun": tun.name, "rd": vs.core.rd.hex(),
                                      "label": plane.vrfs[name].label, "static": len(vs.static), "ce": len(vs.ce),
                                      "created_netns": lv.created})
        self._schedule()

    async def start_ce(self) -> None:
        """Start each VRF's CE speaker, its sockets inside the VRF's namespace."""
        from weftnet.core.bgp.family import IPV4_UNICAST, IPV6_UNICAST
        from weftnet.runtime.bgp import BgpService
        from weftnet.runtime.bgpconfig import BgpSettings

        g = self.cfg.bgp
        for name, vs in self.cfg.vrfs.items():
            if not vs.ce:
                continue
            listen = "::" if any(":" in p.address for p in vs.ce) else "0.0.0.0"
            settings = BgpSettings(g.asn, g.router_id, listen=listen, port=179, families=(IPV4_UNICAST, IPV6_UNICAST),
                                   hold_time=g.hold_time, graceful_restart_time=g.graceful_restart_time,
                                   connect_retry=1.0, peers=list(vs.ce))
            svc = BgpService(settings, self.loop, netns=vs.netns)
            svc.speaker.add_path_listener(partial(self._on_ce_path, name))
            self.ce_bgp[name] = svc
            await svc.start()
        self._schedule()

    async def run(self) -> None:
        """The kernel sync task: programs route changes into the namespaces, in batches, until cancelled."""
        while True:
            await self._kernel_wake.wait()
            self._kernel_wake.clear()
            pending, self._kernel_pending = self._kernel_pending, {}
            for name, changes in pending.items():
                lv = self.vrfs.get(name)
                if lv is not None and changes:
                    t0 = time.monotonic()
                    await self.loop.run_in_executor(lv.executor, lv.apply, list(changes.items()))
                    self.stats["kernel_batches"] += 1
                    self.stats["kernel_routes"] += len(changes)
                    self.times["kernel_done"] = self.loop.time()
                    log.debug("vrf routes programmed", extra={"vrf": name, "routes": len(changes),
                                                             "seconds": round(time.monotonic() - t0, 3)})

    async def close(self) -> None:
        for svc in self.ce_bgp.values():
            await svc.close()
        self.ce_bgp.clear()
        for name, lv in self.vrfs.items():
            tun = self.tuns.pop(vrf_key(name), None)
            if tun is not None and tun.fd >= 0:
                self.loop.remove_reader(tun.fileno())
            await self.loop.run_in_executor(lv.executor, lv.close)
        self.vrfs.clear()

    # -- data plane ---------------------------------------------------------------------------------
    def _on_tun_readable(self, key: bytes, tun: Any) -> None:
        # A VRF whose last wake-up read one packet sends this one's first before reading on
        # (tun.read_wakeup: as the private networks' reader does).
        packets, sparse = read_wakeup(tun.fileno(), key not in self._dense, lambda first: self._send(key, [first]),
                                      log, "VRF TUN read failed", tun.name)
        if sparse:
            self._dense.discard(key)
        else:
            self._dense.add(key)
        if packets:
            self._send(key, packets)

    def drain(self, key: bytes, tun: Any) -> None:
        """The daemon wrote to the TUN ``key`` (Daemon._drain_tuns): if it is a VRF's, read what
        the VRF's namespace answered (queued by the time the write returned) and send it on now,
        as a wake-up of its reader would, without waiting for the event loop to deliver one."""
        if key in self.plane._by_key:
            self._on_tun_readable(key, tun)

    def _send(self, key: bytes, packets: list[bytes]) -> None:
        self.core.l3vpn_outbound(key, packets, time.time())
        self.driver.transmit()

    # -- BGP glue ----------------------------------------------------------------------------------
    def _on_ce_path(self, vrf: str, fam, key: bytes, source: str, path, nlri, now: float) -> None:
        if source == "local":
            return  # a route we originate towards the CEs
        if path is None:
            self.plane.remove_local_route(vrf, nlri.network, f"ce:{source}")
        else:
            self.stats["ce_routes_in"] += 1
            self.plane.set_local_route(vrf, site_route_from_path(source, path))
        self._schedule()

    def _on_vpn_best(self, fam, key: bytes, old, new, now: float) -> None:
        from weftnet.core.bgp.family import VPNV4, VPNV6

        if fam not in (VPNV4, VPNV6):
            return
        self.times["vpn_last"] = self.loop.time()
        if self.times["vpn_first"] is None:
            self.times["vpn_first"] = self.times["vpn_last"]
        if new is None or new.local:  # gone, or our own export won (the plane holds those already)
            if old is not None and not old.local:
                self.plane.update_vpn(withdraw=[(old.nlri.rd.packed, old.nlri.network)])
                self._schedule()
            return
        self.stats["vpn_routes_in"] += 1
        self.plane.update_vpn([vpn_route_from_path(new)])
        self._schedule()

    def _schedule(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self.loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_scheduled = False
        now = self.loop.time()
        plane = self.plane
        exports = plane.export_changes()
        if exports and self.bgp is not None:
            self._advertise_vpn(exports, now)
        changes = plane.vrf_changes()
        if changes:
            self._advertise_to_ces(changes, now)
        kernel = plane.kernel_changes()
        if kernel:
            for (vrf, prefix), route in kernel.items():
                self._kernel_pending.setdefault(vrf, {})[prefix] = route
            self._kernel_wake.set()

    def _advertise_vpn(self, exports: dict, now: float) -> None:
        speaker = self.bgp.speaker
        for (rd, prefix), route in exports.items():
            if route is None:
                speaker.withdraw(withdrawal(rd, prefix), now, flush=False)
            else:
                nlri, attrs, nh = export_route(route, self.plane.nexthop)
                speaker.originate(nlri, attrs, nh, now, flush=False)
        speaker.flush(now)
        self.bgp.transmit()

    def _advertise_to_ces(self, changes: dict, now: float) -> None:
        from weftnet.core.bgp.nlri import Prefix

        touched = set()
        for (vrf, prefix), entry in changes.items():
            svc = self.ce_bgp.get(vrf)
            if svc is None:
                continue
            touched.add(vrf)
            attrs = ce_attributes(entry)
            if attrs is None:
                svc.speaker.withdraw(Prefix(prefix), now, flush=False)
            else:
                svc.speaker.originate(Prefix(prefix), attrs, None, now, flush=False)
        for vrf in touched:
            svc = self.ce_bgp[vrf]
            svc.speaker.flush(now)
            svc.transmit()

    # -- control API ----------------------------------------------------------------------------------
    def status(self) -> dict:
        now = self.loop.time()
        return {**self.stats, **{f"{k}_ago": (None if v is None else round(now - v, 3)) for k, v in self.times.items()},
                "vpn_burst_s": (None if self.times["vpn_first"] is None
                                else round(self.times["vpn_last"] - self.times["vpn_first"], 3)),
                "kernel_after_first_s": (None if None in (self.times["kernel_done"], self.times["vpn_first"])
                                         else round(self.times["kernel_done"] - self.times["vpn_first"], 3))}

    def vrf_list(self) -> list[dict]:
        out = self.plane.vrf_status()
        for v in out:
            lv = self.vrfs.get(v["name"])
            vs = self.cfg.vrfs.get(v["name"])
            v["netns"] = lv.netns if lv else ""
            v["tun"] = lv.tun.name if lv and lv.tun else ""
            v["kernel"] = dict(lv.stats) if lv else {}
            svc = self.ce_bgp.get(v["name"])
            v["ce"] = ([{"peer": p["peer"], "state": p["state"], "remote_as": p["remote_as"],
                         "prefixes_received": p["prefixes_received"], "prefixes_sent": p["prefixes_sent"]}
                        for p in svc.summary()["peers"]] if svc else
                       [{"peer": p.address, "state": "-", "remote_as": p.remote_as} for p in (vs.ce if vs else [])])
        return out

    async def vrf_routes(self, name: str, kernel: bool = False) -> dict:
        if name not in self.plane.vrfs:
            raise NetworkError(f"no VRF named {name!r} (weft vrf ls lists them)")
        out = {"vrf": name, "routes": self.plane.vrf_routes(name)}
        if kernel and name in self.vrfs:
            lv = self.vrfs[name]
            out["kernel"] = await self.loop.run_in_executor(lv.executor, lv.installed)
        return out
