"""A VRF on Linux: its own network namespace, its TUN, and the routing table the daemon programs there.

This kernel has no VRF device (``CONFIG_NET_VRF``), so each VRF is a network
namespace (docs/l3vpn.md): the customer-facing interfaces (veth or physical,
put there by the operator) and the VRF's TUN live in it, forwarding is on,
and its main routing table holds the VRF's routes: imported VPN prefixes
point into the TUN (the daemon reads them and sends them, labelled, to the
remote PE), site prefixes point at the CE. Everything goes over rtnetlink
with pyroute2's ``IPRoute(netns=...)``; nothing runs ``ip``. Routes the
daemon installs carry protocol number :data:`RTPROT_WEFTNET`, so a restart
removes leftovers of the previous run and nothing else.

All methods here block (netlink round trips) and run on the VRF's own
worker thread (:attr:`LinuxVrf.executor`). That thread opens the netlink
socket *inside* the namespace (``pushns``, then a plain ``IPRoute()``), so
nothing forks: pyroute2's ``IPRoute(netns=...)`` creates its socket in a
forked child, and a child forked after asyncio installed its signal
handlers shares the loop's wake-up fd, so the SIGTERM that ends the child
reads in the daemon as a SIGTERM of its own.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from concurrent.futures import ThreadPoolExecutor

from weftnet.errors import NetworkError
from weftnet.runtime.tun import TunDevice, open_tun, set_offload

__all__ = ["LinuxVrf", "RTPROT_WEFTNET"]

log = logging.getLogger("weftnet.l3vpn")
#: rtnetlink protocol number of the routes weftnet installs in a VRF (unassigned in iproute2's rt_protos).
RTPROT_WEFTNET = 87
_FORWARDING = ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding")


class LinuxVrf:
    """One VRF's namespace on this host (see the module docstring)."""

    def __init__(self, name: str, netns: str, tun_name: str, mtu: int, offload: bool):
        self.name, self.netns, self.tun_name, self.mtu, self.offload = name, netns, tun_name, mtu, offload
        self.created = False
        self.tun: TunDevice | None = None
        self._ipr = None
        self._tun_index = 0
        self._indexes: dict[str, int] = {}
        self.stats = {"routes_installed": 0, "routes_removed": 0, "route_errors": 0}
        #: Every call below runs here: one thread per VRF, which alone enters the namespace.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"vrf-{name}"[:15])

    def setup(self) -> TunDevice:
        """Create the namespace if it is missing, turn forwarding on, open and configure the TUN."""
        from pyroute2 import IPRoute
        from pyroute2 import netns as pr_netns
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            if self.netns not in pr_netns.listnetns():
                pr_netns.create(self.netns)
                self.created = True
            pr_netns.pushns(self.netns)
        except OSError as exc:
            raise NetworkError(f"VRF {self.name!r}: entering namespace {self.netns!r}: {exc.strerror or exc}") from None
        tun = None
        try:
            for path in _FORWARDING:  # /proc/sys/net shows the namespace of the thread that opens it
                with open(path, "w") as f:
                    f.write("1")
            tun = open_tun(self.tun_name, vnet_hdr=True)  # created in this thread's namespace
            self._ipr = IPRoute()  # a netlink socket bound to the namespace for good
            if self.offload:
                set_offload(tun)
            self._tun_index = self._ipr.link_lookup(ifname=tun.name)[0]
            self._ipr.link("set", index=self._tun_index, mtu=self.mtu, state="up")
            self._flush()
        except (OSError, NetlinkError) as exc:
            if tun is not None:
                tun.close()
            self._close_ipr()
            raise NetworkError(f"VRF {self.name!r}: setting up namespace {self.netns!r}: {exc}") from None
        except BaseException:
            if tun is not None:
                tun.close()
            self._close_ipr()
            raise
        finally:
            pr_netns.popns()
        self.tun = tun
        return tun

    def _index(self, dev: str) -> int:
        idx = self._indexes.get(dev)
        if idx is None:
            found = self._ipr.link_lookup(ifname=dev)
            if not found:
                raise NetworkError(f"VRF {self.name!r}: no interface {dev!r} in namespace {self.netns!r}")
            idx = self._indexes[dev] = found[0]
        return idx

    def apply(self, changes: list) -> None:
        """Program ``[(prefix, KernelRoute or None)]`` into the namespace's main table."""
        from pyroute2.netlink.exceptions import NetlinkError

        ipr = self._ipr
        if ipr is None:
            return
        for prefix, route in changes:
            fam = 2 if prefix.version == 4 else 10
            dst = str(prefix)
            try:
                if route is None:
                    try:
                        ipr.route("del", dst=dst, family=fam, proto=RTPROT_WEFTNET)
                        self.stats["routes_removed"] += 1
                    except NetlinkError as exc:
                        if exc.code not in (errno.ESRCH, errno.ENOENT):
                            raise
                    continue
                kw = {"dst": dst, "family": fam, "proto": RTPROT_WEFTNET}
                if route.tun:
                    kw["oif"] = self._tun_index
                else:
                    if route.via:
                        kw["gateway"] = route.via
                    if route.dev:
                        kw["oif"] = self._index(route.dev)
                ipr.route("replace", **kw)
                self.stats["routes_installed"] += 1
            except (NetlinkError, NetworkError, ValueError) as exc:
                self.stats["route_errors"] += 1
                log.warning("VRF route not programmed", extra={"vrf": self.name, "prefix": dst, "error": str(exc)})

    def _flush(self) -> None:
        """Remove every route a previous run of weftnet left in the namespace."""
        for fam in (2, 10):
            for r in self._ipr.get_routes(family=fam, proto=RTPROT_WEFTNET):
                try:
                    self._ipr.route("del", dst=f"{r.get_attr('RTA_DST')}/{r['dst_len']}", family=fam,
                                    proto=RTPROT_WEFTNET)
                except Exception:  # noqa: BLE001 - best effort: a route that vanished meanwhile
                    pass

    def installed(self) -> dict[str, dict]:
        """Routes of ours the kernel holds now: prefix -> {"dev" or "via"} (for tests and `weft vrf routes`)."""
        out = {}
        if self._ipr is None:
            return out
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in self._ipr.get_links()}
        for fam in (2, 10):
            for r in self._ipr.get_routes(family=fam, proto=RTPROT_WEFTNET):
                net = ipaddress.ip_network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}")
                out[str(net)] = {"dev": names.get(r.get_attr("RTA_OIF"), ""), "via": r.get_attr("RTA_GATEWAY") or ""}
        return out

    def _close_ipr(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def close(self) -> None:
        """Remove our routes, close the TUN, and delete the namespace if this run created it."""
        if self._ipr is not None:
            try:
                self._flush()
            except Exception as exc:  # noqa: BLE001 - shutting down: report, go on
                log.warning("could not remove VRF routes", extra={"vrf": self.name, "error": str(exc)})
        self._close_ipr()
        if self.tun is not None:
            self.tun.close()
            self.tun = None
        if self.created:
            from pyroute2 import netns as pr_netns

            try:
                pr_netns.remove(self.netns)
            except OSError as exc:
                log.warning("could not remove VRF namespace", extra={"vrf": self.name, "netns": self.netns,
                                                                     "error": exc.strerror})
            self.created = False
        self.executor.shutdown(wait=False)
