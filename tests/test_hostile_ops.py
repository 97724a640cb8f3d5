"""The operator's surfaces under hostile input (audit3, docs/security.md item 19).

Whoever can reach the metrics or dashboard port is a stranger; the config file, the CLI and the
state directory are the operator's, and a mistake there must cost one clear line and nothing that
runs. Each test is what an attacker or a user sees: HTTP bytes on a socket, a CLI's exit code and
stderr, what still answers afterwards. Real `weft up` processes on loopback (no root) unless the
test says otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opstools import WEFT, Daemons, free_port, http_get, wait_for, weft
from weftnet.runtime.control import call

ROOT = Path(__file__).resolve().parent.parent
#: Every daemon here runs without the overlay interface: weft0 is the host's, not a test's.
NO_OVERLAY = "[overlay]\nenable = false\n"


def _http_config(mport: int, dport: int) -> str:
    return f'{NO_OVERLAY}[metrics]\nlisten = "127.0.0.1:{mport}"\n[dashboard]\nlisten = "127.0.0.1:{dport}"\n'


def _open_slowly(port: int, n: int, source: str = "127.0.0.1") -> list[socket.socket]:
    """Slowloris: ``n`` connections from ``source``, each with half a request head, never finished."""
    out = []
    for _ in range(n):
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        except OSError:
            s.close()
            continue
        out.append(s)
    return out


def _still_open(socks: list[socket.socket]) -> int:
    """How many of ``socks`` the server has not closed (nothing to read yet: it is waiting for more)."""
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1, socket.MSG_PEEK):
                n += 1  # an answer on its way is an open connection too
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def _status(url: str) -> int | None:
    """The HTTP status of a GET, or None if nothing answers there."""
    try:
        return http_get(url, timeout=10)[0]
    except OSError:
        return None


@pytest.fixture
def daemons(tmp_path):
    d = Daemons(tmp_path)
    try:
        yield d
    finally:
        d.close()


# -- HTTP: the metrics and dashboard listeners ------------------------------------------------------


def test_one_host_with_slow_connections_cannot_take_the_daemons_file_descriptors(daemons):
    """Before: every connection to /metrics was kept (75 s each, renewed by reconnecting): one host
    with 300 half-sent requests used up a daemon's file descriptors, and then `weft status` got no
    answer from the control socket. After: 16 connections per source, the rest closed at once."""
    mport, dport = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    daemons.init("a", _http_config(mport, dport))
    daemons.up("a", prefix=["prlimit", "--nofile=160"])  # as a unit's LimitNOFILE would, only lower
    wait_for(lambda: _status(f"http://127.0.0.1:{mport}/metrics") == 200, 20, "the metrics endpoint")
    attacker = _open_slowly(mport, 300)
    try:
        time.sleep(1.0)  # the daemon has accepted (or refused) all of them by now
        # The operator's own tools still get in: the control socket and a scrape from elsewhere.
        st = call(daemons.state["a"] / "control.sock", "status", timeout=10)
        assert st["node_id"].startswith("wn1")
        s = socket.create_connection(("127.0.0.1", mport), timeout=10, source_address=("127.0.0.2", 0))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        s.close()
        assert got.startswith(b"HTTP/1.1 200") and b"weftnet_sessions" in got
        # Because the attacker holds no more than its quota.
        assert _still_open(attacker) <= 16
    finally:
        for s in attacker:
            s.close()
    assert any(e["event"] == "http connection refused" and e["source"] == "127.0.0.1" for e in daemons.log("a"))


def test_a_half_sent_request_is_closed_and_its_slot_comes_back(daemons):
    """A connection that never completes its request head is closed (IDLE_TIMEOUT, 15 s) instead of
    being held for aiohttp's 75 s: the quota a slow client uses is given back."""
    from weftnet.runtime.web.server import IDLE_TIMEOUT, MAX_PER_SOURCE

    mport, dport = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    daemons.init("a", _http_config(mport, dport))
    daemons.up("a")
    wait_for(lambda: _status(f"http://127.0.0.1:{dport}/api/snapshot") == 200, 20, "the dashboard")
    slow = _open_slowly(dport, MAX_PER_SOURCE)
    try:
        assert _still_open(slow) == MAX_PER_SOURCE
        extra = _open_slowly(dport, 1)
        wait_for(lambda: _still_open(extra) == 0, 10, "the 17th connection from this host to be closed")
        wait_for(lambda: _still_open(slow) == 0, IDLE_TIMEOUT + 30, "the half-sent requests to be closed")
        assert _status(f"http://127.0.0.1:{dport}/api/snapshot") == 200
    finally:
        for s in slow:
            s.close()


def test_a_reload_onto_a_busy_address_keeps_the_listeners_that_ran(daemons):
    """Before: moving the dashboard to an address someone else holds stopped the dashboard that
    ran, and nothing was put back ('failed: http: cannot listen', and no dashboard at all). After:
    the reload says it failed and that the listeners run as before; both still answer."""
    mport, dport = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    st = daemons.init("a", _http_config(mport, dport))
    daemons.up("a")
    wait_for(lambda: _status(f"http://127.0.0.1:{dport}/api/snapshot") == 200, 20, "the dashboard")
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    busy = squatter.getsockname()[1]
    try:
        conf = (st / "config.toml").read_text()
        (st / "config.toml").write_text(conf.replace(f"127.0.0.1:{dport}", f"127.0.0.1:{busy}")
                                        .replace(f"127.0.0.1:{mport}", f"127.0.0.1:{free_port(socket.SOCK_STREAM)}"))
        r = weft(st, "reload", check=False)
        assert r.returncode == 1
        assert _status(f"http://127.0.0.1:{dport}/api/snapshot") == 200, r.stderr
        assert _status(f"http://127.0.0.1:{mport}/metrics") == 200, r.stderr
        assert f"cannot listen on 127.0.0.1:{busy}" in r.stderr and "the listeners run as before" in r.stderr
        # The running config still names the addresses that run: the file as it was is no change.
        (st / "config.toml").write_text(conf)
        assert "no change" in weft(st, "reload").stdout
    finally:
        squatter.close()


def test_a_dns_rebinding_page_cannot_read_the_metrics_and_a_named_scraper_can(daemons):
    """Before: /metrics answered whatever name a request carried, so a web page the operator
    opened could point its own name at 127.0.0.1 and read the node's ID, its peers and their
    paths. After: /metrics answers to IP addresses, localhost and this host's name; a scraper that
    uses another name is refused with a line saying how to allow it, and a reload allows it."""
    mport, dport = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    st = daemons.init("a", _http_config(mport, dport))
    daemons.up("a")
    url = f"http://127.0.0.1:{mport}/metrics"
    wait_for(lambda: _status(url) == 200, 20, "the metrics endpoint")
    code, _h, body = http_get(url, headers={"Host": f"attacker.example:{mport}"})
    assert code == 403 and b"weftnet_info" not in body
    assert b"[metrics] hosts" in body and b"attacker.example" in body
    # The same refusal on the dashboard's listener, which serves /metrics too when asked.
    assert http_get(f"http://127.0.0.1:{dport}/api/snapshot", headers={"Host": "attacker.example"})[0] == 403
    for ok in ("localhost", f"localhost:{mport}", "[::1]", socket.gethostname()):
        code, _h, body = http_get(url, headers={"Host": ok})
        assert code == 200 and b"weftnet_info" in body, ok
    assert http_get(url, headers={"Host": "prom-target.example"})[0] == 403
    conf = (st / "config.toml").read_text()
    (st / "config.toml").write_text(conf.replace(f'listen = "127.0.0.1:{mport}"', f'listen = "127.0.0.1:{mport}"\nhosts = ["Prom-Target.example."]'))
    r = weft(st, "reload")
    assert "prom-target.example" in r.stdout
    code, _h, body = http_get(url, headers={"Host": f"prom-target.example:{mport}"})
    assert code == 200 and b"weftnet_info" in body
    assert http_get(url, headers={"Host": "attacker.example"})[0] == 403
    # A name that is not a DNS name is the config's error, in one line, and changes nothing.
    (st / "config.toml").write_text(conf.replace(f'listen = "127.0.0.1:{mport}"', f'listen = "127.0.0.1:{mport}"\nhosts = ["a b"]'))
    r = weft(st, "reload", check=False)
    assert r.returncode == 1 and "[metrics] hosts must be DNS names" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert http_get(url, headers={"Host": "prom-target.example"})[0] == 200


def test_a_scrape_loop_is_paced_per_source_and_others_are_not_kept_waiting():
    """Before: one host scraping /metrics on 16 connections got 555 answers a second, took 75% of
    a core and made pings through the node 15x slower (bench/results/audit3, scrapeflood.py).
    After: each source is answered at REQUEST_RATE a second after a burst; a request over it waits
    its turn (past 5 s of waiting it gets 429); another source's bucket is its own."""
    from weftnet.runtime.web.server import MAX_WAIT, REQUEST_BURST, REQUEST_RATE, _Pacer

    p = _Pacer()
    waits = [p.take("192.0.2.1", 100.0) for _ in range(int(REQUEST_BURST + REQUEST_RATE * MAX_WAIT) + 5)]
    assert waits[:int(REQUEST_BURST)] == [0.0] * int(REQUEST_BURST)
    paced = waits[int(REQUEST_BURST):-6]
    assert paced == sorted(paced) and 0 < paced[0] <= paced[-1] <= MAX_WAIT
    assert waits[-5:] == [-1.0] * 5  # too far behind: refused (429), nothing queued
    assert p.take("192.0.2.2", 100.0) == 0.0  # someone else: at once
    assert p.take("192.0.2.1", 100.0 + MAX_WAIT + 1.0) >= 0  # and the first one again, once it slowed down


def test_a_pipelined_burst_is_slowed_not_refused(daemons):
    """60 requests in one write (over the burst of 40): every one is answered 200, in order."""
    mport, dport = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    daemons.init("a", _http_config(mport, dport))
    daemons.up("a")
    wait_for(lambda: _status(f"http://127.0.0.1:{mport}/metrics") == 200, 20, "the metrics endpoint")
    s = socket.create_connection(("127.0.0.1", mport), timeout=30)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 59
              + b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    got = b""
    while chunk := s.recv(1 << 20):
        got += chunk
    s.close()
    assert re.findall(rb"HTTP/1.1 (\d+)", got) == [b"200"] * 60


def test_one_host_cannot_take_every_dashboard_stream(daemons):
    """Before: the 32 event streams were for whoever came first (two hosts at their 16 connections
    held them all, and the operator's page got 503). After: 4 per source."""
    from weftnet.runtime.web.dashboard import MAX_STREAMS_PER_SOURCE

    mport, dport = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    daemons.init("a", _http_config(mport, dport))
    daemons.up("a")
    wait_for(lambda: _status(f"http://127.0.0.1:{dport}/api/snapshot") == 200, 20, "the dashboard")

    def stream(source: str) -> tuple[socket.socket, bytes]:
        s = socket.create_connection(("127.0.0.1", dport), timeout=10, source_address=(source, 0))
        s.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        return s, s.recv(12)

    held = [stream("127.0.0.1") for _ in range(MAX_STREAMS_PER_SOURCE)]
    try:
        assert [head for _s, head in held] == [b"HTTP/1.1 200"] * MAX_STREAMS_PER_SOURCE
        extra, head = stream("127.0.0.1")
        extra.close()
        assert head == b"HTTP/1.1 503"
        other, head = stream("127.0.0.2")  # the operator, elsewhere
        other.close()
        assert head == b"HTTP/1.1 200"
    finally:
        for s, _h in held:
            s.close()


def test_the_dashboard_page_never_turns_node_strings_into_html():
    """Peers control node IDs' neighbours: endpoints, BGP errors, certificate groups, network names
    (a member's certificate). The page must insert every one of them as text: no innerHTML and the
    like anywhere in its script, and a policy that runs no inline script if one slipped in."""
    js = (ROOT / "src/weftnet/runtime/web/static/app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "setTimeout(\"", "srcdoc"):
        assert sink not in js, sink
    html = (ROOT / "src/weftnet/runtime/web/static/index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html) and not re.search(r"\son[a-z]+=", html)
    from weftnet.runtime.web.dashboard import _SECURITY_HEADERS

    csp = _SECURITY_HEADERS["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp


# -- the config file and the CLI --------------------------------------------------------------------


@pytest.mark.parametrize("value, message", [
    ('["aes-256-gcm", { x = 1 }]', "[dataplane] ciphers must be a list of cipher names, not {'x': 1}"),
    ('[["chacha20-poly1305"]]', "[dataplane] ciphers must be a list of cipher names, not ['chacha20-poly1305']"),
])
def test_a_table_among_the_cipher_names_is_one_line_not_an_internal_error(tmp_path, value, message):
    """Before: `weft status` (and `weft up`, and a reload) said 'internal error: TypeError:
    unhashable type'. After: the file, the key and what is wrong."""
    st = tmp_path / "a"
    weft(st, "init")
    with open(st / "config.toml", "a") as f:
        f.write(f"[dataplane]\nciphers = {value}\n")
    for args in (["status"], ["up", "--port", "0"]):
        r = weft(st, *args, check=False, timeout=30)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert r.stderr == f"weft: error: {st / 'config.toml'}: {message}\n", r.stderr


def test_a_daemon_that_drops_the_control_connection_is_an_error_not_silence(tmp_path):
    """What `weft status` sees when the daemon accepts and closes (out of file descriptors, or on
    its way down). Before: exit 0 with nothing printed when the request met a broken pipe (taken
    for `weft status | head`), or 'internal error: ConnectionResetError'. After: one line, exit 1."""
    import threading

    st = tmp_path / "a"
    weft(st, "init")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(st / "control.sock"))
    srv.listen(64)
    os.chmod(st / "control.sock", 0o600)

    def drop():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.close()

    threading.Thread(target=drop, daemon=True).start()
    try:
        for _ in range(6):  # the race decides between EOF, a reset and a broken pipe: all three
            r = weft(st, "status", check=False, timeout=30)
            assert (r.returncode, r.stdout, r.stderr) == (
                1, "", "weft: error: the daemon closed the connection without answering\n"), r
    finally:
        srv.close()


def test_an_unreadable_dashboard_token_is_one_line_and_is_kept(tmp_path):
    """Before: `weft up` with a dashboard.token it cannot read (here a directory) said 'internal
    error: ExceptionGroup'. After: one line naming the file; the file is left as it is. A token
    file that holds no token is replaced (0600) and the log says so."""
    mport, dport = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    st = tmp_path / "a"
    weft(st, "init")
    with open(st / "config.toml", "a") as f:
        f.write(_http_config(mport, dport))
    (st / "dashboard.token").mkdir()
    r = weft(st, "up", "--port", "0", check=False, timeout=30)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == (f"weft: error: {st / 'dashboard.token'}: cannot read the dashboard token: "
                                         "Is a directory; move it away and a new one is made"), r.stderr
    assert "internal error" not in r.stderr and (st / "dashboard.token").is_dir()


def test_every_config_file_the_fuzzer_finds_bad_is_one_line(tmp_path):
    """The config target of fuzz/weftfuzz.py, a slice: mutated config tables give a ConfigError of
    one line or a config, nothing else."""
    sys.path.insert(0, str(ROOT / "fuzz"))
    import weftfuzz

    assert weftfuzz.run("config", 3_000, 4, quiet=True) == 0


def test_the_config_target_catches_a_parser_that_leaks(monkeypatch):
    """Not vacuous: a cipher-name parser that leaks a KeyError on a name it does not know is found."""
    sys.path.insert(0, str(ROOT / "fuzz"))
    import weftfuzz

    import weftnet.runtime.config as config

    real = config.parse_names

    def leaky(names):
        if any(n not in ("aes-256-gcm", "chacha20-poly1305") for n in names):
            raise KeyError("boom")
        return real(names)

    monkeypatch.setattr(config, "parse_names", leaky)
    assert weftfuzz.run("config", 3_000, 4, quiet=True) == 1


# -- a reload that fails half-way (root: a TUN in a namespace of its own) ------------------------------


@pytest.mark.netns
@pytest.mark.skipif(not (os.geteuid() == 0 and os.path.exists("/dev/net/tun") and shutil.which("ip")),
                    reason="needs root, /dev/net/tun and the ip command")
def test_a_network_restart_that_fails_on_reload_puts_the_network_back(tmp_path):
    """Before: a reload that changed a network's TUN settings stopped the network, failed to start
    it with the new ones (a namespace that does not exist) and left it down: its TUN gone, its
    members unreachable until the next restart. After: the reload says it failed and the network
    runs as before, on the same device and addresses."""
    ns = f"wh{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    proc = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        st = tmp_path / "a"
        weft(st, "init")
        weft(st, "net", "create", "lab", "--ipv4", "10.77.0.0/24")
        node = weft(st, "id", "-q").stdout.strip()
        weft(st, "net", "sign", "lab", "--node", node, "--ip", "10.77.0.1", "-o", str(tmp_path / "a.cert"))
        weft(st, "net", "join", str(tmp_path / "a.cert"))
        with open(st / "config.toml", "a") as f:
            f.write(NO_OVERLAY + "[networks.lab]\nmtu = 1300\n")
        log = open(tmp_path / "a.log", "a")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *WEFT, "--state-dir", str(st), "up", "--listen",
                                 "127.0.0.1", "--port", str(free_port()), "--log-format", "json"],
                                stdout=log, stderr=log)
        sock = st / "control.sock"
        wait_for(lambda: sock.exists() and [n for n in call(sock, "status")["networks"] if n["network"] == "lab"],
                 30, "lab up")
        conf = (st / "config.toml").read_text()
        (st / "config.toml").write_text(conf.replace("mtu = 1300\n", f'mtu = 1300\nnetns = "{ns}-gone"\n'))
        r = weft(st, "reload", check=False)
        assert r.returncode == 1, r.stdout + r.stderr
        nets = [n for n in call(sock, "status")["networks"] if n["network"] == "lab"]
        assert nets and nets[0]["mtu"] == 1300, r.stderr
        link = subprocess.run(["ip", "-n", ns, "addr", "show", "wn-lab"], capture_output=True, text=True)
        assert "10.77.0.1" in link.stdout and "mtu 1300" in link.stdout, link.stdout + link.stderr
        assert "failed: network lab: netns '' -> " in r.stderr and "it runs as before" in r.stderr, r.stderr
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_a_reload_hook_that_raises_is_reported_and_the_rest_applies(tmp_path):
    """Before: a subsystem's reload hook raising anything but a weftnet error (an OSError from a
    socket, a bug) ended the reload half-way: the changes applied before it stayed applied, the
    running config did not say so, and `weft reload` printed 'internal error'. After: that hook's
    line is a failure of the report, every other change applies and the running config says so."""
    import asyncio
    import dataclasses
    import types

    from weftnet.runtime.config import Config
    from weftnet.runtime.reload import Reloader

    class Core:
        dht = types.SimpleNamespace(config=types.SimpleNamespace(max_records=100_000))
        vpn = types.SimpleNamespace(networks=lambda: [])

    daemon = types.SimpleNamespace(cfg=Config(), core=Core(), paths=types.SimpleNamespace(root=tmp_path))
    new = dataclasses.replace(Config(), max_records=5000, reach_keepalive=10.0)
    r = Reloader(daemon, lambda: new)

    async def broken(old, new):
        raise OSError(98, "Address already in use")

    r.register("reach", ("reach_keepalive",), broken)
    report = asyncio.run(r.reload())
    assert report.failed == ["reach: OSError: [Errno 98] Address already in use"]
    assert report.applied == ["dht: max_records 100000 -> 5000"] and daemon.core.dht.config.max_records == 5000
    assert daemon.cfg.max_records == 5000 and daemon.cfg.reach_keepalive == 25.0  # what runs, as it runs
