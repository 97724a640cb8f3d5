"""Several data-plane workers: processes that carry some of the private networks' flows
(docs/dataplane.md, "Several workers"; ``[dataplane] workers``).

The main process (``weft up``) is worker slot 0 and keeps everything else:
handshakes and rekeys, the DHT, path MTU, paths, the control API, and every
packet a worker cannot carry. Slots 1..n-1 are processes forked from it once
its layer-3 networks are up, so each starts with a copy of the networks
(members, routes, firewall rules). Each owns:

* one queue of every layer-3 network's multi-queue TUN (the kernel spreads
  flows over the queues by a symmetric hash and keeps a flow on the queue its
  inbound packets are written on: runtime/dpsteer.py);
* one socket of the node's steered ``SO_REUSEPORT`` group (the kernel hands
  it the TransportData of its counter partition, and nothing else);
* a :class:`~weftnet.core.session.workers.WorkerCrypto`: the session keys the
  main process hands over (:meth:`WorkerPool.refresh`, whenever a session of
  a member comes up, rekeys or moves), sealing with its own counter partition.

A worker seals towards a peer only if that peer announced the same number of
slots (``WorkerSlots``, sent by :meth:`WorkerPool.announce`): then each flow
stays in one worker at both ends, and a peer of an older version never sees
a partitioned counter. Everything else a worker reads — packets to other
peers, packets with no route yet, payloads too large for one datagram,
payloads of a session older than ``rekey_after_time`` (the main process's
send starts the rekey) — it hands to the main process over a socketpair, and
so it does with authenticated payloads that are not data of a member.

The main process keeps the only copies that matter of everything a worker
holds: the sockets and TUN queues stay open in it (a dead worker must not
shrink the reuseport group or detach a queue), each slot's counter floor is
in shared memory (a restarted worker starts above every counter its
predecessor may have used), and a membership change, a revocation or a
reload restarts the workers from its current state. A worker that dies is
restarted; one that dies more than :data:`MAX_RESTARTS` times in a minute
stops the daemon with an error.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import mmap
import os
import pickle
import select
import signal
import socket
import struct
import time
import traceback
from collections import deque
from typing import Any

from weftnet.core.identity import NodeId
from weftnet.core.session.train import RunBuffer, Train
from weftnet.core.session.packets import MAX_FRAGMENTS
from weftnet.core.session.workers import _REASSEMBLED, WorkerCrypto, WorkerSlots, relaid
from weftnet.core.vpn.ackfilter import prepare_batch
from weftnet.core.vpn.network import VNET_HDR_LEN, VNET_NONE, Deliver, Send, VpnChunk, VpnNetwork, VpnPacket
from weftnet.core.wire import encode
from weftnet.errors import NetworkError
from weftnet.runtime.dpsteer import MAX_WORKERS, steer_slot
from weftnet.runtime.driver import set_buffers

__all__ = ["WorkerPool", "Handoff", "MAX_RESTARTS"]

log = logging.getLogger("weftnet.dpworkers")

#: A worker that dies more often than this within RESTART_WINDOW seconds stops the daemon.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
#: How often the main process checks keys, workers and announcements.
REFRESH = 0.25
#: Members are told our slots this often (and when their session comes up).
ANNOUNCE_INTERVAL = 10.0
#: A worker reports its counters this often.
STATS_INTERVAL = 1.0
_BATCH = 64
_READ = 10 + 65_535
_CHUNK, _PACKET = VpnChunk.TYPE, VpnPacket.TYPE
_SLOT = struct.Struct("=Q")
_GSO_SEGMENTS, _GSO_BYTES = 64, 65_000
SOL_UDP, UDP_SEGMENT, UDP_GRO = 17, 103, 104
_GRO_CMSG = socket.CMSG_SPACE(4)
#: One receive buffer per process (a worker reads, opens or copies out, then reads again): a
#: ``recvmsg(65_535)`` made a 64 KiB heap block per read. It keeps the views of the GRO runs
#: read into it (core/session/train.py, RunBuffer).
_RX = RunBuffer(65_535)
_RECV_VIEW = _RX.view
_RECV_INTO = _RX.into


class Handoff:
    """Pieces of a UDP GRO read that belong to another process go to that process.

    The kernel steers a GRO read by its first datagram (runtime/dpsteer.py), but GRO joins the
    datagrams of one address pair whatever their counter partition, and every partition of a
    peer shares one address pair. So a read can hold pieces that only another process can open
    (it holds their replay window). Each slot has an inbox, a datagram socketpair made before
    the workers are forked: any process writes to slot ``k``'s sending end, slot ``k`` reads its
    receiving end. A message is one read's pieces for one slot with their source address, so a
    piece costs its owner no more than if the kernel had steered it there; nothing is dropped
    for belonging to another partition. An inbox whose buffer is full (its owner is far behind)
    loses the message, as a full socket buffer would; that is counted (``lost``).
    """

    def __init__(self, workers: int, buffer_bytes: int = 4 << 20):
        if not 2 <= workers <= MAX_WORKERS:
            raise ValueError(f"workers must be 2-{MAX_WORKERS}")
        self.n = workers
        self.rx: list[socket.socket] = []
        self.tx: list[socket.socket] = []
        for _ in range(workers):
            rx, tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            rx.setblocking(False)
            tx.setblocking(False)
            set_buffers(tx, buffer_bytes, receive=False)
            set_buffers(rx, buffer_bytes, send=False)
            self.rx.append(rx)
            self.tx.append(tx)
        self.stats = {"handed": 0, "handed_in": 0, "lost": 0}

    def split(self, slot: int, data: bytes, seg: int, addr: Any) -> list[bytes]:
        """The pieces of a GRO read (``seg`` bytes each, the last maybe shorter) that ``slot``
        opens itself; the others are handed to their slots."""
        n = self.n
        mine: list[bytes] = []
        other: dict[int, list[bytes]] | None = None
        for off in range(0, len(data), seg):
            piece = data[off:off + seg]
            k = steer_slot(piece, n)
            if k == slot:
                mine.append(piece)
            else:
                if other is None:
                    other = {}
                other.setdefault(k, []).append(piece)
        if other:
            for k, pieces in other.items():
                self.hand(k, addr, pieces)
        return mine

    def hand(self, slot: int, addr: Any, pieces: list[bytes]) -> None:
        try:
            self.tx[slot].send(pickle.dumps((addr, pieces), 5))
            self.stats["handed"] += len(pieces)
        except OSError:  # full (or, while closing, gone): lost as in a full socket buffer
            self.stats["lost"] += len(pieces)

    def receive(self, slot: int):
        """(source address, pieces) handed to ``slot``, as many as are waiting (up to a batch)."""
        rx = self.rx[slot]
        for _ in range(_BATCH):
            try:
                raw = rx.recv(1 << 18)
            except (BlockingIOError, InterruptedError):
                return
            addr, pieces = pickle.loads(raw)  # from a process of this node: the socketpair is ours alone
            self.stats["handed_in"] += len(pieces)
            yield addr, pieces

    def close(self) -> None:
        for s in self.rx + self.tx:
            s.close()


class _Slot:
    __slots__ = ("slot", "pid", "ctrl", "started", "stats")

    def __init__(self, slot: int, pid: int, ctrl: socket.socket):
        self.slot, self.pid, self.ctrl = slot, pid, ctrl
        self.started = time.time()
        self.stats: dict[str, Any] = {}


class WorkerPool:
    """The main process's side: forks, feeds, watches and restarts the workers."""

    def __init__(self, daemon: Any, socks: list[socket.socket], queues: dict[bytes, list[Any]], workers: int):
        self.daemon = daemon
        self.n = workers
        self.socks = socks  # [0] is the main process's (the driver's); the others belong to slots 1..n-1
        self.queues = queues  # network ID -> TUN queues of slots 1..n-1
        self.floors = mmap.mmap(-1, _SLOT.size * 16)  # shared with the children: each slot's counter floor
        self.slots: dict[int, _Slot] = {}
        self.restarts = 0
        self._recent: deque[float] = deque()
        self._keys_sig: Any = None
        self._keys: tuple = ([], {})
        #: Per slot: keys made before this time are not handed over (its last worker died with
        #: their replay windows), and the windows a worker stopped on purpose handed over.
        self._not_before: dict[int, float] = {}
        self._windows: dict[int, dict] = {}
        self._dirty = False
        self._announced: dict[bytes, float] = {}
        self.upcalls = {"out": 0, "in": 0}
        self._closed = False
        #: Pieces of a GRO read that another slot opens are handed to it (Handoff).
        self.handoff = Handoff(workers)

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        driver = self.daemon.driver
        driver.divert, driver.divert_slots = self._divert, self.n
        asyncio.get_running_loop().add_reader(self.handoff.rx[0].fileno(), self._on_handoff)
        for slot in range(1, self.n):
            self._spawn(slot)
        log.info("data-plane workers up", extra={"workers": self.n, "pids": ", ".join(
            str(s.pid) for s in self.slots.values())})

    def _spawn(self, slot: int) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (parent, child):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            code = 0
            try:
                parent.close()
                self._child(slot, child)
            except BaseException:  # noqa: BLE001 - say why, then go: the main process restarts us
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        child.close()
        parent.setblocking(False)
        self.slots[slot] = _Slot(slot, pid, parent)
        asyncio.get_running_loop().add_reader(parent.fileno(), self._on_ctrl, slot)
        self._send_keys(slot, self._windows.pop(slot, None))

    def _stop_slot(self, slot: int, wait: float = 2.0) -> int | None:
        """Stop a worker; it hands over its replay windows first (for its successor), or, if it
        cannot, its slot gets only keys made after now."""
        s = self.slots.pop(slot, None)
        if s is None:
            return None
        asyncio.get_running_loop().remove_reader(s.ctrl.fileno())
        windows = None
        try:
            s.ctrl.setblocking(True)
            s.ctrl.settimeout(1.0)
            s.ctrl.send(pickle.dumps(("stop",)))
            while windows is None:
                msg = pickle.loads(s.ctrl.recv(1 << 22))
                if msg[0] == "windows":
                    windows = msg[1]
        except (OSError, EOFError, pickle.UnpicklingError):
            pass
        s.ctrl.close()
        if windows is None and not self._closed:
            self._forget_keys(slot)
        else:
            self._windows[slot] = windows
        try:
            os.kill(s.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait
        while True:
            try:
                pid, status = os.waitpid(s.pid, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid:
                return status
            if time.monotonic() >= deadline:
                os.kill(s.pid, signal.SIGKILL)
                os.waitpid(s.pid, 0)
                return None
            time.sleep(0.01)

    def resync(self) -> None:
        """The networks changed (a member, a revocation, a reload): restart the workers from the
        main process's state at the next refresh (several changes in a row restart them once)."""
        self._dirty = True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for slot in list(self.slots):
            self._stop_slot(slot)
        if getattr(self.daemon.driver, "divert", None) == self._divert:
            self.daemon.driver.divert = None
        try:
            asyncio.get_running_loop().remove_reader(self.handoff.rx[0].fileno())
        except RuntimeError:
            pass
        self.handoff.close()
        for s in self.socks[1:]:
            s.close()
        for qs in self.queues.values():
            for q in qs:
                q.close()
        self.floors.close()

    async def run(self) -> None:
        """Keys, announcements, crash watch: every REFRESH seconds while the daemon runs."""
        while True:
            await asyncio.sleep(REFRESH)
            self.refresh()

    def refresh(self) -> None:
        self._reap()
        if self._dirty:
            self._dirty = False
            for slot in list(self.slots):
                self._stop_slot(slot)
                self._spawn(slot)
        self._push_keys()
        self._announce_due()

    def _reap(self) -> None:
        for slot, s in list(self.slots.items()):
            try:
                pid, status = os.waitpid(s.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = s.pid, 0
            if not pid:
                continue
            asyncio.get_running_loop().remove_reader(s.ctrl.fileno())
            s.ctrl.close()
            del self.slots[slot]
            now = time.monotonic()
            self.restarts += 1
            self._recent.append(now)
            while self._recent and now - self._recent[0] > RESTART_WINDOW:
                self._recent.popleft()
            how = (f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                   else f"exit status {os.WEXITSTATUS(status)}")
            if len(self._recent) > MAX_RESTARTS:
                raise NetworkError(f"data-plane worker {slot} died {len(self._recent)} times within "
                                   f"{RESTART_WINDOW:.0f} s (last: {how}); stopping")
            log.error("data-plane worker died; restarting it", extra={"slot": slot, "pid": s.pid, "how": how,
                                                                      "restarts": self.restarts})
            self._forget_keys(slot)
            self._spawn(slot)

    # -- keys and announcements -----------------------------------------------------
    def _members(self) -> list[NodeId]:
        out: set[bytes] = set()
        for net in self.daemon.core.vpn.switch.networks.values():
            if net.network_id in self.queues:
                out.update(net._members)
        out.discard(self.daemon.core.node_id.raw)
        return [NodeId(raw) for raw in sorted(out)]

    def _forget_keys(self, slot: int) -> None:
        """A worker died with its replay windows: its successor gets only keys made from now on,
        and the sessions it could have opened are rekeyed at once (else a packet it opened could
        be opened again by the next worker)."""
        core, now = self.daemon.core, time.time()
        self._not_before[slot] = now
        self._windows.pop(slot, None)
        for nid in self._members():
            core.transport.rekey(nid, now)
        self.daemon.driver.transmit()

    def _push_keys(self) -> None:
        core = self.daemon.core
        members = [m for m in self._members() if core.worker_slots.get(m.raw) == self.n]
        keys, current = core.transport.worker_keys(members)
        sig = (tuple((k.local_index, k.remote_index, k.created, k.endpoint, k.max_datagram) for k in keys),
               tuple(sorted(current.items())))
        if sig == self._keys_sig:
            return
        self._keys_sig = sig
        self._keys = (keys, current)
        for slot in self.slots:
            self._send_keys(slot)

    def _send_keys(self, slot: int, windows: dict | None = None) -> None:
        keys, current = self._keys
        floor = self._not_before.get(slot)
        if floor is not None:
            keys = [k for k in keys if k.created >= floor]
            ok = {k.local_index for k in keys}
            current = {node: i for node, i in current.items() if i in ok}
        cfg = self.daemon.core.transport.config
        self._send(slot, pickle.dumps(("keys", keys, current, cfg.rekey_after_time, cfg.reject_after_time,
                                       windows or {})))

    def _send(self, slot: int, msg: bytes) -> None:
        s = self.slots.get(slot)
        if s is None:
            return
        try:
            s.ctrl.send(msg)
        except OSError as exc:  # a full or dead pipe: the crash watch restarts the worker
            log.warning("cannot reach a data-plane worker", extra={"slot": slot, "error": str(exc)})

    def announce(self, node_id: NodeId) -> None:
        """Tell one member how many slots we run (a session just came up)."""
        core = self.daemon.core
        if node_id.raw == core.node_id.raw or not core.transport.has_session(node_id):
            return
        core.transport.send_to(node_id, encode(WorkerSlots(self.n)), time.time())
        self._announced[node_id.raw] = time.monotonic()
        self.daemon.driver.transmit()

    def _announce_due(self) -> None:
        now = time.monotonic()
        for m in self._members():
            if now - self._announced.get(m.raw, -1e9) >= ANNOUNCE_INTERVAL:
                self.announce(m)

    # -- pieces of other slots ---------------------------------------------------------
    def _divert(self, data: bytes, seg: int, addr: Any) -> list[bytes]:
        """The driver's GRO split: our pieces stay, a worker's go to it."""
        return self.handoff.split(0, data, seg, addr)

    def _on_handoff(self) -> None:
        """Pieces a worker read that are ours (partition 0, handshakes, DHT): the core's, as if
        the kernel had steered them here."""
        driver = self.daemon.driver
        batch: list[tuple[bytes, Any]] = []
        try:
            for addr, pieces in self.handoff.receive(0):
                src = driver._endpoint(addr)
                batch.extend((p, src) for p in pieces)
        except (OSError, pickle.UnpicklingError, ValueError):
            return
        if batch:
            driver.received += len(batch)
            try:
                driver.core.receive_datagrams(batch, time.time())
            except Exception as exc:  # noqa: BLE001 - as the driver's own receive path
                driver._failed("receive", exc)
            driver.transmit()

    # -- what the workers send back -------------------------------------------------
    def _on_ctrl(self, slot: int) -> None:
        s = self.slots.get(slot)
        if s is None:
            return
        core, now, sent = self.daemon.core, time.time(), False
        for _ in range(_BATCH):
            try:
                raw = s.ctrl.recv(1 << 17)
            except BlockingIOError:
                break
            except OSError:
                return
            if not raw:
                return  # it died: the crash watch restarts it
            msg = pickle.loads(raw)  # from our own child over a socketpair
            kind = msg[0]
            if kind == "out":  # a TUN packet it could not send: the main process's full path
                if msg[1] in core.vpn.switch.networks:
                    core.vpn_outbound(msg[1], [msg[2]], now)
                    self.upcalls["out"] += 1
                    sent = True
            elif kind == "in":  # an authenticated payload that is not a member's data
                core.vpn.on_payload(NodeId(msg[1]), msg[2], now)
                self.upcalls["in"] += 1
                sent = True
            elif kind == "rekey":  # a worker's session is old: our send on it starts the rekey
                nid = NodeId(msg[1])
                if len(msg) > 2 and msg[2] is not None:  # it sealed half of AES-GCM's limit: rekey now
                    sent = core.transport.rekey(nid, now, msg[2]) or sent
                elif core.transport.has_session(nid):
                    core.transport.send_to(nid, b"", now)  # a keepalive
                    sent = True
            elif kind == "stats":
                s.stats = msg[1]
        if sent:
            self.daemon.driver.transmit()

    def status(self) -> dict[str, Any]:
        """Per slot: its process and what it carried; slot 0 is this process (its share of the
        networks' packets, upcalls included)."""
        main = {"packets_out": 0, "packets_in": 0, "bytes_out": 0, "bytes_in": 0}
        for net in self.daemon.core.vpn.switch.networks.values():
            if net.network_id in self.queues:
                for c in net.peers.values():
                    main["packets_out"] += c.packets_out
                    main["packets_in"] += c.packets_in
                    main["bytes_out"] += c.bytes_out
                    main["bytes_in"] += c.bytes_in
        slots = [{"slot": 0, "pid": os.getpid(), **main}]
        slots += [{"slot": s.slot, "pid": s.pid, **s.stats} for s in sorted(self.slots.values(), key=lambda x: x.slot)]
        return {
            "workers": self.n,
            "restarts": self.restarts,
            "upcalls": dict(self.upcalls),
            "handoff": dict(self.handoff.stats),
            "peers_with_workers": sum(1 for m in self._members() if self.daemon.core.worker_slots.get(m.raw) == self.n),
            "slots": slots,
        }

    # -- the worker ------------------------------------------------------------------
    def _child(self, slot: int, ctrl: socket.socket) -> None:
        signal.set_wakeup_fd(-1)  # the parent's asyncio wake-up pipe is not ours
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:  # die with the main process (PR_SET_PDEATHSIG)
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
        except (OSError, AttributeError):
            pass
        d = self.daemon
        nets = {nid: d.core.vpn.switch.networks[nid] for nid in self.queues}
        loop = _WorkerLoop(slot, nets, set(d._coalesce), {nid: qs[slot - 1].fileno() for nid, qs in self.queues.items()},
                           self.socks[slot], ctrl, self.floors, os.getppid(), self.handoff)
        loop.ack_filter = getattr(d.cfg, "ack_filter", True)
        loop.run()


class _WorkerLoop:
    """One worker's loop: epoll over its TUN queues, its socket and its pipe to the main process."""

    #: ``[dataplane] ack_filter``: leave out pure TCP ACKs a later one in the same read supersedes.
    ack_filter = True

    def __init__(self, slot: int, nets: dict[bytes, Any], coalesce: set[bytes], queues: dict[bytes, int],
                 sock: socket.socket, ctrl: socket.socket, floors: mmap.mmap, parent: int, handoff: Handoff):
        self.slot = slot
        self.handoff = handoff
        handoff.stats = dict.fromkeys(handoff.stats, 0)  # ours from here on, not the main process's
        self.nets = nets
        self.coalesce = coalesce
        self.queue_of = queues
        self.net_of = {fd: nid for nid, fd in queues.items()}
        self.sock = sock
        self.ctrl = ctrl
        self.floors = floors
        self.parent = parent
        self.crypto = WorkerCrypto(slot, _SLOT.unpack_from(floors, _SLOT.size * slot)[0])
        self.crypto.trains = True  # a fragmented payload leaves as one GSO send (_send_all)
        self.endpoints: dict[bytes, tuple] = {}
        self.stats = {"packets_out": 0, "packets_in": 0, "bytes_out": 0, "bytes_in": 0, "upcalls": 0,
                      "tun_write_errors": 0, "send_errors": 0, "acks_filtered": 0}
        self.gso = True
        self._written: set[int] = set()
        self._nudged: dict[bytes, float] = {}
        self.installs = 0

    def run(self) -> None:
        ep = select.epoll()
        for fd in self.net_of:
            ep.register(fd, select.EPOLLIN)
        ep.register(self.sock.fileno(), select.EPOLLIN)
        ep.register(self.ctrl.fileno(), select.EPOLLIN)
        inbox = self.handoff.rx[self.slot].fileno()
        ep.register(inbox, select.EPOLLIN)
        ctrl_fd, sock_fd = self.ctrl.fileno(), self.sock.fileno()
        self.ctrl.setblocking(False)
        try:  # GRO: the pieces of a 60 kB payload in one read (a piece of another slot is handed to it)
            self.sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        except OSError:
            pass
        next_stats = next_sweep = 0.0
        while True:
            for fd, _ev in ep.poll(STATS_INTERVAL):
                if fd == sock_fd:
                    self._on_udp(self._datagrams())
                elif fd == inbox:
                    self._on_udp(self._handed())
                elif fd == ctrl_fd:
                    if not self._on_ctrl():
                        return
                else:
                    self._on_tun(fd)
            t = time.monotonic()
            if t >= next_stats:
                next_stats = t + STATS_INTERVAL
                if os.getppid() != self.parent:
                    return
                self._upcall(("stats", {**self.stats, **self.crypto.stats, "key_installs": self.installs,
                                        **{f"handoff_{k}": v for k, v in self.handoff.stats.items()},
                                        "sessions": len(self.crypto._by_index),
                                        "flows": sum(len(getattr(n.firewall, "_flows", ())) for n in self.nets.values())}))
            if t >= next_sweep:  # idle firewall flows, expired members: bounded tables
                next_sweep = t + 5.0
                now = time.time()
                for net in self.nets.values():
                    net.handle_timer(now)
                    self._discard(net)

    def _discard(self, net: Any) -> None:
        """The main process does what a network asks to send or announce; our copy forgets it."""
        net.messages_to_send()
        while net.next_event() is not None:
            pass

    def _on_ctrl(self) -> bool:
        while True:
            try:
                raw = self.ctrl.recv(1 << 22)
            except BlockingIOError:
                return True
            if not raw:
                return False  # the main process went away
            msg = pickle.loads(raw)
            if msg[0] == "stop":  # stopped on purpose: hand our replay windows to our successor
                self.ctrl.setblocking(True)
                self.ctrl.send(pickle.dumps(("windows", self.crypto.windows())))
                return False
            if msg[0] == "keys":
                _, keys, current, rekey_after, reject_after, windows = msg
                self.crypto.rekey_after, self.crypto.reject_after = rekey_after, reject_after
                self.crypto.install(keys, current, windows)
                self.installs += 1
                self._nudged = {}
                self.endpoints = {k.node: k.endpoint for k in keys if current.get(k.node) == k.local_index}

    def _upcall(self, msg: tuple) -> None:
        try:
            self.ctrl.send(pickle.dumps(msg))
        except BlockingIOError:
            self.stats["upcalls_lost"] = self.stats.get("upcalls_lost", 0) + 1

    # -- out: TUN -> peers ----------------------------------------------------------
    def _on_tun(self, fd: int) -> None:
        nid = self.net_of[fd]
        packets = []
        for _ in range(_BATCH):
            try:
                packets.append(os.read(fd, _READ))
            except BlockingIOError:
                break
            except OSError:
                break
        if not packets:
            return
        if len(packets) > 1 and nid in self.coalesce:
            packets, acks = prepare_batch(packets, self.ack_filter)
            self.stats["acks_filtered"] += acks
        net = self.nets[nid]
        now = time.time()
        crypto = self.crypto
        out: list[tuple[bytes, tuple]] = []
        fast = net.outbound_fast if type(net) is VpnNetwork else None
        for pkt in packets:
            f = fast(pkt, now) if fast is not None else None  # a tracked flow's packet (core/vpn/network.py)
            if f is None:
                r = net.outbound_read(pkt, now)
                if type(r) is Send:
                    f = r.node_id, r.payloads
                elif type(r) is Deliver:  # e.g. an ICMP "too big" for our own host
                    self._write(fd, r.vnet, r.packet)
                    continue
                elif getattr(r, "reason", "") == "no-route":  # the main process looks the address up
                    self._upcall(("out", nid, pkt))
                    self.stats["upcalls"] += 1
                    continue
                else:
                    self._count_drop("out", r)
                    continue
            # (node ID, payloads): the fast path's, or the full path's Send's
            node = f[0].raw
            ep = self.endpoints.get(node)
            sealed, d = [], None
            if ep is not None:
                for payload in f[1]:
                    if crypto.counter >= crypto.reserved:
                        _SLOT.pack_into(self.floors, _SLOT.size * self.slot, crypto.reserve())
                    d = crypto.seal(node, payload, now)
                    if d is None:
                        break
                    sealed.extend(d)
            if ep is not None and d is not None:
                out.extend((d, ep) for d in sealed)
                if crypto.wants_rekey(node, now) and now - self._nudged.get(node, 0.0) >= 1.0:
                    self._nudged[node] = now  # the main process's send on the session starts the rekey
                    self._upcall(("rekey", node, crypto.worn(node)))
                self.stats["packets_out"] += 1
                self.stats["bytes_out"] += len(pkt) - VNET_HDR_LEN
            else:
                self._upcall(("out", nid, pkt))
                self.stats["upcalls"] += 1
        self._discard(net)
        if out:
            self._send_all(out)

    def _send_all(self, out: list[tuple[bytes, tuple]]) -> None:
        i, n = 0, len(out)
        sock = self.sock
        while i < n:
            data, addr = out[i]
            if type(data) is Train:  # one payload's pieces, laid end to end by the seal
                try:
                    if self.gso:
                        sock.sendmsg([data.data], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", data.seg))], 0, addr)
                    else:
                        for d in data.datagrams():
                            sock.sendto(d, addr)
                except (BlockingIOError, InterruptedError):
                    self.stats["send_errors"] += n - i
                    return
                except OSError:
                    if self.gso:
                        self.gso = False
                        continue
                    self.stats["send_errors"] += 1
                i += 1
                continue
            j = i + 1
            if self.gso:
                size = total = len(data)
                while (j < n and j - i < _GSO_SEGMENTS and out[j][1] == addr and type(out[j][0]) is not Train
                       and total + len(out[j][0]) <= _GSO_BYTES and len(out[j][0]) <= size):
                    total += len(out[j][0])
                    j += 1
                    if len(out[j - 1][0]) < size:
                        break
            try:
                if j - i > 1:
                    sock.sendmsg([b"".join(d for d, _ in out[i:j])],
                                 [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))], 0, addr)
                else:
                    sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                self.stats["send_errors"] += n - i  # a full socket buffer: like a congested link
                return
            except OSError:
                if j - i > 1 and self.gso:
                    self.gso = False
                    continue
                self.stats["send_errors"] += j - i
            i = j

    # -- in: peers -> TUN -------------------------------------------------------------
    def _datagrams(self):
        """Up to a batch of datagrams from our socket, UDP GRO super-datagrams cut back apart; a
        read that is one payload's pieces of our partition comes whole, as a Train over the
        receive buffer (opened before the next read: ``_on_udp`` consumes each before asking for
        the next)."""
        sock = self.sock
        for _ in range(_BATCH):
            try:
                n, anc, _flags, addr = sock.recvmsg_into(_RECV_INTO, _GRO_CMSG)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            seg = 0
            for level, kind, value in anc:
                if level == SOL_UDP and kind == UDP_GRO and len(value) >= 4:
                    seg = struct.unpack("=i", value[:4])[0]
            if 0 < seg < n:  # the kernel steered the read by its first piece: the others may not be ours
                if self.handoff.n == 1 or steer_slot(_RECV_VIEW[:16], self.handoff.n) == self.slot:
                    # Joined as read if it is one payload's pieces (opened whole if of our partition).
                    yield _RX.read(n, seg, MAX_FRAGMENTS, _REASSEMBLED)
                else:
                    yield from self.handoff.split(self.slot, bytes(_RECV_VIEW[:n]), seg, addr)
            else:
                yield bytes(_RECV_VIEW[:n])

    def _handed(self):
        """Pieces another process read that are ours (Handoff)."""
        for _addr, pieces in self.handoff.receive(self.slot):
            yield from pieces

    def _opened(self, datagrams, now: float):
        """(peer node ID, plaintext) of every payload these datagrams complete: a Train (a GRO
        read) whole if it is one payload of ours, else piece by piece as without GRO."""
        crypto = self.crypto
        for data in datagrams:
            if type(data) is Train:
                if data.sealed is not None:  # one payload's pieces, joined as read
                    local, counter = data.first[0], data.first[1]
                    r = crypto.open_joined(local, counter, data.sealed, now)
                    if r is False:  # another partition's: handed there as the run it came as
                        run = relaid(local, counter, data.sealed, data.seg)
                        yield from self._opened(self.handoff.split(self.slot, run, data.seg, None), now)
                        continue
                else:
                    r = crypto.open_train(data.data, data.seg, now)
                    if r is False:
                        yield from self._opened(self.handoff.split(self.slot, data.data, data.seg, None), now)
                        continue
            else:
                r = crypto.open(data, now)
            if r is not None:
                yield r

    def _on_udp(self, datagrams) -> None:
        now = time.time()
        touched: set[Any] = set()  # the networks whose requests the main process makes (_discard), once a batch
        for node, plain in self._opened(datagrams, now):
            if len(plain) < 35:
                continue  # a keepalive (empty) or nothing a network takes
            net = self.nets.get(plain[2:34])
            code = plain[1]
            if net is None or node not in net._members or code not in (_PACKET, _CHUNK):
                self._upcall(("in", node, plain))
                self.stats["upcalls"] += 1
                continue
            if code == _CHUNK and type(net) is VpnNetwork:
                f = net.inbound_fast(node, plain, now)  # a tracked flow's packet (core/vpn/network.py)
                if f is not None:
                    self.stats["packets_in"] += 1
                    self.stats["bytes_in"] += len(f[1])
                    self._write(self.queue_of[net.network_id], f[0], f[1])
                    continue
            elif code == _PACKET and type(net) is VpnNetwork:
                g = net.inbound_packet_fast(node, plain, now)  # a ping, a lone small packet of a tracked flow
                if g is not None:
                    self.stats["packets_in"] += 1
                    self.stats["bytes_in"] += len(g)
                    self._write(self.queue_of[net.network_id], b"", g)
                    continue
            res = net._inbound_packet(node, plain, now) if code == _PACKET else net._inbound_chunk(node, plain, now)
            if type(res) is Deliver:
                self.stats["packets_in"] += 1
                self.stats["bytes_in"] += len(res.packet)
                self._write(self.queue_of[net.network_id], res.vnet, res.packet)
            elif res is not None:  # None: a piece of a chunk, kept until the chunk is whole
                self._count_drop("in", res)
            touched.add(net)
        for net in touched:
            self._discard(net)
        if self._written:  # what the writes made the host answer is queued already (Daemon._drain_tuns)
            written, self._written = self._written, set()
            for fd in written:
                self._on_tun(fd)

    def _count_drop(self, way: str, r: Any) -> None:
        """What a network refused (a firewall, a filter), by reason, as the main process counts it."""
        key = f"dropped_{way}_{getattr(r, 'reason', type(r).__name__)}"
        if key in self.stats or len(self.stats) < 64:
            self.stats[key] = self.stats.get(key, 0) + 1

    def _write(self, fd: int, vnet: bytes, packet: bytes) -> None:
        try:
            os.writev(fd, (vnet or VNET_NONE, packet))
            self._written.add(fd)
        except OSError:
            self.stats["tun_write_errors"] += 1
