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

Route changes are the one hot path (a PE may import tens of thousands of VPN
routes at once): pyroute2 builds a request in 0.6-2.4 ms here, so 10,000
routes would take many seconds. :func:`route_message` packs an
``RTM_NEWROUTE`` / ``RTM_DELROUTE`` (rtnetlink's fixed ``nlmsghdr`` +
``rtmsg`` + attributes, ``include/uapi/linux/rtnetlink.h``) with ``struct``
in microseconds, and :meth:`LinuxVrf.apply` sends them in batches of 256 on
a netlink socket of the namespace, reading one acknowledgement per route.
Links, addresses and dumps stay with pyroute2.

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
import socket
import struct
from concurrent.futures import ThreadPoolExecutor

from weftnet.errors import NetworkError
from weftnet.runtime.tun import TunDevice, open_tun, set_offload

__all__ = ["LinuxVrf", "RTPROT_WEFTNET", "route_message"]

log = logging.getLogger("weftnet.l3vpn")
#: rtnetlink protocol number of the routes weftnet installs in a VRF (unassigned in iproute2's rt_protos).
RTPROT_WEFTNET = 87
_FORWARDING = ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding")
RTM_NEWROUTE, RTM_DELROUTE, NLMSG_ERROR = 24, 25, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x400
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
RT_TABLE_MAIN, RTN_UNICAST, RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 254, 1, 0, 253
_NLMSG = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
BATCH = 256


def _attr(kind: int, value: bytes) -> bytes:
    n = 4 + len(value)
    return struct.pack("=HH", n, kind) + value + bytes(-n % 4)


def route_message(seq: int, prefix, oif: int = 0, gateway: str = "", delete: bool = False) -> bytes:
    """One rtnetlink request that replaces (or deletes) ``prefix`` in the main table, protocol RTPROT_WEFTNET."""
    fam = socket.AF_INET if prefix.version == 4 else socket.AF_INET6
    attrs = _attr(RTA_TABLE, struct.pack("=I", RT_TABLE_MAIN)) + _attr(RTA_DST, prefix.network_address.packed)
    scope = RT_SCOPE_UNIVERSE
    if not delete:
        if gateway:
            attrs += _attr(RTA_GATEWAY, ipaddress.ip_address(gateway).packed)
        elif oif:
            scope = RT_SCOPE_LINK
        if oif:
            attrs += _attr(RTA_OIF, struct.pack("=i", oif))
    body = _RTMSG.pack(fam, prefix.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_WEFTNET, scope, RTN_UNICAST, 0) + attrs
    if delete:
        kind, flags = RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK
    else:
        kind, flags = RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE | NLM_F_CREATE
    return _NLMSG.pack(_NLMSG.size + len(body), kind, flags, seq, 0) + body


class LinuxVrf:
    """One VRF's namespace on this host (see the module docstring)."""

    def __init__(self, name: str, netns: str, tun_name: str, mtu: int, offload: bool):
        self.name, self.netns, self.tun_name, self.mtu, self.offload = name, netns, tun_name, mtu, offload
        self.created = False
        self.tun: TunDevice | None = None
        self._ipr = None
        self._nl: socket.socket | None = None  # route batches (route_message)
        self._seq = 0
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
            self._nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE, same namespace
            self._nl.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self._nl.bind((0, 0))
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
        """Program ``[(prefix, KernelRoute or None)]`` into the namespace's main table, in batches."""
        if self._nl is None:
            return
        pending: dict[int, tuple] = {}
        msgs = []
        for prefix, route in changes:
            self._seq = (self._seq % 0x7FFFFFFF) + 1
            try:
                if route is None:
                    msg = route_message(self._seq, prefix, delete=True)
                else:
                    oif = self._tun_index if route.tun else (self._index(route.dev) if route.dev else 0)
                    msg = route_message(self._seq, prefix, oif, "" if route.tun else route.via)
            except (NetworkError, ValueError) as exc:
                self.stats["route_errors"] += 1
                log.warning("VRF route not programmed", extra={"vrf": self.name, "prefix": str(prefix),
                                                               "error": str(exc)})
                continue
            pending[self._seq] = (prefix, route)
            msgs.append(msg)
            if len(msgs) >= BATCH:
                self._send_batch(msgs, pending)
                msgs, pending = [], {}
        if msgs:
            self._send_batch(msgs, pending)

    def _send_batch(self, msgs: list[bytes], pending: dict[int, tuple]) -> None:
        self._nl.send(b"".join(msgs))
        while pending:
            data = self._nl.recv(1 << 20)
            off = 0
            while off + _NLMSG.size <= len(data):
                length, kind, _flags, seq, _pid = _NLMSG.unpack_from(data, off)
                if length < _NLMSG.size:
                    break
                if kind == NLMSG_ERROR and seq in pending:
                    code = -struct.unpack_from("=i", data, off + 16)[0]
                    prefix, route = pending.pop(seq)
                    if route is None:
                        if code == 0:
                            self.stats["routes_removed"] += 1
                        elif code not in (errno.ESRCH, errno.ENOENT):
                            self.stats["route_errors"] += 1
                    elif code == 0:
                        self.stats["routes_installed"] += 1
                    else:
                        self.stats["route_errors"] += 1
                        log.warning("VRF route not programmed", extra={
                            "vrf": self.name, "prefix": str(prefix), "error": errno.errorcode.get(code, str(code))})
                off += (length + 3) & ~3

    def _flush(self) -> None:
        """Remove every route a previous run of weftnet left in the namespace (or this run, at exit)."""
        gone = []
        for fam in (2, 10):
            for r in self._ipr.get_routes(family=fam, proto=RTPROT_WEFTNET):
                gone.append((ipaddress.ip_network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}"), None))
        self.apply(gone)

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
        if self._nl is not None:
            self._nl.close()
            self._nl = None

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
