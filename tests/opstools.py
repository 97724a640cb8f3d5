"""Helpers shared by the operations tests: real `weft up` processes on loopback, HTTP, the metrics doc."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

WEFT = [sys.executable, "-m", "weftnet.cli.main"]
ROOT = Path(__file__).resolve().parent.parent


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def weft(state: Path, *args: str, check: bool = True, timeout: float = 60, prefix: list[str] = ()) -> subprocess.CompletedProcess:
    p = subprocess.run([*prefix, *WEFT, "--state-dir", str(state), *args], capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"weft {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def wait_for(pred, timeout: float = 20.0, what: str = "condition", every: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def http_get(url: str, timeout: float = 10.0, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def http_post(url: str, body: dict, headers: dict | None = None, timeout: float = 30.0) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def documented_metrics(section: str | None = None) -> dict[str, str]:
    """Metric names in docs/metrics.md's tables -> their type column; with ``section``, only the
    tables under the heading (## or ###) that starts with it."""
    out = {}
    heading = ""
    for line in (ROOT / "docs" / "metrics.md").read_text().splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
            continue
        m = re.match(r"^\|\s*`([a-z0-9_:]+)`\s*\|\s*(counter|gauge|histogram|info)\s*\|", line)
        if m and (section is None or heading.startswith(section)):
            out[m.group(1)] = m.group(2)
    return out


def scrape(url: str) -> dict:
    """Parse an exposition: family name -> (type, [samples])."""
    from prometheus_client.parser import text_string_to_metric_families

    status, _h, body = http_get(url)
    assert status == 200, body
    return {f.name: (f.type, f.samples) for f in text_string_to_metric_families(body.decode())}


class Daemons:
    """`weft up` processes on 127.0.0.1 with their own state directories; killed at the end."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen] = {}
        self.state: dict[str, Path] = {}
        self.port: dict[str, int] = {}
        self.addr: dict[str, str] = {}

    def init(self, name: str, config: str = "") -> Path:
        st = self.state[name] = self.tmp / name
        weft(st, "init")
        if config:
            with open(st / "config.toml", "a") as f:
                f.write(config)
        return st

    def up(self, name: str, peer: str | None = None, prefix: list[str] = (), listen: str = "127.0.0.1") -> None:
        if name not in self.state:
            self.init(name)
        self.port[name] = port = self.port.get(name) or free_port()
        self.addr[name] = listen
        args = [*prefix, *WEFT, "--state-dir", str(self.state[name]), "up", "--listen", listen, "--port", str(port),
                "--log-format", "json"]
        if peer:  # another daemon's name, or HOST:PORT
            args += ["--peer", f"{self.addr[peer]}:{self.port[peer]}" if peer in self.port else peer]
        log = open(self.tmp / f"{name}.log", "a")
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=log)
        wait_for(lambda: (self.state[name] / "control.sock").exists() or self.procs[name].poll() is not None,
                 30, f"{name}'s control socket")
        if self.procs[name].poll() is not None:
            raise AssertionError(f"{name} exited: {(self.tmp / f'{name}.log').read_text()}")

    def status(self, name: str) -> dict:
        return json.loads(weft(self.state[name], "status", "--json").stdout)

    def log(self, name: str) -> list[dict]:
        out = []
        for line in (self.tmp / f"{name}.log").read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def get_in_netns(ns: str, url: str) -> str:
    """GET ``url`` from inside network namespace ``ns`` (where the daemon's 127.0.0.1 listener is)."""
    code = ("import sys, urllib.request; "
            f"sys.stdout.write(urllib.request.urlopen({url!r}, timeout=10).read().decode())")
    p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def scrape_families(url: str) -> dict:
    """A scrape: family name -> prometheus_client Metric (for :func:`sample`)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, _h, body = http_get(url)
    assert status == 200, body
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def scrape_netns(ns: str, port: int = 9477) -> dict:
    """A scrape of the daemon in ``ns``: family name -> prometheus_client Metric."""
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(get_in_netns(ns, f"http://127.0.0.1:{port}/metrics"))}


def sample(fams: dict, name: str, **labels) -> float:
    """The value of the one sample of family ``name`` (without _total) with ``labels``."""
    fam = fams[name]
    for s in fam.samples:
        if s.name in (name, name + "_total") and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample of {name} with {labels}: {fam.samples[:20]}")


def check_documented(fams: dict, section: str) -> None:
    """Every metric of docs/metrics.md's ``section`` is in the scrape, with its documented type."""
    documented = documented_metrics(section)
    assert documented, section
    for name, typ in documented.items():
        fam = fams.get(name[:-len("_total")] if typ == "counter" else name)
        assert fam is not None, f"{name} (docs/metrics.md, {section}) is not in the scrape"
        assert fam.type == typ, f"{name}: {fam.type}, documented as {typ}"
