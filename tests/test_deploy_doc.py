"""docs/deploy.md, followed word by word: its shell blocks run in order, each on its site.

Every fenced block tagged ```` ```sh site=NAME ```` runs as one bash script on that site:
a network namespace with the page's public address (203.0.113.x on a bridge the test makes),
and a private mount namespace in which /var/lib/weftnet and /etc/systemd/system are that
site's own directories. A site's shell session carries over between its blocks (exports,
working directory = the site's home). Blocks without a site (installation) are not run:
the test uses the tree it tests.

Two stand-ins, because namespaces have neither SSH nor systemd:

* ``scp FILE site-x:`` copies FILE into site-x's home directory;
* ``systemctl daemon-reload | enable --now NAME | reload NAME`` reads the unit that
  ``weft install-service`` wrote and does what systemd would with it: ExecStart as an
  unprivileged user (DynamicUser) holding only the ambient CAP_NET_ADMIN of
  AmbientCapabilities, the StateDirectory handed to that user, ExecReload's SIGHUP.

Needs root, /dev/net/tun, ip, setpriv, unshare, ping and curl; skipped otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from opstools import ROOT

SITES = {"site-a": "203.0.113.1", "site-b": "203.0.113.2", "site-c": "203.0.113.3", "site-r": "203.0.113.4",
         "site-d": "192.168.50.2"}
#: Sites behind a router namespace: (the router's LAN address, its public address). Its nftables
#: masquerade and drop every forwarded UDP packet (docs/deploy.md, step 10).
ROUTED = {"site-d": ("192.168.50.1", "203.0.113.5")}
ROUTER_NFT = """table ip nat {
  chain post { type nat hook postrouting priority srcnat; policy accept; oifname "wan" masquerade; }
}
table inet filter {
  chain forwarding { type filter hook forward priority 0; policy accept; meta l4proto udp drop; }
  chain inbound { type filter hook input priority 0; policy accept; iifname "wan" ct state new drop; }
}
"""
TOOLS = ("ip", "setpriv", "unshare", "ping", "curl", "mknod", "nft")

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun")
                       or not all(shutil.which(t) for t in TOOLS),
                       reason=f"needs root, /dev/net/tun and {', '.join(TOOLS)}"),
]

SCP = r"""#!/bin/sh
# scp FILE site-x:[DIR] -> site-x's home directory (the test's stand-in for SSH)
set -e
src=$1; dst=$2
host=${dst%%:*}; path=${dst#*:}
mkdir -p "$DEPLOY_SITES/$host/home/$path"
cp "$src" "$DEPLOY_SITES/$host/home/$path"
"""

SYSTEMCTL = r'''#!PYTHON
"""systemctl, as far as docs/deploy.md uses it, for one site of the test (no systemd in a namespace)."""
import os, shlex, signal, subprocess, sys
from pathlib import Path

site = Path(os.environ["DEPLOY_SITE_DIR"])
args = [a for a in sys.argv[1:] if a != "--now"]
if args[:1] == ["daemon-reload"]:
    sys.exit(0)
verb, name = args[0], args[-1]
unit = {}
for line in Path(f"/etc/systemd/system/{name}.service").read_text().splitlines():
    if "=" in line and not line.startswith("#"):
        k, v = line.split("=", 1)
        unit[k.strip()] = v.strip()
pidfile = site / f"{name}.pid"
if verb == "enable":
    assert unit["AmbientCapabilities"] == "CAP_NET_ADMIN" and unit["DynamicUser"] == "yes", unit
    state = Path("/var/lib") / unit["StateDirectory"]
    subprocess.run(["chown", "-R", "65534:65534", str(state)], check=True)  # what StateDirectory= does
    os.chmod(state, 0o700)
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all,+net_admin",
           "--ambient-caps=-all,+net_admin", "--bounding-set=-all,+net_admin", *shlex.split(unit["ExecStart"])]
    log = open(site / "journal.log", "a")
    p = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                         env={"PATH": os.environ["PATH"], "HOME": "/"})
    pidfile.write_text(str(p.pid))
elif verb == "reload":
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    os.kill(int(pidfile.read_text()), signal.SIGHUP)
else:
    sys.exit(f"systemctl stand-in: {verb} is not implemented")
'''


def blocks(markdown: str) -> list[tuple[str | None, str]]:
    """(site or None, script) for every ```sh block, in page order."""
    out = []
    for m in re.finditer(r"^```sh(?: site=(\S+))?\n(.*?)^```", markdown, re.S | re.M):
        out.append((m.group(1), m.group(2)))
    return out


def test_blocks_are_found():
    bl = blocks((ROOT / "docs" / "deploy.md").read_text())
    sites = [s for s, _ in bl if s]
    assert set(sites) == set(SITES) and len(sites) >= 9
    assert all(s in SITES for s in sites)


def sh(*args: str) -> None:
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if p.returncode:
        raise AssertionError(f"{' '.join(args)}: {p.stderr.strip()}")


def test_deploy_page_word_by_word(tmp_path):
    tag = f"wd{os.getpid() % 100000}"
    hub = f"{tag}hub"
    made_ns: list[str] = []
    made_lib = not os.path.exists("/var/lib/weftnet")
    os.chmod(tmp_path, 0o755)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "scp").write_text(SCP)
    (bindir / "systemctl").write_text(SYSTEMCTL.replace("PYTHON", sys.executable))
    for f in ("scp", "systemctl"):
        os.chmod(bindir / f, 0o755)
    venv_bin = Path(sys.executable).parent
    path = f"{bindir}:{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    try:
        os.makedirs("/var/lib/weftnet", exist_ok=True)  # a mount point; each site binds its own over it
        sh("ip", "netns", "add", hub)
        made_ns.append(hub)
        sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", hub, "link", "set", "br0", "up")
        for i, (site, addr) in enumerate(SITES.items()):
            ns = f"{tag}{i}"
            sh("ip", "netns", "add", ns)
            made_ns.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            if site in ROUTED:  # the site's LAN -> its router -> the public bridge
                lan, wan = ROUTED[site]
                rt = f"{tag}r{i}"
                sh("ip", "netns", "add", rt)
                made_ns.append(rt)
                sh("ip", "link", "add", f"{tag}v{i}", "netns", hub, "type", "veth", "peer", "name", "wan", "netns", rt)
                sh("ip", "-n", hub, "link", "set", f"{tag}v{i}", "master", "br0", "up")
                sh("ip", "-n", rt, "addr", "add", f"{wan}/24", "dev", "wan")
                sh("ip", "link", "add", "lan0", "netns", rt, "type", "veth", "peer", "name", "eth0", "netns", ns)
                sh("ip", "-n", rt, "addr", "add", f"{lan}/24", "dev", "lan0")
                for dev in ("lo", "wan", "lan0"):
                    sh("ip", "-n", rt, "link", "set", dev, "up")
                sh("ip", "netns", "exec", rt, "sysctl", "-qw", "net.ipv4.ip_forward=1")
                p = subprocess.run(["ip", "netns", "exec", rt, "nft", "-f", "-"], input=ROUTER_NFT, text=True,
                                   capture_output=True)
                assert p.returncode == 0, p.stderr
                sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
                sh("ip", "-n", ns, "route", "add", "default", "via", lan)
            else:
                sh("ip", "link", "add", f"{tag}v{i}", "netns", hub, "type", "veth", "peer", "name", "eth0", "netns", ns)
                sh("ip", "-n", hub, "link", "set", f"{tag}v{i}", "master", "br0", "up")
                sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
            d = tmp_path / site
            for sub in ("home", "lib", "units"):
                (d / sub).mkdir(parents=True)
            os.chmod(d / "lib", 0o700)
            (d / "session.env").write_text("")
        # /dev/net/tun is 0600 on this machine; distributions make it 0666 (docs/deploy.md, notes).
        tun = tmp_path / "tun"
        sh("mknod", "-m", "0666", str(tun), "c", "10", "200")

        transcript = []
        for site, script in blocks((ROOT / "docs" / "deploy.md").read_text()):
            if site is None:
                continue
            d = tmp_path / site
            ns = f"{tag}{list(SITES).index(site)}"
            setup = (f"mount --bind {d / 'lib'} /var/lib/weftnet && mount --bind {d / 'units'} /etc/systemd/system "
                     f"&& mount --bind {tun} /dev/net/tun && cd {d / 'home'} && exec bash -e {d / 'block.sh'}")
            (d / "block.sh").write_text(f"source {d / 'session.env'}\n{script}\nexport -p > {d / 'session.env'}\n")
            env = {"PATH": path, "HOME": str(d / "home"), "DEPLOY_SITES": str(tmp_path),
                   "DEPLOY_SITE_DIR": str(d), "LANG": "C.UTF-8"}
            p = subprocess.run(["ip", "netns", "exec", ns, "unshare", "-m", "--propagation", "private",
                                "sh", "-c", setup], capture_output=True, text=True, timeout=120, env=env)
            transcript.append(f"--- {site}\n{script}--> {p.returncode}\n{p.stdout}{p.stderr}")
            journal = "".join((tmp_path / s / "journal.log").read_text() for s in SITES
                              if (tmp_path / s / "journal.log").exists())
            assert p.returncode == 0, "\n".join(transcript) + "\n--- daemon logs\n" + journal[-6000:]
        out = "\n".join(transcript)
        # What the page promises, seen in what its commands printed:
        assert "3 packets transmitted" in out and " 0 received" not in out  # site-c pinged B and A
        assert re.search(r"^weftnet_sessions [1-9]", out, re.M)  # metrics after a reload
        assert "network corp: new firewall rules (3 inbound, 1 outbound), same TUN" in out
        # step 10: site D, with no UDP out, pinged site B through the relay over TCP
        d_out = "".join(t for t in transcript if t.startswith("--- site-d\n") and "ping -c 20" in t)
        got = re.search(r"20 packets transmitted, (\d+) received", d_out)
        # All but the first: site D drops the packet that finds no route while it looks site B's
        # address up (docs/deploy.md, step 10); its sessions are up from its relay registration on.
        assert got and int(got.group(1)) >= 19, d_out + journal[-6000:]
        assert "udp-blocked" in d_out and "relay via" in d_out and " tcp" in d_out, d_out
        for s in SITES:  # each node ran unprivileged and never lost a session
            log = (tmp_path / s / "journal.log").read_text()
            assert " node up " in log and " session down " not in log, log[-3000:]
    finally:
        for s in SITES:
            pid = tmp_path / s / "weftnet.pid"
            if pid.exists():
                try:
                    os.kill(int(pid.read_text()), signal.SIGTERM)
                except ProcessLookupError:
                    pass
        import time

        time.sleep(1)
        for ns in made_ns:
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if made_lib:
            try:
                os.rmdir("/var/lib/weftnet")
            except OSError:
                pass
