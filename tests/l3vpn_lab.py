"""A provider network in namespaces, for the L3VPN tests and bench (docs/l3vpn.md).

    core:  bridge br0, 10.251.0.0/24 — pe1 .1, pe2 .2 (weftnet PEs), rr .3 (FRR: route reflector and a
           control-plane-only PE), gobgp .4 (GoBGP, an iBGP peer of pe1)
    per PE, per customer (red, blue): a VRF namespace (the PE puts its TUN there) linked to a CE
           namespace running FRR (eBGP, AS 651xx), linked to a host namespace:

      h1red 10.0.0.10 — ce1red — [vrf red @pe1] ~~ weftnet ~~ [vrf red @pe2] — ce2red — h2red 10.0.0.200
      h1blue 10.0.0.10 — ce1blue — [vrf blue @pe1] ~~ weftnet ~~ [vrf blue @pe2] — ce2blue — h2blue 10.0.0.130

    Both customers live in 10.0.0.0/24: site 1 is 10.0.0.0/25 for both; site 2 is 10.0.0.192/26 (red)
    or 10.0.0.128/26 (blue). Every PE-CE link is 192.168.1.0/30 (PE .1, CE .2): overlapping too.

Every namespace is named with a per-run tag, and :meth:`Lab.close` stops every process and deletes
every namespace it made, whatever happened.
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

HERE = Path(__file__).resolve().parent
WEFT = [sys.executable, "-m", "weftnet.cli.main"]
TOOL = [sys.executable, str(HERE / "netns_tool.py")]
FRR = Path("/usr/lib/frr")

SITES = {  # (customer, site) -> (LAN prefix, CE LAN address, host address, CE AS)
    ("red", 1): ("10.0.0.0/25", "10.0.0.1", "10.0.0.10", 65101),
    ("red", 2): ("10.0.0.192/26", "10.0.0.193", "10.0.0.200", 65102),
    ("blue", 1): ("10.0.0.0/25", "10.0.0.1", "10.0.0.10", 65201),
    ("blue", 2): ("10.0.0.128/26", "10.0.0.129", "10.0.0.130", 65202),
}
RTS = {"red": "65000:100", "blue": "65000:200"}


def have_tools() -> str | None:
    """None if everything the lab needs is here, else what is missing."""
    if os.geteuid() != 0:
        return "needs root (the lab makes namespaces)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    for tool in ("ip", "vtysh", "gobgpd", "gobgp"):
        if not shutil.which(tool):
            return f"needs {tool} (apt-get install iproute2 frr gobgpd)"
    if not (FRR / "bgpd").exists() or not (FRR / "zebra").exists():
        return "needs FRR's zebra and bgpd (apt-get install frr)"
    return None


def sh(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode:
        raise AssertionError(f"{' '.join(args)} failed: {p.stderr.strip()}")
    return p


def wait_for(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)


class Lab:
    def __init__(self, tmp: Path, tag: str | None = None):
        self.tmp = tmp
        self.tag = tag or f"l3{os.getpid() % 100000}"
        self.ns: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.pidfiles: list[Path] = []
        self.state: dict[str, Path] = {}
        self.frr: list[str] = []

    # -- plumbing ----------------------------------------------------------------------------
    def n(self, name: str) -> str:
        return f"{self.tag}{name}"

    def add_ns(self, name: str) -> str:
        ns = self.n(name)
        sh("ip", "netns", "add", ns)
        self.ns.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def link(self, a: str, a_if: str, a_addr: str, b: str, b_if: str, b_addr: str) -> None:
        """A veth pair between namespaces a and b (addresses "x/len" or "")."""
        tmp_a, tmp_b = f"{self.tag}x{len(self.ns)}a{id(a_if) % 1000}", f"{self.tag}x{len(self.ns)}b{id(b_if) % 1000}"
        tmp_a, tmp_b = tmp_a[:15], tmp_b[:15]
        sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        sh("ip", "link", "set", tmp_a, "netns", a, "name", a_if)
        sh("ip", "link", "set", tmp_b, "netns", b, "name", b_if)
        for ns, ifc, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
            if addr:
                sh("ip", "-n", ns, "addr", "add", addr, "dev", ifc)
            sh("ip", "-n", ns, "link", "set", ifc, "up")

    def in_ns(self, ns: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True, timeout=timeout)

    def ping(self, ns: str, dst: str, count: int = 1) -> bool:
        return self.in_ns(ns, *TOOL, "ping", dst, str(count)).returncode == 0

    def weft(self, pe: str, *args: str, check: bool = True) -> str:
        p = subprocess.run([*WEFT, "--state-dir", str(self.state[pe]), *args], capture_output=True, text=True,
                           timeout=60)
        if check and p.returncode:
            raise AssertionError(f"weft {' '.join(args)} on {pe} failed: {p.stdout}{p.stderr}")
        return p.stdout if check else p.stdout + p.stderr

    def weft_json(self, pe: str, *args: str):
        return json.loads(self.weft(pe, *args, "--json"))

    # -- FRR and GoBGP ----------------------------------------------------------------------
    def _frr_dir(self, ns: str) -> Path:
        # FRR drops to the frr user: its files live where that user can reach (not in pytest's 0700 tree)
        if not hasattr(self, "_frr_root"):
            import tempfile

            self._frr_root = Path(tempfile.mkdtemp(prefix=f"weft-{self.tag}-"))
            self._frr_root.chmod(0o755)
        return self._frr_root / ns

    def start_frr(self, ns: str, conf: str) -> None:
        d = self._frr_dir(ns)
        d.mkdir(exist_ok=True)
        (d / "bgpd.conf").write_text(conf)
        shutil.chown(d, "frr", "frr")
        shutil.chown(d / "bgpd.conf", "frr", "frr")
        for daemon, cfgfile in (("zebra", "/dev/null"), ("bgpd", str(d / "bgpd.conf"))):
            pid = d / f"{daemon}.pid"
            sh("ip", "netns", "exec", ns, str(FRR / daemon), "-d", "-N", ns, "-f", cfgfile, "-i", str(pid))
            self.pidfiles.append(pid)
        self.frr.append(ns)

    def vtysh(self, ns: str, *cmds: str) -> str:
        args = ["vtysh", "-N", ns]
        for c in cmds:
            args += ["-c", c]
        return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout

    def vtysh_json(self, ns: str, cmd: str):
        out = self.vtysh(ns, cmd)
        return json.loads(out) if out.strip() else {}

    def stop_frr(self, ns: str, daemon: str = "bgpd") -> None:
        pid = self._frr_dir(ns) / f"{daemon}.pid"
        try:
            os.kill(int(pid.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass

    def start_gobgp(self, ns: str, conf: str, api_port: int) -> None:
        path = self.tmp / f"gobgp-{ns}.toml"
        path.write_text(conf)
        log = open(self.tmp / f"gobgp-{ns}.log", "w")
        self.procs.append(subprocess.Popen(["ip", "netns", "exec", ns, "gobgpd", "-f", str(path),
                                            "--api-hosts", f"127.0.0.1:{api_port}"], stdout=log, stderr=log))
        self.gobgp_port = api_port
        wait_for(lambda: self.in_ns(ns, "gobgp", "-p", str(api_port), "global").returncode == 0, 20, "gobgpd's API")

    def gobgp(self, ns: str, *args: str) -> str:
        return sh("ip", "netns", "exec", ns, "gobgp", "-p", str(self.gobgp_port), *args).stdout

    # -- weftnet --------------------------------------------------------------------------------
    def init_pe(self, pe: str) -> str:
        st = self.state[pe] = self.tmp / pe
        sh(*WEFT, "--state-dir", str(st), "init")
        return json.loads(self.weft(pe, "id", "--json"))["node_id"]

    def start_pe(self, pe: str, ns: str, listen: str, config: str, peer: str | None = None) -> None:
        with open(self.state[pe] / "config.toml", "a") as f:
            f.write(config)
        args = ["ip", "netns", "exec", ns, *WEFT, "--state-dir", str(self.state[pe]), "up", "--listen", listen,
                "--port", "4500", "--log-format", "json", *(["--log-level", os.environ["WEFT_LAB_LOG"]] if os.environ.get("WEFT_LAB_LOG") else [])]
        if peer:
            args += ["--peer", peer]
        log = open(self.tmp / f"{pe}.log", "w")
        self.procs.append(subprocess.Popen(args, stdout=log, stderr=log))
        wait_for(lambda: (self.state[pe] / "control.sock").exists() or self.procs[-1].poll() is not None, 30,
                 f"{pe}'s control socket")
        if self.procs[-1].poll() is not None:
            raise AssertionError(f"{pe} exited: {(self.tmp / f'{pe}.log').read_text()[-3000:]}")

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for pid in self.pidfiles:
            try:
                os.kill(int(pid.read_text()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        time.sleep(0.3)
        for pid in self.pidfiles:
            try:
                os.kill(int(pid.read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        for ns in reversed(self.ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for ns in self.frr:
            shutil.rmtree(f"/var/run/frr/{ns}", ignore_errors=True)
        if hasattr(self, "_frr_root"):
            shutil.rmtree(self._frr_root, ignore_errors=True)


def ce_config(name: str, asn: int, lan: str, hold: int = 9) -> str:
    return f"""frr defaults datacenter
hostname {name}
router bgp {asn}
 bgp router-id 192.168.1.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 192.168.1.1 remote-as 65000
 neighbor 192.168.1.1 timers 3 {hold}
 neighbor 192.168.1.1 timers connect 1
 address-family ipv4 unicast
  network {lan}
 exit-address-family
!
"""


def pe_vrf_config(lab: Lab, pe: int, customers=("red", "blue")) -> str:
    out = ""
    for i, c in enumerate(customers):
        out += f"""
[vrf.{c}]
rd = "65000:{pe * 10 + i + 1}"
route_targets = ["{RTS[c]}"]
netns = "{lab.n(f'p{pe}{c}')}"
ce = [{{ address = "192.168.1.2", remote_as = {SITES[(c, pe)][3]}, hold_time = 9 }}]
"""
    return out


def build_customers(lab: Lab, pe: int, customers=("red", "blue")) -> None:
    """For PE ``pe``: each customer's VRF namespace, CE (FRR) and host."""
    for c in customers:
        lan, ce_lan, host, asn = SITES[(c, pe)]
        vrf, ce, h = lab.add_ns(f"p{pe}{c}"), lab.add_ns(f"c{pe}{c}"), lab.add_ns(f"h{pe}{c}")
        plen = lan.split("/")[1]
        lab.link(vrf, "ce0", "192.168.1.1/30", ce, "pe0", "192.168.1.2/30")
        lab.link(ce, "lan0", f"{ce_lan}/{plen}", h, "eth0", f"{host}/{plen}")
        sh("ip", "-n", h, "route", "add", "default", "via", ce_lan)
        lab.in_ns(ce, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        lab.start_frr(ce, ce_config(f"ce{pe}{c}", asn, lan))
