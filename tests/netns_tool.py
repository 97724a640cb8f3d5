"""Small network tools the namespace tests run inside a namespace (``ip netns exec NS python netns_tool.py ...``).

    ping DST [COUNT]                    ICMP echo over a raw socket; exit 0 if any reply came
    serve PORT TAG [HOST]               TCP: read to EOF, answer "TAG:<bytes read>", for every connection
                                        (HOST: the address to bind, "::" for IPv6; default 0.0.0.0)
    connect DST PORT NBYTES [TIMEOUT]   TCP: send NBYTES, print the answer; exit 1 if it cannot
    stream DST PORT SECONDS RATE        TCP: send at RATE bytes/s for SECONDS, print "sent N" and the answer
    forge HOST PORT PUBKEY NETID        as a non-member node: send forged VPN messages to a member

Standalone on purpose (stdlib only, except ``forge``, which uses weftnet as a library).
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ping(dst: str, count: int = 3) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(1.0)
    ident = os.getpid() & 0xFFFF
    got = 0
    for seq in range(1, count + 1):
        body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"weftnet-test"
        body = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
        t0 = time.monotonic()
        s.sendto(body, (dst, 0))
        while time.monotonic() - t0 < 1.0:
            try:
                pkt, addr = s.recvfrom(2048)
            except socket.timeout:
                break
            ihl = (pkt[0] & 0x0F) * 4
            typ, _, _, rid, rseq = struct.unpack("!BBHHH", pkt[ihl : ihl + 8])
            if typ == 0 and rid == ident and rseq == seq and addr[0] == dst:
                got += 1
                print(f"reply from {dst} seq {seq} in {(time.monotonic() - t0) * 1000:.2f} ms")
                break
    return 0 if got else 1


def serve(port: int, tag: str, host: str = "0.0.0.0") -> int:
    srv = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen()
    print("listening", flush=True)
    while True:
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(30)
            n = 0
            try:
                while data := conn.recv(65536):
                    n += len(data)
                conn.sendall(f"{tag}:{n}".encode())
            except OSError:
                pass


def connect(dst: str, port: int, nbytes: int, timeout: float = 5.0) -> int:
    try:
        s = socket.create_connection((dst, port), timeout=timeout)
        chunk = b"w" * 65536
        left = nbytes
        while left > 0:
            s.sendall(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
        s.shutdown(socket.SHUT_WR)
        print(s.recv(200).decode())
        return 0
    except OSError as exc:
        print(f"connect failed: {exc}")
        return 1


def stream(dst: str, port: int, seconds: float, rate: float) -> int:
    """A paced TCP transfer (long enough to disturb the path under it while it runs)."""
    try:
        s = socket.create_connection((dst, port), timeout=10)
        s.settimeout(60)
        chunk = b"s" * 16384
        sent = 0
        t0 = time.monotonic()
        while (now := time.monotonic() - t0) < seconds:
            if sent < rate * now:
                s.sendall(chunk)
                sent += len(chunk)
            else:
                time.sleep(0.002)
        s.shutdown(socket.SHUT_WR)
        print(f"sent {sent}")
        print(s.recv(200).decode(), flush=True)
        return 0
    except OSError as exc:
        print(f"stream failed: {exc}")
        return 1


def forge(host: str, port: int, pubkey_hex: str, netid_hex: str) -> int:
    """Join as a node that is no member, and send a member forged VPN traffic."""
    import asyncio
    import random

    from weftnet.core.contact import Contact
    from weftnet.core.identity import Identity
    from weftnet.core.vpn.netcert import NetworkAuthority
    from weftnet.core.vpn.network import CertOffer, VpnPacket
    from weftnet.core.wire import encode
    from weftnet.runtime.driver import start_node

    sys.path.insert(0, os.path.dirname(__file__))
    from vpn_packets import icmp_echo

    async def main() -> None:
        rng = random.Random()
        driver = await start_node(host="0.0.0.0")
        core = driver.core
        victim = Contact(bytes.fromhex(pubkey_hex), (host, port))
        netid = bytes.fromhex(netid_hex)
        now = time.time()
        # A certificate for the victim's network ID, signed by a key that is not its authority.
        rogue = NetworkAuthority.create("lab", ["10.1.0.0/24"], rng, now)
        fake = rogue.sign_member(core.node_id, ["10.1.0.1"], not_before=int(now) - 60,
                                 not_after=int(now) + 3600, serial=1)
        fields = {n: getattr(fake, n) for n, _ in type(fake).FIELDS}
        fields["network_id"] = netid
        forged_cert = type(fake)(**fields)
        core.transport.send(victim, encode(CertOffer(netid, forged_cert, 1)), now)
        for i in range(20):
            packet = icmp_echo("10.1.0.1", "10.1.0.2", ident=4000 + i)
            core.transport.send(victim, encode(VpnPacket(netid, packet)), time.time())
            driver.transmit()
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        print(f"sent; sessions: {len(core.transport.peers())}")
        driver.close()

    asyncio.run(main())
    return 0


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "ping":
        sys.exit(ping(args[0], int(args[1]) if len(args) > 1 else 3))
    if cmd == "serve":
        sys.exit(serve(int(args[0]), args[1], *args[2:3]))
    if cmd == "connect":
        sys.exit(connect(args[0], int(args[1]), int(args[2]), float(args[3]) if len(args) > 3 else 5.0))
    if cmd == "stream":
        sys.exit(stream(args[0], int(args[1]), float(args[2]), float(args[3])))
    if cmd == "forge":
        sys.exit(forge(args[0], int(args[1]), args[2], args[3]))
    sys.exit(f"unknown command {cmd!r}")
