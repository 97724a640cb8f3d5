#!/usr/bin/env python3
"""floor-hybrid and floor-python: the floor tunnels with a Python event loop (bench only).

    FLOOR_SEND_KEY=<64 hex> FLOOR_RECV_KEY=<64 hex> pytun.py {hybrid,python} TUN LOCAL PEER PORT

Both run uvloop (weftnet's daemon's loop) with one reader callback per file descriptor. `hybrid` calls
floorext.pump, floor.h's packet work in C, once per wake-up: what a fast path in C called from weftnet's
loop could reach. `python` does the same work in as little Python as it can be written (cryptography's
AESGCM, the same datagrams as floor.h, so the two interoperate): what any Python tunnel pays, before
routing, firewalls, sessions and counters. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import socket
import struct
import sys

TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
HDR = struct.Struct("<BxxxIQ")


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def python_pumps(send_key: bytes, recv_key: bytes, peer: tuple[str, int]):
    """The packet work in Python: returns (tun_to_udp, udp_to_tun) taking (from_fd/sock, to)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    seal, open_ = AESGCM(send_key).encrypt, AESGCM(recv_key).decrypt
    pack, unpack_from = HDR.pack, HDR.unpack_from
    state = {"ctr": 0, "top": 0, "bits": 0}

    def tun_to_udp(tun: int, sock: socket.socket) -> None:
        read, sendto = os.read, sock.sendto
        while True:
            try:
                pkt = read(tun, 65535)
            except BlockingIOError:
                return
            ctr = state["ctr"]
            state["ctr"] = ctr + 1
            hdr = pack(4, 1, ctr)
            try:
                sendto(hdr + seal(b"\0\0\0\0" + hdr[8:], pkt, hdr), peer)
            except BlockingIOError:
                pass

    def udp_to_tun(sock: socket.socket, tun: int) -> None:
        recv, write = sock.recv, os.write
        while True:
            try:
                dg = recv(65600)
            except BlockingIOError:
                return
            if len(dg) < 32:
                continue
            typ, rx, ctr = unpack_from(dg)
            top = state["top"]
            if typ != 4 or rx != 1 or (top and ctr < top and (top - 1 - ctr >= 64 or state["bits"] >> (top - 1 - ctr) & 1)):
                continue
            try:
                pkt = open_(b"\0\0\0\0" + dg[8:16], dg[16:], dg[:16])
            except InvalidTag:
                continue
            if not top or ctr >= top:
                shift = ctr + 1 - top
                state["bits"] = 1 if not top or shift >= 64 else (state["bits"] << shift | 1) & (2**64 - 1)
                state["top"] = ctr + 1
            else:
                state["bits"] |= 1 << (top - 1 - ctr)
            try:
                write(tun, pkt)
            except OSError:  # a full queue (EAGAIN), or EIO while the TUN is still down
                pass

    return tun_to_udp, udp_to_tun


def main() -> int:
    if len(sys.argv) != 6 or sys.argv[1] not in ("hybrid", "python"):
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    mode, tun_name, local, peer, port = sys.argv[1:]
    try:
        send_key = bytes.fromhex(os.environ["FLOOR_SEND_KEY"])
        recv_key = bytes.fromhex(os.environ["FLOOR_RECV_KEY"])
    except (KeyError, ValueError):
        print("FLOOR_SEND_KEY and FLOOR_RECV_KEY: 64 hex digits each", file=sys.stderr)
        return 2
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    tun = open_tun(tun_name)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind((local, int(port)))
    # Not connected: an ICMP error (the peer not up yet) would become a socket error, and uvloop (libuv)
    # stops watching a descriptor that reports one.
    if mode == "hybrid":
        import floorext
        floorext.init(send_key, recv_key, peer, int(port))
        pump, udp = floorext.pump, sock.fileno()
        loop.add_reader(tun, pump, tun, udp, True)
        loop.add_reader(udp, pump, udp, tun, False)
    else:
        out, inn = python_pumps(send_key, recv_key, (peer, int(port)))
        loop.add_reader(tun, out, tun, sock)
        loop.add_reader(sock.fileno(), inn, sock, tun)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, loop.stop)
    print(f"pytun {mode}: {tun_name} up, {local}:{port} -> {peer}", file=sys.stderr, flush=True)
    loop.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
