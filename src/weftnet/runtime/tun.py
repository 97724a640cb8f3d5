"""TUN devices for private networks: create, configure, move between network namespaces.

A TUN device (Linux Documentation/networking/tuntap.rst) is opened by
``open("/dev/net/tun")`` and the ``TUNSETIFF`` ioctl with ``IFF_TUN |
IFF_NO_PI``: every ``read`` then returns one IP packet and every ``write``
injects one, with no packet-information prefix. ``IFF_VNET_HDR`` (optional)
prepends a ``virtio_net_hdr`` to each packet, which is what GSO/GRO offload
needs later; the VPN core expects plain packets, so a caller that asks for it
strips the header itself.

The device is created in the network namespace of the calling thread, so a
TUN for a namespace is opened after ``setns`` into it (pyroute2's
``pushns``/``popns``); an existing TUN can also be moved with a netlink
``IFLA_NET_NS_FD`` request. Addresses, MTU, link state and routes are set
over rtnetlink with pyroute2's ``IPRoute`` (``netns=`` for a namespace),
never by running ``ip``.

All of this needs CAP_NET_ADMIN; without it every function raises
:class:`~weftnet.errors.NetworkError` saying so.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import os
import select
import struct
from dataclasses import dataclass
from typing import Callable, Iterable

from weftnet.errors import NetworkError

#: Packets one wake-up of a TUN reader takes at most (the rest wait for the next).
TUN_BATCH = 64
#: A read's size: the virtio_net_hdr and the largest packet.
TUN_READ_SIZE = 10 + 65_535

__all__ = [
    "TUN_PATH",
    "TunDevice",
    "open_tun",
    "configure_tun",
    "move_to_netns",
    "link_info",
    "set_offload",
    "set_txqueuelen",
    "cap_superpackets",
]

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_USO4 = 0x20  # Linux 6.2: UDP segmentation offload (UDP_SEGMENT packets reach us whole)
TUN_F_USO6 = 0x40
IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFNAMSIZ = 16
_IFREQ = struct.Struct(f"{IFNAMSIZ}sH22x")  # struct ifreq: name + flags, padded to 40 bytes

_NEED_CAP = ("needs CAP_NET_ADMIN: run weft up as root, or as a service that grants only that capability "
             "(AmbientCapabilities=CAP_NET_ADMIN; 'weft install-service' writes such a systemd unit)")


def _check_name(name: str) -> bytes:
    raw = name.encode("ascii", "strict") if name.isascii() else b""
    if not raw or len(raw) >= IFNAMSIZ or b"/" in raw or b" " in raw:
        raise NetworkError(f"interface name {name!r} must be 1-{IFNAMSIZ - 1} ASCII characters without '/' or spaces")
    return raw


def _netlink_error(action: str, exc: Exception) -> NetworkError:
    code = getattr(exc, "code", None)
    if code in (errno.EPERM, errno.EACCES):
        return NetworkError(f"{action}: {_NEED_CAP}")
    return NetworkError(f"{action}: {exc}")


@dataclass
class TunDevice:
    """An open TUN device: ``read()`` one packet, ``write()`` one packet."""

    fd: int
    name: str
    netns: str | None = None
    vnet_hdr: bool = False

    def fileno(self) -> int:
        return self.fd

    def read(self, size: int = 65_535) -> bytes:
        return os.read(self.fd, size)

    def write(self, packet: bytes) -> int:
        return os.write(self.fd, packet)

    def set_blocking(self, blocking: bool) -> None:
        os.set_blocking(self.fd, blocking)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "TunDevice":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_here(name: str, vnet_hdr: bool, persist: bool, tap: bool = False,
               multi_queue: bool = False) -> tuple[int, str]:
    raw = _check_name(name)
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetworkError(f"{TUN_PATH} does not exist: load the tun module (modprobe tun) or give the "
                           "container the device") from None
    except PermissionError:
        raise NetworkError(f"opening {TUN_PATH} {_NEED_CAP}") from None
    flags = (IFF_TAP if tap else IFF_TUN) | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
    if multi_queue:
        flags |= 0x0100  # IFF_MULTI_QUEUE: more queues attach later (runtime/dpsteer.py)
    try:
        res = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(raw, flags))
        if persist:
            fcntl.ioctl(fd, TUNSETPERSIST, 1)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise NetworkError(f"creating TUN device {name!r} {_NEED_CAP}") from None
        if exc.errno == errno.EBUSY:
            raise NetworkError(f"TUN device {name!r} is already open by another process") from None
        if exc.errno == errno.EINVAL:
            raise NetworkError(f"{name!r} exists and is not a {'TAP' if tap else 'TUN'} device this process may "
                               "open") from None
        raise NetworkError(f"creating TUN device {name!r}: {exc.strerror}") from None
    actual = _IFREQ.unpack(res)[0].rstrip(b"\x00").decode("ascii")
    return fd, actual


def open_tun(name: str = "weft%d", *, netns: str | None = None, vnet_hdr: bool = False,
             persist: bool = False, tap: bool = False, multi_queue: bool = False) -> TunDevice:
    """Create (or attach to) a TUN device, optionally inside the named network namespace.

    ``name`` may hold ``%d`` for the kernel to pick the number. The namespace
    must exist (``/run/netns/<name>``). The device lives as long as the file
    descriptor unless ``persist`` is set. ``tap``: a TAP device (``IFF_TAP``,
    Ethernet frames) for a layer-2 network (runtime/l2dev.py).
    """
    if netns is None:
        fd, actual = _open_here(name, vnet_hdr, persist, tap, multi_queue)
        return TunDevice(fd, actual, None, vnet_hdr)
    from pyroute2 import netns as pr_netns

    if netns not in pr_netns.listnetns():
        raise NetworkError(f"network namespace {netns!r} does not exist")
    try:
        pr_netns.pushns(netns)
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise NetworkError(f"entering network namespace {netns!r} {_NEED_CAP}") from None
        raise NetworkError(f"entering network namespace {netns!r}: {exc}") from None
    try:
        fd, actual = _open_here(name, vnet_hdr, persist, tap, multi_queue)
    finally:
        pr_netns.popns()
    return TunDevice(fd, actual, netns, vnet_hdr)


def set_offload(tun: TunDevice, tso: bool = True, uso: bool = False) -> bool:
    """Ask the kernel for checksum offload and TCP segmentation offload (needs ``vnet_hdr``).

    ``uso``: UDP segmentation offload too (``TUN_F_USO4/6``, Linux 6.2), so a
    burst an application sent with ``UDP_SEGMENT`` is read as one packet. Only
    for a data plane that carries ``GSO_UDP_L4`` packets (layer 3); an older
    kernel refuses the flags and the TUN keeps TCP offload. Returns whether
    UDP offload is on.
    """
    if not tun.vnet_hdr:
        raise NetworkError(f"offload on {tun.name!r} needs a TUN opened with vnet_hdr=True")
    flags = TUN_F_CSUM | (TUN_F_TSO4 | TUN_F_TSO6 if tso else 0)
    if uso:
        try:
            fcntl.ioctl(tun.fd, TUNSETOFFLOAD, flags | TUN_F_USO4 | TUN_F_USO6)
            return True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise NetworkError(f"enabling offload on {tun.name!r}: {exc.strerror}") from None
    try:
        fcntl.ioctl(tun.fd, TUNSETOFFLOAD, flags)
    except OSError as exc:
        raise NetworkError(f"enabling offload on {tun.name!r}: {exc.strerror}") from None
    return False


def set_txqueuelen(name: str, qlen: int, *, netns: str | None = None) -> None:
    """Set the device's transmit queue length (packets the kernel holds for our reads)."""
    from pyroute2.netlink.exceptions import NetlinkError

    with _iproute(netns) as ipr:
        try:
            ipr.link("set", index=_index(ipr, name), txqlen=qlen)
        except NetlinkError as exc:
            raise _netlink_error(f"setting the queue length of {name!r}", exc) from None


def cap_superpackets(name: str, gso_max_size: int, *, netns: str | None = None) -> bool:
    """Cap the TCP superpackets the kernel hands this TUN at ``gso_max_size`` bytes
    (``IFLA_GSO_MAX_SIZE``), so that each one crosses as one chunk (docs/dataplane.md). False
    if the kernel refuses (the superpackets then keep their default size and cross in two)."""
    from pyroute2.netlink.exceptions import NetlinkError

    with _iproute(netns) as ipr:
        try:
            ipr.link("set", index=_index(ipr, name), gso_max_size=gso_max_size)
        except NetlinkError:
            return False
    return True


def _iproute(netns: str | None):
    """An rtnetlink socket in ``netns`` (or here), opened by entering the namespace.

    Not ``IPRoute(netns=...)``: that forks a helper process, and a child
    forked after asyncio installed its signal handlers shares the event
    loop's wake-up fd, so when pyroute2 ends it with SIGTERM the daemon sees
    a SIGTERM of its own (a config reload that restarts a network in a
    namespace would stop the node). A socket keeps the namespace it was made
    in, so entering, opening and leaving on this thread is enough.
    """
    from pyroute2 import IPRoute
    from pyroute2 import netns as pr_netns

    try:
        if not netns:
            return IPRoute()
        pr_netns.pushns(netns)
        try:
            return IPRoute()
        finally:
            pr_netns.popns()
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise NetworkError(f"opening rtnetlink in {netns!r} {_NEED_CAP}") from None
        raise NetworkError(f"opening rtnetlink{' in ' + repr(netns) if netns else ''}: {exc}") from None


def _index(ipr, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise NetworkError(f"no interface named {name!r}")
    return found[0]


def configure_tun(
    name: str,
    *,
    addresses: Iterable[str] = (),
    mtu: int | None = None,
    up: bool = True,
    routes: Iterable[str] = (),
    netns: str | None = None,
) -> None:
    """Set MTU, addresses (``"10.1.0.2/24"``, ``"fd00:1::2/64"``), link up and extra routes.

    ``routes`` are destination prefixes sent to this device (the prefixes of
    the addresses already get their connected routes from the kernel).
    """
    from pyroute2.netlink.exceptions import NetlinkError

    with _iproute(netns) as ipr:
        try:
            idx = _index(ipr, name)
            if mtu is not None:
                ipr.link("set", index=idx, mtu=mtu)
            for a in addresses:
                iface = ipaddress.ip_interface(a)
                ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                         family=2 if iface.version == 4 else 10)
            if up:
                ipr.link("set", index=idx, state="up")
            for r in routes:
                net = ipaddress.ip_network(r, strict=True)
                ipr.route("add", dst=str(net), oif=idx, family=2 if net.version == 4 else 10)
        except NetlinkError as exc:
            raise _netlink_error(f"configuring {name!r}", exc) from None
        except ValueError as exc:
            raise NetworkError(f"configuring {name!r}: {exc}") from None


def move_to_netns(name: str, netns: str, *, from_netns: str | None = None) -> None:
    """Move interface ``name`` into the existing network namespace ``netns``.

    The kernel drops its addresses and sets it down on the way; configure it
    again inside (``configure_tun(..., netns=netns)``). An open TUN file
    descriptor keeps working after the move.
    """
    from pyroute2 import netns as pr_netns
    from pyroute2.netlink.exceptions import NetlinkError

    if netns not in pr_netns.listnetns():
        raise NetworkError(f"network namespace {netns!r} does not exist")
    with _iproute(from_netns) as ipr:
        try:
            ipr.link("set", index=_index(ipr, name), net_ns_fd=netns)
        except NetlinkError as exc:
            raise _netlink_error(f"moving {name!r} to namespace {netns!r}", exc) from None


def link_info(name: str, *, netns: str | None = None) -> dict:
    """State of an interface as the kernel reports it: up, MTU, addresses (``addr/len``), flags."""
    from pyroute2.netlink.exceptions import NetlinkError

    with _iproute(netns) as ipr:
        try:
            idx = _index(ipr, name)
            (link,) = ipr.get_links(idx)
            addrs = sorted(
                f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx)
            )
        except NetlinkError as exc:
            raise _netlink_error(f"reading {name!r}", exc) from None
        flags = link["flags"]
        return {
            "name": name,
            "index": idx,
            "up": bool(flags & 0x1),  # IFF_UP
            "running": bool(flags & 0x40),  # IFF_RUNNING: carrier, i.e. the TUN fd is open
            "mtu": link.get_attr("IFLA_MTU"),
            "addresses": addrs,
            "operstate": link.get_attr("IFLA_OPERSTATE"),
        }


#: A zero-timeout ``poll`` of each fd :func:`read_wakeup` reads, by fd number (poll(2) takes the
#: number at each call, so a number reused for another TUN polls that one). Bounded by the
#: process's descriptors.
_POLLS: dict[int, Callable[[int], list]] = {}


def poller(fd: int) -> Callable[[int], list]:
    """``poll(timeout_ms)`` of ``fd`` for readability: a non-empty list when a read would return
    something (or fail), empty when it would find the queue empty."""
    p = _POLLS.get(fd)
    if p is None:
        obj = select.poll()
        obj.register(fd, select.POLLIN)
        p = _POLLS[fd] = obj.poll
    return p


def queued(fd: int) -> bool:
    """Would a read of ``fd`` return something (or fail) now? A zero-timeout poll."""
    poll = _POLLS.get(fd)
    return bool((poll or poller(fd))(0))


def read_wakeup(fd: int, sparse: bool, send_first: Callable[[bytes], None], log: logging.Logger, what: str,
                name: str) -> tuple[list[bytes], bool]:
    """One wake-up's reads of a TUN (at most :data:`TUN_BATCH` packets), for the daemon's, the
    overlay interface's and the VRFs' readers: ``(packets, sparse)``, the packets read and
    whether this wake-up read one packet. If the last one did (``sparse``: a ping, a request),
    the first packet goes to ``send_first`` before reading on, so the read that finds a lone
    packet's queue empty (a system call and an exception, 5-11 µs on cold caches) comes after
    its send, off its way (docs/dataplane.md, "Latency"); bursts still go as batches. After that
    first packet a zero-timeout ``poll`` asks whether more is queued, and only then is the queue
    read on: the read that finds it empty raises ``BlockingIOError``, which costs several times a
    poll's CPU on cold caches (docs/dataplane.md, "Ninth ping round"). A failed read is logged
    as ``what`` and ends the wake-up."""
    batch = TUN_BATCH
    if sparse:
        try:
            first = os.read(fd, TUN_READ_SIZE)
        except BlockingIOError:
            return [], sparse
        except OSError as exc:
            log.warning(what, extra={"tun": name, "error": exc.strerror})
            return [], sparse
        send_first(first)
        if not queued(fd):
            return [], True  # (nothing queued behind it: no read that finds the queue empty)
        batch -= 1
    packets = []
    for _ in range(batch):
        try:
            packets.append(os.read(fd, TUN_READ_SIZE))
        except BlockingIOError:
            break
        except OSError as exc:
            log.warning(what, extra={"tun": name, "error": exc.strerror})
            break
    # One packet in this wake-up (the first alone, or a batch of one): the next takes its first at once.
    return packets, len(packets) == (0 if batch < TUN_BATCH else 1)
