"""The asyncio driver of one NodeCore over one UDP socket.

This is the whole runtime layer between the sans-IO core and the kernel, in
the shape of aioquic's asyncio protocol: a readable socket feeds the core,
``transmit`` sends what the core wants and re-arms ONE timer at the core's
next deadline, and completed requests resolve futures keyed by the core's op
ids. The daemon runs one driver; the demo, the DHT benchmark and the large
end-to-end tests run many in one event loop.

It works in batches, because the VPN data plane makes it a hot path:

* **Receive**: one wake-up reads up to :data:`RECV_BATCH` datagrams. With
  ``UDP_GRO`` the kernel hands over several datagrams of one flow coalesced
  in one buffer (with their segment size), which are split here.
* **Send**: datagrams the core produced are sent after each batch; runs of
  equal-sized datagrams to one address go out in one ``sendmsg`` with
  ``UDP_SEGMENT`` (UDP GSO), so the kernel segments them, once per run
  instead of once per datagram. If the kernel or the route refuses GSO, the
  driver falls back to one ``sendto`` per datagram for good.
* Path MTU probes (core/session/pmtu.py) go out one by one with the
  don't-fragment bit forced (``IP_PMTUDISC_PROBE`` for the duration of the
  send): a probe too large for a link on the way is dropped there, never
  fragmented, which is what makes its ack a proof.
* When the socket buffer is full the rest waits in a bounded backlog until
  the socket is writable again (beyond the bound, datagrams are dropped and
  counted, as a congested link would).
* Three other kinds of address the core may send to (docs/reach.md,
  docs/paths.md): a ``StreamLink`` is a TCP link (runtime/links.py), an
  ``AltSource`` goes out of the second UDP socket (``alt_sock``, for dial-back
  tests), a ``LinkAddr`` out of an extra underlay link's socket
  (runtime/underlay.py).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import select
import socket
import struct
import sys
import time
from typing import Any, Callable

from weftnet.core.identity import Identity
from weftnet.core.node import NodeConfig, NodeCore, NodeEvent
from weftnet.core.reach.paths import LinkAddr, StreamLink
from weftnet.core.session.train import RunBuffer, Train
from weftnet.core.session.transport import MAX_FRAGMENTS, MAX_REASSEMBLED
from weftnet.runtime.dpsteer import steer_slot
from weftnet.runtime.links import StreamLinks

__all__ = ["UdpDriver", "start_node", "open_udp_socket"]

log = logging.getLogger("weftnet.driver")

SOL_UDP = 17
UDP_SEGMENT = 103  # linux/udp.h
UDP_GRO = 104
RECV_BATCH = 64
#: At most this many datagrams per GSO send (the kernel's UDP_MAX_SEGMENTS is 64 or 128).
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65_000
#: The most a Train may hold for one GSO send: an IPv4 packet is at most 65,535 bytes, 28 of them
#: the IP and UDP headers. A longer Train leaves in two sends.
TRAIN_MAX_BYTES = 65_507
BACKLOG_MAX = 4096
#: Distinct source addresses whose tuple the driver shares (:meth:`UdpDriver._endpoint`); then it starts over.
ENDPOINT_CACHE = 4096
#: Source address -> its one ``(host, port)`` tuple, for every driver of the process (a daemon has one;
#: bench/dht runs a thousand, whose nodes mostly hear the same endpoints). ``SHARE_ENDPOINTS = False``
#: gives each driver made after it its own (bench/dht ``--isolated``).
_ENDPOINTS: dict[Any, tuple[str, int]] = {}
SHARE_ENDPOINTS = True
#: At most one log line about failures inside the core per this many seconds.
ERROR_LOG_INTERVAL = 60.0
_GRO_CMSG_SPACE = socket.CMSG_SPACE(4)
#: The UDP_SEGMENT control message of each segment size a train was sent with (a few: one per path MTU).
_SEGMENT_CMSG: dict[int, list] = {}
IP_MTU_DISCOVER, IPV6_MTU_DISCOVER, PMTUDISC_PROBE = 10, 23, 3  # linux/in.h, linux/in6.h


#: Every driver of the process receives into this one buffer and copies each datagram (or GRO segment)
#: out at its size: ``recvmsg(65_535)`` made a 64 KiB heap block per datagram and shrank it, and the
#: tails it left between longer-lived blocks were 20 KiB of resident heap per node in bench/dht.
#: (One buffer serves all: a receive loop copies out before it reads again, and nothing else reads.)
#: It keeps the views of the GRO runs read into it (core/session/train.py, RunBuffer).
_RX = RunBuffer(65_535)
_RECV_VIEW = _RX.view
_RECV_INTO = _RX.into

#: One for every node of the process: a SystemRandom keeps no state worth having, yet each
#: instance carries Random's unused 2.5 KB Mersenne Twister state.
_SYSTEM_RNG = random.SystemRandom()


def set_buffers(sock: socket.socket, buffer_bytes: int, receive: bool = True, send: bool = True) -> None:
    """Give ``sock`` receive and/or send buffers of ``buffer_bytes``: forced past the sysctl limits
    where we may (root), else as large as the limits allow; never an error."""
    for wanted, force, plain in ((receive, getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF),
                                 (send, getattr(socket, "SO_SNDBUFFORCE", 32), socket.SO_SNDBUF)):
        if not wanted:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, buffer_bytes)
        except OSError:
            try:
                sock.setsockopt(socket.SOL_SOCKET, plain, buffer_bytes)
            except OSError:
                pass


def open_udp_socket(host: str, port: int, buffer_bytes: int = 4 << 20) -> socket.socket:
    """A non-blocking UDP socket bound to ``host:port``, with large buffers (forced if root)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        set_buffers(sock, buffer_bytes)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class UdpDriver:
    """Drives a NodeCore from a UDP socket and an asyncio timer."""

    # Slots: past 30 attributes an instance's dict stops sharing its keys (1.6 KB a node in bench/dht);
    # "__dict__" stays for attributes the daemon and tests add.
    __slots__ = ("core", "clock", "sock", "_loop", "_timer", "_timer_at", "_waiters", "_backlog", "_backlog_weight",
                 "_endpoints", "_closed", "_depth", "listeners", "tun_writer", "after_tun_writes", "sent", "received",
                 "errors", "_error_logged_at", "send_errors", "dropped", "gso_sends", "probes_sent", "probe_errors",
                 "alt_sock", "underlay", "divert", "divert_slots", "gso", "gro", "_sparse", "_queued", "_links", "__dict__",
                 "__weakref__")

    def __init__(self, core: NodeCore, sock: socket.socket, clock: Callable[[], float] = time.time,
                 *, gso: bool = True, gro: bool = True):
        self.core = core
        self.clock = clock
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._waiters: dict[int, asyncio.Future] = {}
        self._backlog: list[tuple[bytes, Any]] = []  # an empty deque would be 624 bytes a node
        self._backlog_weight = 0  # datagrams in it (a Train holds several)
        #: Source address as the socket gives it -> the tuple handed to the core (:meth:`_endpoint`).
        self._endpoints: dict[Any, tuple[str, int]] = _ENDPOINTS if SHARE_ENDPOINTS else {}
        self._closed = False
        #: transmit() calls in progress: the TUN drain after a write calls it again from inside.
        self._depth = 0
        #: The last wake-up read one datagram: this one opens its first before reading on (_on_readable).
        self._sparse = True
        self.listeners: list[Callable[[NodeEvent], None]] = []
        #: Writes (network ID, virtio_net_hdr or b"", IP packet) to that network's TUN; set by the daemon.
        self.tun_writer: Callable[[bytes, bytes, bytes], None] | None = None
        #: Called once after a batch of TUN writes (the daemon reads what the writes made the kernel answer).
        self.after_tun_writes: Callable[[], None] | None = None
        self.sent = 0
        self.received = 0
        self.errors = 0
        self._error_logged_at: float | None = None
        self.send_errors = 0
        self.dropped = 0
        self.gso_sends = 0
        self.probes_sent = 0
        self.probe_errors = 0
        #: TCP links to and from relays (runtime/links.py): made on first use (``links``); a node that
        #: never has one (a DHT node) carries no table (~300 bytes a node in bench/dht).
        self._links: StreamLinks | None = None
        #: A second UDP socket that only sends (dial-back tests from another port); None = none.
        self.alt_sock: socket.socket | None = None
        #: The node's extra underlay links (runtime/underlay.py), set by the daemon; None = none.
        self.underlay = None
        #: With data-plane workers: ``divert(data, seg, addr)`` keeps the pieces of a GRO read
        #: this process opens and hands the others to their worker (runtime/dpworkers.py), and
        #: ``divert_slots`` is their number (the main process included).
        self.divert: Callable[[bytes, int, Any], list[bytes]] | None = None
        self.divert_slots = 0
        self.gso = gso and hasattr(sock, "sendmsg")
        self.gro = False
        if gro:
            try:
                sock.setsockopt(SOL_UDP, UDP_GRO, 1)
                self.gro = True
            except OSError:
                pass
        # The transport hands over a payload cut in fragments as one Train (core/session/train.py).
        core.transport.trains = self.gso
        host, port = sock.getsockname()[:2]
        core.set_local_endpoint((host, port))
        #: A zero-timeout poll of the socket: after a lone datagram, whether another is queued (a
        #: receive that finds nothing raises, which costs several times a poll on cold caches).
        poll = select.poll()
        poll.register(sock.fileno(), select.POLLIN)
        self._queued = poll.poll
        self._loop.add_reader(sock.fileno(), self._on_readable)
        self.transmit()

    @property
    def links(self) -> StreamLinks:
        """The node's TCP links to and from relays (runtime/links.py), made on first use."""
        links = self._links
        if links is None:
            links = self._links = StreamLinks(self)
        return links

    # -- receive --------------------------------------------------------------
    def _endpoint(self, addr: Any) -> tuple[str, int]:
        """The one ``(host, port)`` tuple this driver hands the core for a source address.

        Every table keyed or valued by a peer's endpoint (sessions, paths, rate limits,
        the DHT's contacts and RTTs) then holds references to one tuple and one host
        string instead of a fresh pair per datagram that happened to be kept; at 100
        nodes in bench/dht that was about 15 KiB of memory per node."""
        if len(self._endpoints) >= ENDPOINT_CACHE:
            self._endpoints.clear()
        src = (sys.intern(addr[0]), addr[1])
        self._endpoints[src if len(addr) == 2 else addr] = src  # IPv6 gives (host, port, flow, scope)
        return src

    def _on_readable(self) -> None:
        sock = self.sock
        endpoints = self._endpoints
        batch: list[tuple[bytes, Any]] = []
        received = 0
        lone = self._sparse
        for _ in range(RECV_BATCH):
            try:
                if self.gro:
                    n, anc, _flags, addr = sock.recvmsg_into(_RECV_INTO, _GRO_CMSG_SPACE)
                else:
                    n, addr = sock.recvfrom_into(_RECV_VIEW)
                    anc = None
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # ICMP errors (port unreachable) are routine on an overlay; the
                # transport's own timeouts handle dead peers.
                log.debug("udp receive error: %s", exc)
                continue
            src = endpoints.get(addr)
            if src is None:
                src = self._endpoint(addr)
            seg = 0
            if anc:
                for level, kind, value in anc:
                    if level == SOL_UDP and kind == UDP_GRO and len(value) >= 4:
                        seg = struct.unpack("=i", value[:4])[0]
            view = _RECV_VIEW
            if 0 < seg < n:
                divert = self.divert
                if divert is None or not steer_slot(view[:16], self.divert_slots):
                    # The transport takes the run whole (core/session/train.py). With workers, a run
                    # joined as read is one payload, all of it of the first piece's partition: ours.
                    t = _RX.read(n, seg, MAX_FRAGMENTS, MAX_REASSEMBLED)
                    if divert is None or t.sealed is not None:
                        batch.append((t, src))
                        received += -(-n // seg)
                        continue
                    run = t.data  # pieces of several payloads: some may be a worker's
                else:  # steered here by its first piece, which is a worker's: it opens those
                    run = bytes(view[:n])
                pieces = divert(run, seg, addr)  # ours kept, the others handed to their worker
                batch.extend((p, src) for p in pieces)
                received += len(pieces)
            elif lone is True and not batch:  # (only the first: after a GRO run, order says batch)
                # Sparse traffic (the last wake-up read one datagram, e.g. a ping): the first is
                # opened and written (and a reply the TUN drain finds sent) before the next read,
                # which for a lone datagram finds the socket empty: that system call comes after
                # the packet's, not before it (docs/dataplane.md, "Latency"). Bursts: batches.
                lone = None
                self.received += 1
                try:
                    self.core.receive_datagrams([(bytes(view[:n]), src)], self.clock())
                except Exception as exc:  # noqa: BLE001 - the packet loop must go on (docs/security.md, item 8)
                    self._failed("receive", exc)
                self.transmit()
                if not self._queued(0):
                    break  # nothing behind it: no receive that finds the socket empty
            else:
                batch.append((bytes(view[:n]), src))
                received += 1
        # One datagram in this wake-up (the first alone, or a batch of one): the next opens its first at once.
        self._sparse = received == (0 if lone is None else 1)
        if batch:
            self.received += received
            try:
                self.core.receive_datagrams(batch, self.clock())
            except Exception as exc:  # noqa: BLE001 - the packet loop must go on (docs/security.md, item 8)
                self._failed("receive", exc)
        elif lone is None:
            return  # the lone datagram's transmit() was the last thing to do
        self.transmit()

    def _failed(self, where: str, exc: Exception) -> None:
        """Count a failure inside the core; one log line per ERROR_LOG_INTERVAL at most."""
        self.errors += 1
        t = time.monotonic()
        if self._error_logged_at is None or t - self._error_logged_at >= ERROR_LOG_INTERVAL:
            self._error_logged_at = t
            log.error("node core failed; continuing", extra={"where": where, "error": f"{type(exc).__name__}: {exc}",
                                                             "failures_total": self.errors})

    # -- send -----------------------------------------------------------------
    def _send_all(self, out: list[tuple[bytes, Any]]) -> None:
        if self._backlog:
            self._queue(out)
            return
        i, n = 0, len(out)
        if n == 1 and type(out[0][1]) is tuple and type(out[0][0]) is not Train:
            # One datagram (a ping, sparse traffic): what the loop below does for it, without the loop.
            data, addr = out[0]
            try:
                self.sock.sendto(data, addr)
                self.sent += 1
            except (BlockingIOError, InterruptedError):
                self._queue(out)
                self._loop.add_writer(self.sock.fileno(), self._on_writable)
            except OSError as exc:
                self.send_errors += 1
                log.debug("send to %s failed: %s", addr, exc)
            return
        while i < n:
            data, addr = out[i]
            if type(addr) is not tuple:  # a TCP link, an extra underlay link or the second port
                if type(addr) is LinkAddr and self.underlay is not None:
                    j = i + 1
                    while j < n and out[j][1] == addr:
                        j += 1
                    self.underlay.send_run(out, i, j)  # runtime/underlay.py: that link's own socket
                    i = j
                    continue
                self._send_special(data, addr)
                i += 1
                continue
            j = i + 1
            if type(data) is Train:
                if len(data.data) > TRAIN_MAX_BYTES:  # longer than one IP packet: two sends
                    half = data.count // 2 * data.seg
                    out[i:i + 1] = [(Train(data.data[:half], data.seg), addr), (Train(data.data[half:], data.seg), addr)]
                    n = len(out)
                    continue
                try:
                    self._send_train(data, addr)
                except (BlockingIOError, InterruptedError):
                    self._queue(out[i:])
                    self._loop.add_writer(self.sock.fileno(), self._on_writable)
                    return
                except OSError as exc:
                    if exc.errno in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                        log.info("UDP GSO refused (%s); sending datagram by datagram", exc.strerror)
                        self.gso = self.core.transport.trains = False
                        out[i:i + 1] = [(d, addr) for d in data.datagrams()]  # its pieces one by one
                        n = len(out)
                        continue
                    self.send_errors += data.count
                    log.debug("send to %s failed: %s", addr, exc)
                i = j
                continue
            if self.gso:
                size, total = len(data), len(data)
                while (j < n and j - i < GSO_MAX_SEGMENTS and out[j][1] == addr and type(out[j][0]) is not Train
                       and total + len(out[j][0]) <= GSO_MAX_BYTES and len(out[j][0]) <= size):
                    total += len(out[j][0])
                    j += 1
                    if len(out[j - 1][0]) < size:
                        break  # only the last segment may be shorter
            try:
                if j - i > 1:
                    self._send_gso(out, i, j)
                else:
                    self.sock.sendto(data, addr)
                    self.sent += 1
            except (BlockingIOError, InterruptedError):
                self._queue(out[i:])
                self._loop.add_writer(self.sock.fileno(), self._on_writable)
                return
            except OSError as exc:
                if j - i > 1 and exc.errno in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                    log.info("UDP GSO refused (%s); sending datagram by datagram", exc.strerror)
                    self.gso = False
                    continue  # retry this run without GSO
                self.send_errors += j - i  # e.g. an address family the socket lacks
                log.debug("send to %s failed: %s", addr, exc)
            i = j

    def _send_special(self, data: bytes, addr: Any) -> None:
        if type(data) is Train:  # (a link's train with no underlay to send it: its datagrams one by one)
            for d in data.datagrams():
                self._send_special(d, addr)
            return
        if type(addr) is StreamLink:
            self.links.send(addr, data)
            self.sent += 1
        elif self.alt_sock is not None:  # an AltSource
            try:
                self.alt_sock.sendto(data, (addr[0], addr[1]))
                self.sent += 1
            except OSError as exc:
                self.send_errors += 1
                log.debug("send from the second port to %s failed: %s", addr, exc)

    def _send_gso(self, out: list[tuple[bytes, Any]], i: int, j: int) -> None:
        size = len(out[i][0])
        payload = b"".join(d for d, _ in out[i:j])
        self.sock.sendmsg([payload], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))], 0, out[i][1])
        self.sent += j - i
        self.gso_sends += 1

    def _send_train(self, train: Train, addr: Any) -> None:
        """One payload's fragments in one GSO send."""
        cmsg = _SEGMENT_CMSG.get(train.seg)
        if cmsg is None:
            if len(_SEGMENT_CMSG) >= 64:
                _SEGMENT_CMSG.clear()
            cmsg = _SEGMENT_CMSG[train.seg] = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", train.seg))]
        self.sock.sendmsg([train.data], cmsg, 0, addr)
        self.sent += train.count
        self.gso_sends += 1

    def _send_probes(self, probes: list[tuple[bytes, Any]]) -> None:
        """Send path MTU probes with don't-fragment set, then restore the socket's own setting."""
        sock = self.sock
        opts = [(socket.IPPROTO_IP, IP_MTU_DISCOVER)]
        if sock.family == socket.AF_INET6:
            opts.append((socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER))
        saved = []
        for level, opt in opts:
            try:
                saved.append((level, opt, sock.getsockopt(level, opt)))
                sock.setsockopt(level, opt, PMTUDISC_PROBE)
            except OSError:
                pass
        try:
            for data, addr in probes:
                try:
                    sock.sendto(data, addr)
                    self.probes_sent += 1
                except OSError:  # EMSGSIZE above our own link's MTU, a full buffer: the probe is lost
                    self.probe_errors += 1
        finally:
            for level, opt, value in saved:
                try:
                    sock.setsockopt(level, opt, value)
                except OSError:
                    pass

    def _queue(self, items: list[tuple[Any, Any]]) -> None:
        """Keep datagrams for when the socket is writable again, at most BACKLOG_MAX of them (a Train
        counts as the datagrams it holds); beyond that the oldest are dropped, as a congested link would."""
        backlog = self._backlog
        backlog.extend(items)
        self._backlog_weight += sum(d.count if type(d) is Train else 1 for d, _ in items)
        k = 0
        while self._backlog_weight > BACKLOG_MAX:
            d = backlog[k][0]
            c = d.count if type(d) is Train else 1
            self._backlog_weight -= c
            self.dropped += c
            k += 1
        if k:
            del backlog[:k]

    def _on_writable(self) -> None:
        self._loop.remove_writer(self.sock.fileno())
        pending = list(self._backlog)
        self._backlog.clear()
        self._backlog_weight = 0
        self._send_all(pending)

    # -- the loop -------------------------------------------------------------
    def transmit(self) -> None:
        """Send what the core wants, hand out its events, re-arm one timer."""
        now = self.clock()
        core = self.core
        # The TUN writes first: after a datagram was opened, the packet's next step (and, through the
        # drain below, the reply the kernel answers it with) waits for nothing else. Datagrams the
        # core queued meanwhile leave in the drain's own transmit() (before its reply), or below.
        tun_out = core.tun_out  # the VPN, overlay and L3VPN planes' one list
        if tun_out:
            if self.tun_writer is not None:
                writer = self.tun_writer
                for network_id, vnet, packet in tun_out:
                    writer(network_id, vnet, packet)
            tun_out.clear()
            if self.after_tun_writes is not None:
                self._depth += 1
                try:
                    self.after_tun_writes()  # its own transmit() leaves the timer to this one
                finally:
                    self._depth -= 1
        out = core.datagrams_to_send(now)
        if out and not self._closed:
            self._send_all(out)
        probes = core.probes_to_send()
        if probes and not self._closed:
            self._send_probes(probes)
        while (ev := core.next_event()) is not None:
            op_id = getattr(ev, "op_id", None)
            fut = self._waiters.pop(op_id, None) if op_id is not None else None
            if fut is not None and not self._waiters:
                self._waiters.clear()  # a dict keeps the table it grew to until cleared
            if fut is not None and not fut.done():
                fut.set_result(ev)
            for listener in self.listeners:
                listener(ev)
        if self._depth:
            return  # called from inside another transmit(), which re-arms the timer when it ends
        deadline = core.get_timer()
        if deadline != self._timer_at and not self._closed:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_at = deadline
            if deadline is not None:
                self._timer = self._loop.call_later(max(0.0, deadline - now), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.core.handle_timer(self.clock())
        except Exception as exc:  # noqa: BLE001
            self._failed("timer", exc)
        self.transmit()

    async def request(self, start: Callable[[NodeCore, float], int], timeout: float | None = None) -> NodeEvent:
        """Start a core request (``start(core, now) -> op_id``) and await its completion event."""
        fut: asyncio.Future = self._loop.create_future()
        op_id = start(self.core, self.clock())
        self._waiters[op_id] = fut
        self.transmit()
        # The core gives every request a deadline, so this wait always ends;
        # the extra margin only guards against a core bug.
        margin = (timeout or self.core.config.request_timeout) + 5.0
        return await asyncio.wait_for(fut, margin)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for fut in self._waiters.values():
            if not fut.done():
                fut.cancel()
        fd = self.sock.fileno()
        if fd >= 0:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
        self.sock.close()
        if self._links is not None:
            self._links.close()
        if self.underlay is not None:
            self.underlay.close()
        if self.alt_sock is not None:
            self.alt_sock.close()


async def start_node(
    identity: Identity | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    config: NodeConfig | None = None,
    store: Any = None,
    rng: Any = None,
) -> UdpDriver:
    """Bind a UDP socket and start driving a new NodeCore on it."""
    rng = rng or _SYSTEM_RNG
    identity = identity or Identity.generate(rng)
    core = NodeCore(identity, rng, time.time(), config, store)
    return UdpDriver(core, open_udp_socket(host, port))

