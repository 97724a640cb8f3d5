"""The node's extra underlay links (``[[link]]``): one UDP socket per link, for SD-WAN paths (docs/paths.md).

The main socket (``[node] listen``/``port``) stays the driver's; every other
link gets a socket of its own, bound to the link's address (``bind``) or
to its interface (``interface``, with ``SO_BINDTODEVICE``, so the kernel
sends out of that interface whatever the routing table says). A link whose
``bind`` is the main socket's address names the main socket instead.

The core sees a datagram that arrived on a link's socket as coming from a
:class:`LinkAddr` (the sender's address plus our link's name), and sends a
datagram to a ``LinkAddr`` out of that link's socket: that is how a session
keeps one path per pair of links. Runs of equal-sized datagrams to one
address go out in one ``sendmsg`` with UDP GSO, as on the main socket, and so
does a payload the transport cut in fragments (a train, core/session/train.py):
the driver lets the transport make trains for a link's endpoints as for the
main socket's.
Every link counts what it sent and received, for ``weft status``.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import struct
from typing import Any

from weftnet.core.paths.config import LinkSpec
from weftnet.core.reach.paths import LinkAddr
from weftnet.core.session import ciphers
from weftnet.core.session.train import RunBuffer, Train
from weftnet.core.session.transport import MAX_FRAGMENTS, MAX_REASSEMBLED
from weftnet.errors import ConfigError

__all__ = ["UnderlayLinks", "interface_address"]

log = logging.getLogger("weftnet.underlay")

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
RECV_BATCH = 64
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65_000
TRAIN_MAX_BYTES = 65_507  # as the driver's: an IPv4 packet's payload less the UDP header
_GRO_CMSG_SPACE = socket.CMSG_SPACE(4)
#: One receive buffer for every link of the process (each datagram or GRO run is copied out at its
#: size before the next read): ``recvmsg(65_535)`` made a 64 KiB heap block per read. It keeps the
#: views of the GRO runs read into it (core/session/train.py, RunBuffer).
_RX = RunBuffer(65_535)
_RECV_VIEW = _RX.view
_RECV_INTO = _RX.into
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)


def interface_of(address: str) -> str | None:
    """The name of the interface that has ``address`` (None if none has it)."""
    from pyroute2 import IPRoute

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with IPRoute() as ipr:
        for a in ipr.get_addr(family=family):
            if a.get_attr("IFA_ADDRESS") == address or a.get_attr("IFA_LOCAL") == address:
                links = ipr.get_links(a["index"])
                return links[0].get_attr("IFLA_IFNAME") if links else None
    return None


def bind_to_device(sock: socket.socket, ifname: str, what: str) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
    except OSError as exc:
        raise ConfigError(f"{what}: cannot bind to interface {ifname}: {exc.strerror}") from None


def interface_address(ifname: str, family: int = socket.AF_INET) -> str | None:
    """The first global address of an interface (None if it has none)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return None
        for a in ipr.get_addr(index=idx[0], family=family):
            if a["scope"] == 0:
                return a.get_attr("IFA_ADDRESS")
    return None


class _Link:
    __slots__ = ("name", "sock", "endpoint", "interface", "gso", "gro", "stats", "spec")

    def __init__(self, name: str, sock: socket.socket | None, endpoint: tuple, interface: str | None, spec: LinkSpec):
        self.name = name
        self.sock = sock
        self.endpoint = endpoint
        self.interface = interface
        self.spec = spec
        self.gso = sock is not None and hasattr(sock, "sendmsg")
        self.gro = False
        self.stats = dict.fromkeys(("tx_packets", "tx_bytes", "rx_packets", "rx_bytes", "send_errors",
                                    "gso_sends"), 0)


class UnderlayLinks:
    """The sockets of a node's extra links, driven from the driver's event loop."""

    def __init__(self, driver: Any):
        self.driver = driver
        self.links: dict[str, _Link] = {}
        self.main_name: str | None = None
        self._resolved: dict[str, tuple] = {}
        self._main_bound = False  # the main socket was bound to a link's interface (undone by close)

    # -- setup -----------------------------------------------------------------------
    @staticmethod
    def resolve(tables: list[dict]) -> dict[str, tuple]:
        """Per link: (its interface, the interface's address). Netlink: run it in a thread, not the loop."""
        out = {}
        for table in tables:
            iface = table.get("interface")
            bind = table.get("bind")
            host = None
            if iface is None and bind is not None:
                iface = _interface_of_concrete(bind[0])
            elif iface is not None and bind is None:
                host = interface_address(iface)
            out[table["name"]] = (iface, host)
        return out

    def open(self, tables: list[dict], specs: tuple, listen: str, port: int, resolved: dict) -> tuple:
        """Open a socket per link; returns the core's LinkSpecs with the endpoints peers should use."""
        self._resolved = resolved
        out = []
        main_ep = self.driver.sock.getsockname()[:2]
        try:
            for table, spec in zip(tables, specs):
                bind = table.get("bind")
                advertise = table.get("advertise")
                if bind is not None and (bind == (listen, port) or (bind[0] == listen and port == 0)):
                    # This link is the main socket: it, too, leaves by its link's interface only.
                    self.main_name = spec.name
                    ep = advertise or (bind[0], main_ep[1])
                    iface = resolved.get(spec.name, (None, None))[0]
                    if iface is not None:
                        bind_to_device(self.driver.sock, iface, f"[[link]] {spec.name}")
                        self._main_bound = True
                    self.links[spec.name] = _Link(spec.name, None, ep, iface, spec)
                    out.append(LinkSpec(spec.name, spec.cost, spec.metered, _concrete(ep), True))
                    continue
                sock, ep, iface = self._open_one(spec.name, table)
                link = self.links[spec.name] = _Link(spec.name, sock, advertise or ep, iface, spec)
                try:
                    sock.setsockopt(SOL_UDP, UDP_GRO, 1)
                    link.gro = True
                except OSError:
                    pass
                loop = self.driver._loop
                loop.add_reader(sock.fileno(), self._on_readable, link)
                out.append(LinkSpec(spec.name, spec.cost, spec.metered, _concrete(advertise or ep), False))
        except BaseException:
            self.close()
            raise
        return tuple(out)

    def _open_one(self, name: str, table: dict) -> tuple[socket.socket, tuple, str | None]:
        # A socket bound to an address still leaves by whatever route the destination has;
        # bound to the address's interface too, it leaves by its own link, or not at all.
        iface, host = self._resolved.get(name, (table.get("interface"), None))
        if "bind" not in table:
            host = host or "0.0.0.0"
            bind = ("0.0.0.0", table.get("port", 0))
        else:
            host = None
            bind = table["bind"]
        family = socket.AF_INET6 if ":" in bind[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            for opt in (getattr(socket, "SO_RCVBUFFORCE", 33), getattr(socket, "SO_SNDBUFFORCE", 32)):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
                except OSError:
                    pass
            if iface is not None:
                bind_to_device(sock, iface, f"[[link]] {name}")
            try:
                sock.bind(bind)
            except OSError as exc:
                where = f"{bind[0]}:{bind[1]}" if iface is None else f"port {bind[1]} on {iface}"
                hint = " (the main socket listens on all addresses: give [node] listen a specific one)" \
                    if exc.errno == errno.EADDRINUSE else ""
                raise ConfigError(f"[[link]] {name}: cannot listen on {where}: {exc.strerror}{hint}") from None
        except BaseException:
            sock.close()
            raise
        bound = sock.getsockname()[:2]
        return sock, ((host or bound[0]), bound[1]), iface

    def close(self) -> None:
        loop = self.driver._loop
        for link in self.links.values():
            if link.sock is not None and link.sock.fileno() >= 0:
                loop.remove_reader(link.sock.fileno())
                link.sock.close()
        self.links.clear()
        self.main_name = None
        main = self.driver.sock
        if self._main_bound and main.fileno() >= 0:
            try:  # a reload that drops the link: the main socket may leave by any interface again
                main.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, b"")
            except OSError:
                pass
        self._main_bound = False

    # -- the data path ---------------------------------------------------------------
    def _on_readable(self, link: _Link) -> None:
        sock = link.sock
        name = link.name
        batch: list[tuple[bytes, Any]] = []
        nbytes = packets = 0
        for _ in range(RECV_BATCH):
            try:
                if link.gro:
                    n, anc, _flags, addr = sock.recvmsg_into(_RECV_INTO, _GRO_CMSG_SPACE)
                else:
                    n, addr = sock.recvfrom_into(_RECV_VIEW)
                    anc = None
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.debug("link %s receive error: %s", name, exc)
                continue
            src = LinkAddr(addr[0], addr[1], name)
            nbytes += n
            seg = 0
            if anc:
                for level, kind, value in anc:
                    if level == SOL_UDP and kind == UDP_GRO and len(value) >= 4:
                        seg = struct.unpack("=i", value[:4])[0]
            if 0 < seg < n:  # a GRO run: the transport takes it whole (core/session/train.py)
                batch.append((_RX.read(n, seg, MAX_FRAGMENTS, MAX_REASSEMBLED), src))
                packets += -(-n // seg)
            else:
                batch.append((bytes(_RECV_VIEW[:n]), src))
                packets += 1
        if batch:
            link.stats["rx_packets"] += packets
            link.stats["rx_bytes"] += nbytes
            drv = self.driver
            drv.core.receive_datagrams(batch, drv.clock())
            drv.transmit()

    def send_run(self, out: list, i: int, j: int) -> None:
        """Send ``out[i:j]``, all to one LinkAddr, from that link's socket."""
        addr = out[i][1]
        link = self.links.get(addr.link)
        if link is None or link.sock is None:
            self.driver.send_errors += j - i
            return
        dst = (addr.host, addr.port)
        sock, st = link.sock, link.stats
        k = i
        while k < j:
            m = k + 1
            data = out[k][0]
            if type(data) is Train:  # one payload's fragments laid end to end: one GSO send
                try:
                    if link.gso:
                        self._send_train(sock, st, data, dst)
                    else:
                        for d in data.datagrams():
                            sock.sendto(d, dst)
                            st["tx_bytes"] += len(d)
                        st["tx_packets"] += data.count
                except (BlockingIOError, InterruptedError):
                    st["send_errors"] += sum(d.count if type(d) is Train else 1 for d, _ in out[k:j])
                    return
                except OSError as exc:
                    if link.gso and exc.errno in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                        link.gso = False
                        continue  # this train again, datagram by datagram
                    st["send_errors"] += data.count
                k = m
                continue
            if link.gso:
                size = total = len(data)
                while m < j and m - k < GSO_MAX_SEGMENTS and type(out[m][0]) is not Train \
                        and total + len(out[m][0]) <= GSO_MAX_BYTES and len(out[m][0]) <= size:
                    total += len(out[m][0])
                    m += 1
                    if len(out[m - 1][0]) < size:
                        break
            try:
                if m - k > 1:
                    payload = b"".join(d for d, _ in out[k:m])
                    sock.sendmsg([payload], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", len(out[k][0])))], 0, dst)
                    st["gso_sends"] += 1
                    st["tx_bytes"] += len(payload)
                else:
                    sock.sendto(out[k][0], dst)
                    st["tx_bytes"] += len(out[k][0])
                st["tx_packets"] += m - k
            except (BlockingIOError, InterruptedError):
                st["send_errors"] += j - k  # a full socket buffer: dropped, as a congested link would
                return
            except OSError as exc:
                if m - k > 1 and exc.errno in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                    link.gso = False
                    continue
                st["send_errors"] += m - k  # e.g. the link is down (ENETUNREACH): the core's probes notice
            k = m

    @staticmethod
    def _send_train(sock: socket.socket, st: dict, train: Train, dst: tuple) -> None:
        """A train in one GSO send (two if it is longer than one IP packet can carry)."""
        data, seg = train.data, train.seg
        half = train.count // 2 * seg if len(data) > TRAIN_MAX_BYTES else len(data)
        for part in ((data,) if half == len(data) else (data[:half], data[half:])):
            sock.sendmsg([part], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", seg))], 0, dst)
            st["gso_sends"] += 1
            st["tx_bytes"] += len(part)
        st["tx_packets"] += train.count

    def status(self) -> dict[str, dict]:
        out = {}
        drv = self.driver
        for name, link in self.links.items():
            d = {"endpoint": _text(link.endpoint), "interface": link.interface, **link.stats}
            if link.sock is None:
                d.update({"tx_packets": drv.sent, "rx_packets": drv.received, "main": True})
            out[name] = d
        return out


def _interface_of_concrete(address: str) -> str | None:
    try:
        if ipaddress.ip_address(address).is_unspecified:
            return None
    except ValueError:
        return None
    return interface_of(address)


def _concrete(ep: tuple) -> tuple | None:
    try:
        if ipaddress.ip_address(ep[0]).is_unspecified:
            return None
    except ValueError:
        return None
    return (ep[0], ep[1])


def _text(ep) -> str:
    return f"[{ep[0]}]:{ep[1]}" if ":" in ep[0] else f"{ep[0]}:{ep[1]}"


def transport_ciphers(names: list | None, cpuinfo: str = "/proc/cpuinfo") -> tuple[int, ...]:
    """The transport ciphers this node accepts, preferred first (core/session/ciphers.py):
    ``[dataplane] ciphers`` if set, else by the CPU's flags — AES-256-GCM first where it has AES
    instructions, ChaCha20-Poly1305 alone where it has not (or the flags cannot be read)."""
    if names is not None:
        return ciphers.parse_names(names)
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1] for line in f
                          if line.startswith(("flags", "Features")) and ":" in line), "")
    except OSError:
        flags = ""
    return ciphers.cpu_prefers(flags)
