"""An SD-WAN lab in network namespaces: two sites joined by two underlay links, and a third site.

Topology (namespace names carry this process's pid; everything is removed by ``close``)::

    A  l1 10.21.0.1 ─────────────── 10.21.0.2 l1  B      link "l1": A's and B's main sockets
       l2 10.22.0.1 ─────────────── 10.22.0.2 l2         link "l2": a [[link]] on each side
       cx 10.30.0.1 ── C ── 10.31.0.2 cx                 link "c":  to the third site
                  ax 10.30.0.3  bx 10.31.0.3             C listens on 0.0.0.0, offers transit

A and B each run ``weft up`` with [[link]] l1 (its main socket), l2 and c; C runs a plain
node with ``[paths] transit = true``. B joins through A, C through both. Traffic crosses
the overlay interface (weft0) by key-derived address. Impairments use only what this
kernel has (docs in ../shared/LAB.md): ``ip link set down``, nftables on a netdev ingress
hook (a drop rule, or ``numgen`` loss), ``tbf`` with a flood for queueing delay.
Used by tests/test_paths_netns.py and bench/paths/run.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WEFT = [sys.executable, "-m", "weftnet.cli.main"]
TOOL = [sys.executable, str(HERE / "paths_tool.py")]

LINKS = {  # name -> (A's address, B's address)
    "l1": ("10.21.0.1", "10.21.0.2"),
    "l2": ("10.22.0.1", "10.22.0.2"),
}
A_C, C_A, C_B, B_C = "10.30.0.1", "10.30.0.3", "10.31.0.3", "10.31.0.2"
PORT = 4500


def sh(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode:
        raise AssertionError(f"{' '.join(args)} failed: {p.stderr.strip()}")
    return p


def wait_for(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def site_config(site: str, classes: str = "", paths: str = "") -> str:
    """The config of site A or B: l1 is the main socket, l2 and c are extra links."""
    i = 0 if site == "A" else 1
    main = LINKS["l1"][i]
    c_addr = A_C if site == "A" else B_C
    text = f"""
[node]
listen = "{main}"
port = {PORT}

[paths]
{paths}

[[link]]
name = "l1"
bind = "{main}:{PORT}"
cost = 1

[[link]]
name = "l2"
bind = "{LINKS['l2'][i]}:{PORT}"
cost = 10

[[link]]
name = "c"
bind = "{c_addr}:{PORT}"
cost = 50
"""
    return text + classes


class SdwanLab:
    def __init__(self, tmp: Path, classes: str = "", paths: str = ""):
        self.tmp = tmp
        self.tag = f"wp{os.getpid() % 100000}{random.randrange(100):02d}"
        self.ns: list[str] = []
        self.procs: dict[str, subprocess.Popen] = {}
        self.helpers: list[subprocess.Popen] = []
        self.state: dict[str, Path] = {}
        self.ids: dict[str, str] = {}
        self.addr: dict[str, str] = {}
        self.classes = classes
        self.paths_cfg = paths

    def name(self, host: str) -> str:
        return f"{self.tag}{host}"

    def _ns(self, host: str) -> str:
        ns = self.name(host)
        sh("ip", "netns", "add", ns)
        self.ns.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def _veth(self, a: str, a_if: str, a_ip: str, b: str, b_if: str, b_ip: str) -> None:
        tmp_a, tmp_b = f"{self.tag}{a_if}x", f"{self.tag}{b_if}y"
        sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        for tmp, host, ifname, ip in ((tmp_a, a, a_if, a_ip), (tmp_b, b, b_if, b_ip)):
            sh("ip", "link", "set", tmp, "netns", self.name(host))
            sh("ip", "-n", self.name(host), "link", "set", tmp, "name", ifname)
            sh("ip", "-n", self.name(host), "addr", "add", f"{ip}/24", "dev", ifname)
            sh("ip", "-n", self.name(host), "link", "set", ifname, "up")

    def build(self) -> None:
        for host in "ABC":
            self._ns(host)
        for link, (a_ip, b_ip) in LINKS.items():
            self._veth("A", link, a_ip, "B", link, b_ip)
        self._veth("A", "cx", A_C, "C", "ax", C_A)
        self._veth("C", "bx", C_B, "B", "cx", B_C)
        for host in "ABC":
            st = self.state[host] = self.tmp / host
            self.weft(host, "init")
            info = json.loads(self.weft(host, "id", "--json"))
            self.ids[host], self.addr[host] = info["node_id"], info["address"]
            cfg = st / "config.toml"
            if host in "AB":
                cfg.write_text(site_config(host, self.classes, self.paths_cfg))
            else:
                cfg.write_text(f'[node]\nlisten = "0.0.0.0"\nport = {PORT}\n\n[paths]\ntransit = true\n')
        for port in ("tcp 5201", "udp 5004", "udp 5060", "udp 6000", "udp 6001", "udp 7000"):
            self.weft("B", "allow", *port.split())

    def weft(self, host: str, *args: str, check: bool = True) -> str:
        p = subprocess.run([*WEFT, "--state-dir", str(self.state[host]), *args], capture_output=True, text=True,
                           timeout=60)
        if check and p.returncode:
            raise AssertionError(f"weft {' '.join(args)} on {host} failed: {p.stdout}{p.stderr}")
        return p.stdout

    def up(self, host: str, *peers: str) -> None:
        args = ["ip", "netns", "exec", self.name(host), *WEFT, "--state-dir", str(self.state[host]), "up",
                "--log-format", "json"]
        for p in peers:
            args += ["--peer", p]
        log = open(self.tmp / f"{host}.log", "w")
        self.procs[host] = subprocess.Popen(args, stdout=log, stderr=log)
        wait_for(lambda: (self.state[host] / "control.sock").exists(), 20, f"{host}'s control socket")

    def start(self) -> None:
        self.up("A")
        self.up("B", f"{LINKS['l1'][0]}:{PORT}")
        self.up("C", f"{A_C}:{PORT}", f"{B_C}:{PORT}")
        for x, y in (("A", "B"), ("A", "C"), ("B", "C")):
            wait_for(lambda: self.has_session(x, y), 30, f"a session between {x} and {y}")

    def status(self, host: str) -> dict:
        return json.loads(self.weft(host, "status", "--json"))

    def paths(self, host: str) -> dict:
        return json.loads(self.weft(host, "paths", "--json"))

    def has_session(self, x: str, y: str) -> bool:
        return any(s["node_id"] == self.ids[y] for s in self.status(x)["sessions"])

    def path_to(self, x: str, y: str) -> str | None:
        for p in self.paths(x)["peers"]:
            if p["node_id"] == self.ids[y]:
                return p["path"]
        return None

    def in_ns(self, host: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name(host), *args], capture_output=True, text=True,
                              timeout=timeout)

    def popen(self, host: str, *args: str) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", self.name(host), *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        self.helpers.append(p)
        return p

    def overlay_ready(self, x: str, y: str) -> None:
        """Wait until x reaches y's overlay address (the first packet may go while x looks it up)."""
        wait_for(lambda: self.in_ns(x, "ping", "-6", "-c", "1", "-W", "1", self.addr[y]).returncode == 0, 30,
                 f"{x} to reach {y}'s overlay address")

    # -- impairments ---------------------------------------------------------------------
    def nft(self, host: str, text: str) -> None:
        p = subprocess.run(["ip", "netns", "exec", self.name(host), "nft", "-f", "-"], input=text, text=True,
                           capture_output=True, timeout=30)
        if p.returncode:
            raise AssertionError(f"nft in {host} failed: {p.stderr}")

    def drop(self, host: str, dev: str, table: str, rule: str = "drop") -> None:
        """An nftables netdev ingress chain on ``dev`` in ``host`` (remove it with ``undrop``)."""
        self.nft(host, f"table netdev {table} {{\n  chain ingress {{ type filter hook ingress device \"{dev}\" "
                       f"priority 0; {rule}; }}\n}}\n")

    def undrop(self, host: str, table: str) -> None:
        self.in_ns(host, "nft", "delete", "table", "netdev", table)

    def link(self, host: str, dev: str, up: bool) -> None:
        sh("ip", "-n", self.name(host), "link", "set", dev, "up" if up else "down")

    def close(self) -> None:
        procs = list(self.procs.values()) + self.helpers
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for ns in reversed(self.ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
