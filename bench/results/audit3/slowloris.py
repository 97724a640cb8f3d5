"""Slow connections against /metrics: what one host holds, and whether the operator still gets in.

One `weft up` (metrics on 127.0.0.1, limited to 160 file descriptors as a unit's LimitNOFILE
would, only lower); one host (127.0.0.1) opens ``--conns`` connections, each with half a request
head, never finished. Prints one JSON line: the daemon's open descriptors and the attacker's
connections still open after 1 s and after 20 s, and whether `status` over the control socket and
a scrape from 127.0.0.2 were answered at 1 s.

    PYTHONPATH=<tree>/src:tests python bench/results/audit3/slowloris.py [--conns 300]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from opstools import Daemons, free_port, wait_for  # noqa: E402
from weftnet.runtime.control import call  # noqa: E402


def still_open(socks) -> int:
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            n += bool(s.recv(1, socket.MSG_PEEK))
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=300)
    a = ap.parse_args()
    out: dict = {"conns": a.conns}
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemons(Path(tmp))
        port = free_port(socket.SOCK_STREAM)
        try:
            d.init("a", f'[overlay]\nenable = false\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
            d.up("a", prefix=["prlimit", "--nofile=160"])
            pid = d.procs["a"].pid
            wait_for(lambda: _scrape(port, "127.0.0.1"), 20, "metrics")
            fds = lambda: len(os.listdir(f"/proc/{pid}/fd"))  # noqa: E731
            out["fds_before"] = fds()
            socks = []
            for _ in range(a.conns):
                s = socket.socket()
                try:
                    s.connect(("127.0.0.1", port))
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                    socks.append(s)
                except OSError:
                    s.close()
            time.sleep(1)
            out["fds_1s"], out["held_1s"] = fds(), still_open(socks)
            try:
                call(d.state["a"] / "control.sock", "status", timeout=10)
                out["control_answered"] = True
            except Exception as exc:  # noqa: BLE001
                out["control_answered"] = f"{type(exc).__name__}: {exc}"
            out["scrape_from_127.0.0.2"] = _scrape(port, "127.0.0.2")
            time.sleep(19)
            out["fds_20s"], out["held_20s"] = fds(), still_open(socks)
            for s in socks:
                s.close()
        finally:
            d.close()
    print(json.dumps(out))


def _scrape(port: int, source: str) -> bool:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        got = s.recv(64)
        s.close()
        return got.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


if __name__ == "__main__":
    main()
