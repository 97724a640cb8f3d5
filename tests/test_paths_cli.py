"""Explicit routes end to end: real `weft up` daemons on 127.0.0.1, driven through the CLI.

A, X, Y, B join through A; X and Y offer transit. ``weft route set B via X,Y`` on A pins the
path; a ping then crosses X and Y (their transit counters grow), ``weft trace B`` shows the two
hops, ``weft route ls`` and ``weft paths`` show the route measured, ``weft route clear`` ends it.
Config errors in [[link]]/[[class]]/[[route]] come back as one line.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
from opstools import check_documented, documented_metrics, sample, scrape_families
from opstools import free_port as free_tcp_port
from test_e2e_cli import WEFT, free_port, node_info, wait_for, weft

NO_OVERLAY = "\n[overlay]\nenable = false\n"


def metrics_listen(state: Path) -> str:
    import tomllib

    return tomllib.loads((state / "config.toml").read_text())["metrics"]["listen"]


def status(state: Path) -> dict:
    return json.loads(weft(state, "status", "--json").stdout)


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("routes")
    procs, states = {}, {}
    first = None
    try:
        for name in "AXYB":
            state = tmp_path / name
            weft(state, "init")
            cfg = state / "config.toml"
            # Four nodes on 127.0.0.1: a loopback lab, exempt from per-address and per-prefix
            # limits as `weft demo` is (NodeConfig.lab()); otherwise the routing table keeps two
            # contacts of 127.0.0.0/24 per bucket and a DHT trace may end one node short.
            text = cfg.read_text().replace("exempt_prefixes = []", 'exempt_prefixes = ["127.0.0.0/8"]')
            assert "127.0.0.0/8" in text
            port = free_port()
            metrics = f'\n[metrics]\nlisten = "127.0.0.1:{free_tcp_port(socket.SOCK_STREAM)}"\n'
            cfg.write_text(text + metrics + NO_OVERLAY + ("\n[paths]\ntransit = true\n" if name in "XY" else ""))
            args = ["up", "--listen", "127.0.0.1", "--port", str(port), "--log-format", "json"]
            if first is not None:
                args += ["--peer", f"127.0.0.1:{first}"]
            first = first or port
            log = open(tmp_path / f"{name}.log", "w")
            procs[name] = subprocess.Popen([*WEFT, "--state-dir", str(state), *args], stdout=log, stderr=log)
            states[name] = state
            wait_for(lambda: (state / "control.sock").exists(), what=f"{name}'s control socket")
        ids = {n: node_info(s)["node_id"] for n, s in states.items()}
        for name, state in states.items():
            # A session with each of the others: a ping opens it (DHT lookups alone open none
            # since sessionless queries, [dht] sessionless), as a user's first traffic would.
            for other, oid in ids.items():
                if other != name:
                    weft(state, "ping", oid, "-c", "1")
            wait_for(lambda: len(status(state)["sessions"]) >= 3, 30, f"{name} to have sessions with all")
        yield states, ids
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def test_route_set_pins_two_hops_and_trace_shows_them(four):
    states, ids = four
    a = states["A"]
    out = weft(a, "route", "set", ids["B"], "via", f"{ids['X']},{ids['Y']}").stdout
    assert f"via {ids['X']}, {ids['Y']}" in out
    before = {n: status(states[n])["paths"]["transit"]["stats"]["forwarded"] for n in "XY"}
    ping = weft(a, "ping", ids["B"], "-c", "3", "-i", "0.2")
    assert "3 received" in ping.stdout
    for n in "XY":
        assert status(states[n])["paths"]["transit"]["stats"]["forwarded"] >= before[n] + 3  # the 3 pings (pongs may come back direct)
    trace = weft(a, "trace", ids["B"]).stdout
    assert "overlay path (explicit route):" in trace
    lines = trace.splitlines()
    first = lines.index("overlay path (explicit route):")
    assert ids["X"] in lines[first + 1] and ids["Y"] in lines[first + 2] and ids["B"] in lines[first + 3]
    assert "end to end" in lines[first + 3]
    routes = json.loads(weft(a, "route", "ls", "--json").stdout)
    assert routes[0]["node_id"] == ids["B"] and routes[0]["via"] == [ids["X"], ids["Y"]] and routes[0]["in_use"]
    wait_for(lambda: json.loads(weft(a, "route", "ls", "--json").stdout)[0]["state"] == "up", 10, "the route measured up")
    peers = json.loads(weft(a, "peers", "--json").stdout)
    b = next(p for p in peers if p["node_id"] == ids["B"])
    assert b["path"] == "relay" and b["via"] == [ids["X"], ids["Y"]]
    assert any(r.get("role") == "route" and r["in_use"] for r in b["paths"])
    paths = json.loads(weft(a, "paths", "--json").stdout)
    assert any(p["node_id"] == ids["B"] and p["routed"] for p in paths["peers"])
    text = weft(a, "paths").stdout
    assert f"{ids['B']}: active, using via {ids['X']},{ids['Y']} (explicit route)" in text
    assert "transit:         on," in weft(states["X"], "status").stdout
    assert "route via" in weft(a, "peers").stdout  # not a terminal: whole IDs in plain columns
    assert "1 route removed" in weft(a, "route", "clear", ids["B"]).stdout
    weft(a, "ping", ids["B"], "-c", "2", "-i", "0.2")
    assert "overlay path" not in weft(a, "trace", ids["B"]).stdout
    assert "no explicit routes" in weft(a, "route", "ls").stdout


def test_bad_routes_are_refused_in_one_line(four):
    states, ids = four
    a = states["A"]
    bad = weft(a, "route", "set", ids["B"], "via", ids["B"], check=False)
    assert bad.returncode != 0 and "its own destination" in bad.stderr and "Traceback" not in bad.stderr
    bad = weft(a, "route", "set", ids["B"], "via", "wn1nonsense", check=False)
    assert bad.returncode != 0 and bad.stderr.startswith("weft: error:")
    bad = weft(a, "route", "set", ids["B"], check=False)
    assert bad.returncode != 0


def test_paths_config_errors_are_one_line(tmp_path):
    state = tmp_path / "bad"
    weft(state, "init")
    for text, msg in (("[[link]]\nname = \"x\"\n", "give bind"),
                      ("[[class]]\nname = \"v\"\npolicy = \"fastest\"\n", "policy must be one of"),
                      ("[paths]\ninterval = \"fast\"\n", "interval must be a number")):
        (state / "config.toml").write_text(text)
        p = weft(state, "up", "--port", str(free_port()), check=False, timeout=20)
        assert p.returncode != 0 and msg in p.stderr and p.stderr.count("\n") == 1, p.stderr


def test_reload_applies_paths_classes_routes_and_links_at_once(four):
    states, ids = four
    y = states["Y"]
    cfg = y / "config.toml"
    before = cfg.read_text()
    try:
        cfg.write_text(before + f"""
interval = 0.1

[[class]]
name = "voice"
proto = "udp"
dport = 5060
latency = 0.1

[[route]]
node = "{ids['B']}"
via = ["{ids['X']}"]

[[link]]
name = "extra"
bind = "127.0.0.1:0"
""")
        report = json.loads(weft(y, "reload", "--json").stdout)
        assert any("probe every 0.1 s" in line for line in report["applied"]), report
        assert any("route to" in line for line in report["applied"])
        assert any("links now extra" in line for line in report["applied"]), report
        assert not report["restart_needed"] and not report["failed"], report
        st = json.loads(weft(y, "paths", "--json").stdout)
        assert st["interval"] == 0.1 and [c["name"] for c in st["classes"]] == ["voice"]
        assert [r["via"] for r in json.loads(weft(y, "route", "ls", "--json").stdout)] == [[ids["X"]]]
        extra = {link["name"]: link for link in st["links"]}["extra"]  # its own socket, bound now
        host, port = extra["endpoint"].rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        # The link and the class are in the metrics too.
        fams = scrape_families(f"http://{metrics_listen(y)}/metrics")
        check_documented(fams, "Links and traffic classes")
        assert {s.labels["link"] for s in fams["weftnet_link_paths"].samples} == {"extra"}
        assert sample(fams, "weftnet_class_packets", **{"class": "voice"}) == 0
        # A link that cannot be opened (the address is taken) is refused in one line; the link
        # in force before stays.
        cfg.write_text(before + f"""
[[link]]
name = "other"
bind = "127.0.0.1:{port}"

[[link]]
name = "clash"
bind = "127.0.0.1:{port}"
""")
        bad = json.loads(weft(y, "reload", "--json").stdout)
        assert any(line.startswith("links: ") and "cannot listen" in line for line in bad["failed"]), bad
        assert "extra" in [link["name"] for link in json.loads(weft(y, "paths", "--json").stdout)["links"]]
    finally:
        cfg.write_text(before)
        weft(y, "reload")
    assert json.loads(weft(y, "route", "ls", "--json").stdout) == []
    assert [link["name"] for link in json.loads(weft(y, "paths", "--json").stdout)["links"]] == ["main"]
    # The node still reaches its peers after its links came and went.
    assert "1 received" in weft(y, "ping", "-c", "1", ids["A"]).stdout


def test_measured_paths_are_in_the_metrics_as_weft_paths_shows_them(four):
    """A scrape of A shows each measured path to B (up, in use, RTT, loss) as `weft paths` does,
    the engine's counters, and every weftnet_path_* family docs/metrics.md lists."""
    states, ids = four
    a = states["A"]
    listen = metrics_listen(a)
    weft(a, "ping", ids["B"], "-c", "3", "-i", "0.2")

    def b_measured():
        st = json.loads(weft(a, "paths", "--json").stdout)
        peer = next((p for p in st["peers"] if p["node_id"] == ids["B"]), None)
        return peer if peer and any(x["rtt_ms"] is not None for x in peer["paths"]) else None

    wait_for(b_measured, 15, "A to measure a path to B")
    fams = scrape_families(f"http://{listen}/metrics")
    for name, typ in documented_metrics("Every metric").items():
        if name.startswith(("weftnet_path_", "weftnet_paths_", "weftnet_peers_on_detour")):
            fam = fams.get(name[:-len("_total")] if typ == "counter" else name)
            assert fam is not None and fam.type == typ, name
    peer = b_measured()
    in_use = [x for x in peer["paths"] if x["in_use"]]
    mine = [s for s in fams["weftnet_path_in_use"].samples if s.labels["peer"] == ids["B"]]
    assert {s.labels["path"] for s in mine} == {x["path"] for x in peer["paths"]}
    assert [s.labels["path"] for s in mine if s.value == 1] == [x["path"] for x in in_use]
    used = in_use[0]
    labels = dict(peer=ids["B"], path=used["path"], kind=used["kind"], link=used["link"])
    assert sample(fams, "weftnet_path_up", **labels) == (1 if used["state"] == "up" else 0)
    assert 0 < sample(fams, "weftnet_path_rtt_seconds", **labels) < 5
    assert 0 <= sample(fams, "weftnet_path_loss_ratio", **labels) <= 1
    assert sample(fams, "weftnet_paths_events", event="probes_sent") > 0
    assert sample(fams, "weftnet_paths_events", event="probe_replies") > 0
