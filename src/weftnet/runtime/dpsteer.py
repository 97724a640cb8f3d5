"""Kernel steering for several data-plane workers (docs/dataplane.md, "Several workers").

Two kernel mechanisms put the packets of one flow in front of one worker
process, without the workers talking to each other per packet:

* **Receive: a UDP ``SO_REUSEPORT`` group steered by counter partition.**
  Every worker's socket is bound to the node's one address and port (peers
  see one endpoint; the NAT mapping stays one mapping). A classic BPF program
  attached to the group (``SO_ATTACH_REUSEPORT_CBPF``) reads two bytes of
  each datagram's UDP payload: its type (byte 1) and the top byte of its
  transport counter (byte 6, docs/wire/packets.md). A ``TransportData`` or
  ``TransportFragment`` datagram whose counter partition names worker slot
  ``k`` (its low four bits, :func:`partition_slot`) with ``1 <= k < n`` goes
  to the ``k``-th socket of the group; everything else — handshakes,
  cookies, hellos, partition 0 (the main process's and every older
  sender's) — goes to socket 0, the main process. So each partition is always opened by
  one process, the only one that holds its replay window
  (core/session/replay.py). The program sees the first datagram of a UDP GRO read only;
  the pieces behind it are sorted by :func:`steer_slot`, the same rule, in the process
  that read them, which hands the others over (runtime/dpworkers.py, ``Handoff``).

  The kernel indexes a group by the order sockets joined it and moves the
  last socket into a closed one's slot, so the process that builds the group
  keeps every socket open for the group's whole life (a worker that dies
  must not close its socket).

* **Send and TUN: a multi-queue TUN** (``IFF_MULTI_QUEUE``, one file
  descriptor per queue, one queue per worker). The kernel hands packets to
  the queue of the flow's symmetric hash, and a packet *written* on queue
  ``k`` teaches the TUN that its flow's packets go to queue ``k``: the worker
  that delivers a flow's inbound packets is the one that reads its outbound
  ones, so a worker's firewall sees both directions of the flows it carries.

This module is the kernel side only (file descriptors and socket options);
runtime/dpworkers.py runs the workers on them.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct

from weftnet.errors import NetworkError
from weftnet.runtime.tun import (IFF_NO_PI, IFF_TUN, IFF_VNET_HDR, TUN_PATH, TUNSETIFF, TunDevice,
                                 _IFREQ, _check_name)

__all__ = ["MAX_WORKERS", "IFF_MULTI_QUEUE", "partition_slot", "partition_byte", "steering_program", "steer_slot",
           "open_steered_group", "attach_partition_steering", "open_tun_queues"]

#: Worker slots a partition byte can name (its low four bits; slot 0 is the main process).
MAX_WORKERS = 16
IFF_MULTI_QUEUE = 0x0100
SO_ATTACH_REUSEPORT_CBPF = 51  # asm-generic/socket.h
_T_DATA, _T_FRAGMENT = 4, 7  # TransportData, TransportFragment (core/session/transport.py)
_PARTITION_OFFSET = 6  # version u8, type u8, receiver index u32, then the counter u64 big-endian

# Classic BPF opcodes (linux/filter.h).
_LD_W_LEN = 0x80  # BPF_LD | BPF_W | BPF_LEN: A = packet length
_LD_B_ABS = 0x30  # BPF_LD | BPF_B | BPF_ABS: A = byte at k
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RET_A = 0x16  # BPF_RET | BPF_A
_RET_K = 0x06  # BPF_RET | BPF_K


def partition_slot(partition: int) -> int:
    """The worker slot a counter partition (0-255) is steered to: its low four bits."""
    return partition & (MAX_WORKERS - 1)


def partition_byte(slot: int, high: int = 0) -> int:
    """A counter's partition byte for worker ``slot``. Workers seal with ``high`` 0 (a restarted
    worker starts above its predecessor's counters instead: runtime/dpworkers.py); steering reads
    only the low four bits, so the high four are free for a later use."""
    if not 0 <= slot < MAX_WORKERS or not 0 <= high < 16:
        raise ValueError("slot and high must be 0-15")
    return (high << 4) | slot


def steering_program(workers: int) -> list[tuple[int, int, int, int]]:
    """The classic BPF program of a group of ``workers`` sockets: (code, jt, jf, k) rows."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be 1-{MAX_WORKERS}")
    return [
        (_LD_W_LEN, 0, 0, 0),
        (_JGE_K, 0, 7, 14),  # shorter than a data header: main
        (_LD_B_ABS, 0, 0, 1),
        (_JEQ_K, 1, 0, _T_DATA),
        (_JEQ_K, 0, 4, _T_FRAGMENT),  # neither TransportData nor a fragment of one: main
        (_LD_B_ABS, 0, 0, _PARTITION_OFFSET),
        (_AND_K, 0, 0, MAX_WORKERS - 1),
        (_JGE_K, 1, 0, workers),  # a slot this node has no worker for: main
        (_RET_A, 0, 0, 0),
        (_RET_K, 0, 0, 0),
    ]


def steer_slot(datagram: bytes, workers: int) -> int:
    """The slot :func:`steering_program` sends ``datagram`` to: its twin in Python, for the pieces
    of a UDP GRO read. The kernel steers a GRO read by its first piece only; the pieces behind it
    (GRO joins the datagrams of one address pair, whatever their partition) are steered here,
    by the same rule (runtime/dpworkers.py, :class:`~weftnet.runtime.dpworkers.Handoff`)."""
    if len(datagram) >= 14 and datagram[1] in (_T_DATA, _T_FRAGMENT):
        slot = datagram[_PARTITION_OFFSET] & (MAX_WORKERS - 1)
        if slot < workers:
            return slot
    return 0


def attach_partition_steering(sock: socket.socket, workers: int) -> None:
    """Attach :func:`steering_program` to the reuseport group ``sock`` belongs to."""
    rows = steering_program(workers)
    code = (ctypes.c_ubyte * (8 * len(rows))).from_buffer_copy(
        b"".join(struct.pack("=HBBI", *row) for row in rows))
    fprog = struct.pack("@HP", len(rows), ctypes.addressof(code))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as exc:
        raise NetworkError(f"cannot steer the UDP port's datagrams to workers: {exc.strerror}") from None


def open_steered_group(host: str, port: int, workers: int, buffer_bytes: int = 4 << 20) -> list[socket.socket]:
    """``workers`` non-blocking UDP sockets bound to ``host:port`` in one steered reuseport group;
    element 0 is the main process's. The caller keeps them all open while the group is in use."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for _ in range(workers):
            s = socket.socket(family, socket.SOCK_DGRAM)
            socks.append(s)
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            for opt in (getattr(socket, "SO_RCVBUFFORCE", 33), getattr(socket, "SO_SNDBUFFORCE", 32)):
                try:
                    s.setsockopt(socket.SOL_SOCKET, opt, buffer_bytes)
                except OSError:
                    pass
            s.bind((host, port))
            port = s.getsockname()[1]  # port 0: the others join the port the first one got
        attach_partition_steering(socks[0], workers)
    except OSError as exc:
        for s in socks:
            s.close()
        raise NetworkError(f"cannot bind {workers} sockets to {host}:{port}: {exc.strerror}") from None
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def open_tun_queues(name: str, queues: int, *, vnet_hdr: bool = False, netns: str | None = None) -> list[TunDevice]:
    """Create (or attach to) the multi-queue TUN ``name`` in this network namespace (or in
    ``netns``) and open ``queues`` queues of it, one file descriptor each (non-blocking)."""
    if netns is not None:
        from pyroute2 import netns as pr_netns

        pr_netns.pushns(netns)
        try:
            return open_tun_queues(name, queues, vnet_hdr=vnet_hdr)
        finally:
            pr_netns.popns()
    raw = _check_name(name)
    flags = IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE | (IFF_VNET_HDR if vnet_hdr else 0)
    out: list[TunDevice] = []
    try:
        for _ in range(queues):
            fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
            try:
                res = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(raw, flags))
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EPERM, errno.EACCES):
                    raise NetworkError(f"opening queue {len(out)} of TUN {name!r}: needs CAP_NET_ADMIN") from None
                raise NetworkError(f"opening queue {len(out)} of TUN {name!r}: {exc.strerror}") from None
            actual = _IFREQ.unpack(res)[0].rstrip(b"\x00").decode("ascii")
            raw = actual.encode("ascii")  # a "%d" name: the next queues attach to the device just made
            out.append(TunDevice(fd, actual, None, vnet_hdr))
    except BaseException:
        for t in out:
            t.close()
        raise
    return out
