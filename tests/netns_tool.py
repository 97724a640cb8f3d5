"""Small network tools the namespace tests run inside a namespace (``ip netns exec NS python netns_tool.py ...``).

    ping DST [COUNT]                    ICMP echo over a raw socket; exit 0 if any reply came
    serve PORT TAG [HOST]               TCP: read to EOF, answer "TAG:<bytes read>", for every connection
                                        (HOST: the address to bind, "::" for IPv6; default 0.0.0.0)
    connect DST PORT NBYTES [TIMEOUT]   TCP: send NBYTES, print the answer; exit 1 if it cannot
    stream DST PORT SECONDS RATE        TCP: send at RATE bytes/s for SECONDS, print "sent N" and the answer
    forge HOST PORT PUBKEY NETID        as a non-member node: send forged VPN messages to a member
    pingall DST[,DST...] TIMEOUT        ICMP echo to every DST until each has answered once; exit 1 if not
    forge-l2 STATE HOST PORT PUBKEY MAC IP
                                        as the layer-2 member of state dir STATE: send a member frames from
                                        MAC (not ours) and from IP (not ours) and ARP claiming MAC

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


def pingall(targets: list[str], timeout: float) -> int:
    """Echo requests (ICMP or ICMPv6, by the target's family) until every target has answered once."""
    socks = {}
    for fam, proto in ((socket.AF_INET, socket.IPPROTO_ICMP), (socket.AF_INET6, socket.IPPROTO_ICMPV6)):
        if any((":" in t) == (fam == socket.AF_INET6) for t in targets):
            socks[fam] = socket.socket(fam, socket.SOCK_RAW, proto)
            socks[fam].settimeout(0.1)
    ident = os.getpid() & 0xFFFF
    pending = {t: i for i, t in enumerate(targets)}
    deadline = time.monotonic() + timeout
    rnd = 0
    while pending and time.monotonic() < deadline:
        rnd += 1
        for t, i in pending.items():
            v6 = ":" in t
            body = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, (rnd << 8 | i) & 0xFFFF) + b"weftnet-test"
            if not v6:  # the kernel fills in an ICMPv6 checksum itself
                body = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
            socks[socket.AF_INET6 if v6 else socket.AF_INET].sendto(body, (t, 0))
        end = time.monotonic() + 0.5
        while pending and time.monotonic() < end:
            for fam, s in socks.items():
                try:
                    pkt, addr = s.recvfrom(2048)
                except socket.timeout:
                    continue
                icmp = pkt if fam == socket.AF_INET6 else pkt[(pkt[0] & 0x0F) * 4:]
                typ, _, _, rid, _ = struct.unpack("!BBHHH", icmp[:8])
                if typ == (129 if fam == socket.AF_INET6 else 0) and rid == ident:
                    pending.pop(addr[0], None)
    if pending:
        print("unanswered: " + ",".join(sorted(pending)))
        return 1
    print(f"all {len(targets)} answered")
    return 0


def forge_l2(state: str, host: str, port: int, pubkey_hex: str, mac: str, ip: str) -> int:
    """A genuine member of a layer-2 network sending frames its certificate does not grant."""
    import asyncio
    import ipaddress
    from pathlib import Path

    from weftnet.core.contact import Contact
    from weftnet.core.vpn.ethernet import member_mac, parse_mac
    from weftnet.core.vpn.l2network import L2Frame
    from weftnet.core.vpn.network import CertOffer
    from weftnet.core.wire import encode
    from weftnet.runtime.driver import start_node
    from weftnet.runtime.keystore import load_identity
    from weftnet.runtime.netstate import list_networks
    from weftnet.runtime.paths import StatePaths

    sys.path.insert(0, os.path.dirname(__file__))
    from vpn_packets import icmp_echo

    def eth(dst, src, etype, payload):
        return dst + src + struct.pack("!H", etype) + payload

    def arp(sha, spa, tpa):
        return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, sha, ipaddress.ip_address(spa).packed, bytes(6),
                           ipaddress.ip_address(tpa).packed)

    async def main() -> None:
        ident = load_identity(StatePaths(Path(state)).key)
        (m,) = [m for m in list_networks(Path(state)) if m.certificate is not None]
        netid = m.descriptor.network_id
        own_mac = member_mac(netid, ident.node_id.raw)
        own_ip = str(m.certificate.addresses[0])
        driver = await start_node(ident, host="0.0.0.0")
        core = driver.core
        victim = Contact(bytes.fromhex(pubkey_hex), (host, port))
        core.transport.send(victim, encode(CertOffer(netid, m.certificate, 0)), time.time())
        bcast = b"\xff" * 6
        frames = [
            eth(bcast, parse_mac(mac), 0x0806, arp(parse_mac(mac), own_ip, ip)),  # a MAC it may not use
            eth(bcast, own_mac, 0x0800, icmp_echo(ip, own_ip, 4242)),  # an IP it may not use
            eth(bcast, own_mac, 0x0806, arp(parse_mac(mac), own_ip, ip)),  # ARP claiming another's MAC
        ]
        for _ in range(5):
            for f in frames:
                core.transport.send(victim, encode(L2Frame(netid, f)), time.time())
            driver.transmit()
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        print(f"sent; sessions: {len(core.transport.peers())}")
        driver.close()

    asyncio.run(main())
    return 0


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
    if cmd == "pingall":
        sys.exit(pingall(args[0].split(","), float(args[1])))
    if cmd == "forge-l2":
        sys.exit(forge_l2(args[0], args[1], int(args[2]), args[3], args[4], args[5]))
    sys.exit(f"unknown command {cmd!r}")
