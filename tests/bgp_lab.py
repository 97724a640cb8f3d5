"""Namespaces, FRR and GoBGP instances and weft daemons for the BGP interop tests (all named per run, all removed).

FRR runs one zebra and one bgpd per namespace without systemd (../shared/LAB.md):
``ip netns exec NS /usr/lib/frr/zebra -d -N NAME ...``; vtysh reaches it with ``-N NAME``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

WEFT = [sys.executable, "-m", "weftnet.cli.main"]
FRR = Path("/usr/lib/frr")


def sh(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode:
        raise AssertionError(f"{' '.join(args)} failed: {p.stderr.strip() or p.stdout.strip()}")
    return p


def wait_for(pred, timeout: float, what: str, interval: float = 0.3):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            v = pred()
        except (AssertionError, json.JSONDecodeError, KeyError, subprocess.TimeoutExpired) as exc:
            v, last = None, exc
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last: {last})" if last else ""))


def have_frr() -> bool:
    return (FRR / "bgpd").exists() and (FRR / "zebra").exists() and shutil.which("vtysh") is not None


def have_gobgp() -> bool:
    return shutil.which("gobgpd") is not None and shutil.which("gobgp") is not None


def can_netns() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("bridge") is not None


class Lab:
    def __init__(self, tmp: Path, tag: str):
        self.tmp = tmp
        self.tag = f"{tag}{os.getpid() % 100000}"
        self.ns: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.frr: list[tuple[str, Path]] = []
        self.logs: list[Path] = []
        self.traces: list[Path] = []

    def name(self, short: str) -> str:
        return f"{self.tag}{short}"

    def add_ns(self, short: str) -> str:
        ns = self.name(short)
        sh("ip", "netns", "add", ns)
        self.ns.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def link(self, a: str, a_if: str, b: str, b_if: str) -> None:
        tmp_a, tmp_b = f"{self.tag}x{len(self.ns)}a{a_if}"[:15], f"{self.tag}x{len(self.ns)}b{b_if}"[:15]
        sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        sh("ip", "link", "set", tmp_a, "netns", a)
        sh("ip", "link", "set", tmp_b, "netns", b)
        sh("ip", "-n", a, "link", "set", tmp_a, "name", a_if)
        sh("ip", "-n", b, "link", "set", tmp_b, "name", b_if)
        sh("ip", "-n", a, "link", "set", a_if, "up")
        sh("ip", "-n", b, "link", "set", b_if, "up")

    def container(self, short: str, host_ns: str, bridge: str, ip: str, mac: str) -> str:
        """A namespace with eth0 (given MAC and IP) plugged into ``bridge`` in ``host_ns`` as port ``p-short``."""
        ns = self.add_ns(short)
        # no IPv6: router solicitations and MLD reports would make a "silent" old copy of a moved container talk
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
           "net.ipv6.conf.default.disable_ipv6=1")
        port = f"p{short}"[:15]
        self.link(ns, "eth0", host_ns, port)
        sh("ip", "-n", ns, "link", "set", "eth0", "address", mac)
        sh("ip", "-n", ns, "addr", "add", ip, "dev", "eth0")
        sh("ip", "-n", host_ns, "link", "set", port, "master", bridge)
        return ns

    def in_ns(self, ns: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True, timeout=timeout)

    def ping(self, ns: str, dst: str, count: int = 1, wait: int = 1) -> bool:
        return self.in_ns(ns, "ping", "-c", str(count), "-W", str(wait), dst).returncode == 0

    # -- FRR --------------------------------------------------------------------------------
    def start_frr(self, ns: str, conf: str) -> str:
        name = f"{ns}"
        # FRR drops to the frr user: its pid files, logs and vty sockets live in /var/run/frr/NAME (frr-owned);
        # pytest's tmp directories are private to root.
        run = vty = Path("/var/run/frr") / name
        vty.mkdir(parents=True, exist_ok=True)
        shutil.chown(vty, "frr", "frr")
        conf_path = run / "bgpd.conf"
        conf_path.write_text(conf)
        os.chmod(conf_path, 0o644)
        self.frr.append((ns, run))
        sh("ip", "netns", "exec", ns, str(FRR / "zebra"), "-d", "-N", name, "-f", "/dev/null",
           "-i", str(run / "zebra.pid"), "--log", f"file:{run}/zebra.log")
        wait_for(lambda: (vty / "zserv.api").exists() or (vty / "zebra.vty").exists(), 15, "zebra to start")
        sh("ip", "netns", "exec", ns, str(FRR / "bgpd"), "-d", "-N", name, "-f", str(conf_path),
           "-i", str(run / "bgpd.pid"), "--log", f"file:{run}/bgpd.log")
        wait_for(lambda: (vty / "bgpd.vty").exists(), 15, "bgpd to start")
        return name

    def vtysh(self, name: str, cmd: str):
        p = sh("vtysh", "-N", name, "-c", cmd, timeout=30)
        return json.loads(p.stdout) if cmd.rstrip().endswith("json") else p.stdout

    # -- GoBGP ---------------------------------------------------------------------------------
    def start_gobgp(self, ns: str, conf: str, api_port: int) -> None:
        path = self.tmp / f"gobgp-{ns}.toml"
        path.write_text(conf)
        log = open(self.tmp / f"gobgp-{ns}.log", "w")
        self.logs.append(self.tmp / f"gobgp-{ns}.log")
        self.procs.append(subprocess.Popen(["ip", "netns", "exec", ns, "gobgpd", "-f", str(path), "-t", "toml",
                                            "--api-hosts", f"127.0.0.1:{api_port}", "-p"],
                                           stdout=log, stderr=subprocess.STDOUT))

    def gobgp(self, ns: str, api_port: int, *args: str) -> str:
        return sh("ip", "netns", "exec", ns, "gobgp", "-u", "127.0.0.1", "-p", str(api_port), *args).stdout

    # -- weftnet --------------------------------------------------------------------------------
    def weft_init(self, short: str, config: str) -> Path:
        st = self.tmp / f"weft-{short}"
        p = subprocess.run([*WEFT, "--state-dir", str(st), "init"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        with open(st / "config.toml", "a") as f:
            f.write(config)
        return st

    def weft_up(self, ns: str, state: Path, args: tuple[str, ...] = ("--port", "0", "--listen", "127.0.0.1")
                ) -> subprocess.Popen:
        log = open(state / "daemon.log", "w")
        self.logs.append(state / "daemon.log")
        self.traces.append(state / "bgp-trace.txt")  # every message the speaker sends (tests/bgp_exabgp.py)
        env = {**os.environ, "WEFTNET_BGP_TRACE": str(state / "bgp-trace.txt")}
        p = subprocess.Popen(["ip", "netns", "exec", ns, *WEFT, "--state-dir", str(state), "up", *args],
                             stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs.append(p)
        wait_for(lambda: (state / "control.sock").exists() or p.poll() is not None, 30, "weft daemon to start")
        assert p.poll() is None, (state / "daemon.log").read_text()
        return p

    def weft(self, state: Path, *args: str) -> str:
        p = subprocess.run([*WEFT, "--state-dir", str(state), *args], capture_output=True, text=True, timeout=60)
        if p.returncode:
            raise AssertionError(f"weft {' '.join(args)} failed: {p.stdout}{p.stderr}")
        return p.stdout

    def weft_json(self, state: Path, *args: str):
        return json.loads(self.weft(state, *args, "--json"))

    def sent_updates(self) -> list[bytes]:
        """The bodies of every UPDATE the weft daemons of this lab sent (from their traces)."""
        out = []
        for path in self.traces:
            try:
                lines = path.read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                msg = bytes.fromhex(line.split()[2])
                if msg[18] == 2:
                    out.append(msg[19:])
        return out

    def dump_logs(self) -> str:
        out = []
        for path in self.logs + [run / f for _, run in self.frr for f in ("bgpd.log", "zebra.log")]:  # noqa: B007
            try:
                out.append(f"--- {path}\n{path.read_text()[-4000:]}")
            except OSError:
                pass
        return "\n".join(out)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for _ns, run in self.frr:
            for pidfile in ("bgpd.pid", "zebra.pid"):
                try:
                    pid = int((run / pidfile).read_text().strip())
                    os.kill(pid, signal.SIGTERM)
                except (OSError, ValueError):
                    pass
        time.sleep(0.3)
        for ns, run in self.frr:
            for pidfile in ("bgpd.pid", "zebra.pid"):
                try:
                    os.kill(int((run / pidfile).read_text().strip()), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
            shutil.rmtree(Path("/var/run/frr") / ns, ignore_errors=True)
        for ns in reversed(self.ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
