"""The floor of bench/dataplane/passcost.py's three passes (docs/dataplane.md, "Third round"): only what a
ping cannot do without (TUN read, AEAD, UDP send; UDP receive, AEAD, TUN write), no routing, no
firewall, no session state; warm and after streaming 8 MiB through the caches. Medians, µs."""
import socket, os, time, statistics, sys
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

THRASH = bytearray(8 << 20)
def thrash():
    b = THRASH
    for i in range(0, len(b), 4096): b[i] = 1
    bytes(memoryview(b))
a_tun, a_k = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
b_tun, b_k = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
for s in (a_tun, b_tun): s.setblocking(False)
ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); ua.bind(("127.0.0.1", 0)); ua.setblocking(False)
ub = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); ub.bind(("127.0.0.1", 0)); ub.setblocking(False)
k = ChaCha20Poly1305(os.urandom(32))
pkt = bytes(10) + bytes(84)
res = {False: [[], [], []], True: [[], [], []]}
pc = time.perf_counter
def pass_out(fd, sock, dst, eagain=True):
    p = os.read(fd, 65535)
    if eagain:
        try: os.read(fd, 65535)
        except BlockingIOError: pass
    ct = k.encrypt(bytes(12), p[10:], None)
    sock.sendto(b"\x01\x04" + bytes(12) + ct, dst)
def pass_in(sock, fd, eagain=True):
    d, anc, fl, addr = sock.recvmsg(65535, 64)
    if eagain:
        try: sock.recvmsg(65535, 64)
        except BlockingIOError: pass
    p = k.decrypt(bytes(12), d[14:], None)
    os.writev(fd, (bytes(10), p))
for cold in (False, True):
    for i in range(300):
        a_k.send(pkt)
        if cold: thrash()
        t = pc(); pass_out(a_tun.fileno(), ua, ub.getsockname()); res[cold][0].append(pc() - t)
        b_k.send(pkt)
        if cold: thrash()
        t = pc(); pass_in(ub, b_tun.fileno()); pass_out(b_tun.fileno(), ub, ua.getsockname()); res[cold][1].append(pc() - t)
        b_k.recv(65535)
        if cold: thrash()
        t = pc(); pass_in(ua, a_tun.fileno()); res[cold][2].append(pc() - t)
        a_k.recv(65535)
    r = [statistics.median(x[20:]) * 1e6 for x in res[cold]]
    print("cold" if cold else "warm", " ".join("%.1f" % x for x in r), "sum %.1f" % sum(r))
