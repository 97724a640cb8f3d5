"""Traffic for the data-plane worker tests (run inside a network namespace).

    python dp_traffic.py serve HOST PORT            # TCP and UDP echo on HOST:PORT until killed
    python dp_traffic.py client HOST PORT FLOWS     # FLOWS TCP and FLOWS UDP flows, each echoed back

The client prints one JSON line: how many TCP flows echoed every byte and how many UDP flows
had every datagram echoed (each datagram retried up to 3 times: UDP may drop).
"""

import json
import socket
import sys
import threading
import time


def serve(host: str, port: int) -> None:
    tcp = socket.socket()
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((host, port))
    tcp.listen(128)

    def echo(c: socket.socket) -> None:
        with c:
            while data := c.recv(65536):
                c.sendall(data)

    def accept() -> None:
        while True:
            c, _ = tcp.accept()
            threading.Thread(target=echo, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((host, port))
    while True:
        data, addr = udp.recvfrom(65536)
        udp.sendto(data, addr)


def tcp_flow(host: str, port: int, i: int, size: int, notes: list) -> bool:
    payload = bytes([i % 251]) * size
    t0 = time.monotonic()
    got = bytearray()
    try:
        with socket.create_connection((host, port), timeout=20) as s:
            s.settimeout(20)
            sender = threading.Thread(target=s.sendall, args=(payload,))
            sender.start()
            while len(got) < size:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            sender.join()
            if bytes(got) == payload:
                return True
            notes.append(f"tcp flow {i}: {len(got)} of {size} bytes back after {time.monotonic() - t0:.1f} s")
            return False
    except OSError as exc:  # the note says where it stopped, for the test's failure message
        notes.append(f"tcp flow {i}: {type(exc).__name__} {exc} with {len(got)} of {size} bytes back "
                     f"after {time.monotonic() - t0:.1f} s")
        raise


def udp_flow(host: str, port: int, i: int, count: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(2.0)
        for n in range(count):
            msg = b"%d-%d-" % (i, n) + bytes(1000)
            for _attempt in range(3):
                u.sendto(msg, (host, port))
                try:
                    while u.recv(65536) != msg:
                        pass
                    break
                except socket.timeout:
                    continue
            else:
                return False
    return True


def client(host: str, port: int, flows: int) -> None:
    results = {"tcp": [False] * flows, "udp": [False] * flows}
    notes: list[str] = []

    def run(kind: str, i: int) -> None:
        try:
            results[kind][i] = (tcp_flow(host, port, i, 300_000, notes) if kind == "tcp" else udp_flow(host, port, i, 20))
        except OSError:
            results[kind][i] = False

    threads = [threading.Thread(target=run, args=(k, i)) for k in ("tcp", "udp") for i in range(flows)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for note in notes:
        print(note)
    print(json.dumps({"tcp_ok": sum(results["tcp"]), "udp_ok": sum(results["udp"]), "flows": flows}))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
