"""Operating a node on loopback (no root): the CLI as people script it, metrics, dashboard API, reload.

Real `weft up` processes on 127.0.0.1, driven through the CLI, a shell, and HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from opstools import WEFT, Daemons, documented_metrics, free_port, http_get, http_post, scrape, wait_for, weft
from weftnet.cli.main import cli


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    """Three daemons: a (metrics + dashboard), b and c joined through a. Shared: the reload test runs last."""
    d = Daemons(tmp_path_factory.mktemp("trio"))
    mport, dport = free_port(1), free_port(1)
    d.init("a", f'[metrics]\nlisten = "127.0.0.1:{mport}"\npeer_series = 1\n[dashboard]\nlisten = "127.0.0.1:{dport}"\n')
    d.mport, d.dport = mport, dport
    try:
        d.up("a")
        d.up("b", peer="a")
        d.up("c", peer="a")
        wait_for(lambda: len(d.status("a")["sessions"]) >= 2, 30, "two sessions at a")
        yield d
    finally:
        d.close()


# -- item 6: the CLI as people script it -----------------------------------------------------


def test_put_key_feeds_get_in_a_shell(trio):
    env = {**os.environ, "WEFTNET_STATE_DIR": str(trio.state["b"])}
    weft_cmd = " ".join(WEFT)
    out = subprocess.run(["bash", "-c", f'set -e; K=$({weft_cmd} put "v 42"); {weft_cmd} get $K; echo "key=$K"'],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "v 42" and len(lines[1]) == 4 + 64
    assert "stored on" in out.stderr  # details on stderr
    js = json.loads(weft(trio.state["b"], "put", "w", "--json").stdout)
    assert len(js["key"]) == 64 and js["stored_at"] >= 1


def test_quorum_means_copies_from_that_many_nodes(trio):
    key = weft(trio.state["b"], "put", "replicated").stdout.strip()
    # Three nodes hold it (k = 20 > 3): a quorum of 3 is met, 5 cannot be.
    assert weft(trio.state["c"], "get", "--quorum", "3", key).stdout.strip() == "replicated"
    r = weft(trio.state["c"], "get", "--quorum", "5", key, check=False)
    assert r.returncode == 1 and r.stderr.startswith("weft: error: only 3 of the 5 copies")
    assert r.stderr.count("\n") == 1


def test_status_and_peers_print_whole_ids_and_endpoints_into_a_pipe(trio):
    st = trio.status("a")
    for verb in ("status", "peers"):
        out = weft(trio.state["a"], verb).stdout  # stdout is a pipe here
        for p in st["sessions"]:
            assert p["node_id"] in out and p["endpoint"] in out
        assert "…" not in out


def test_state_dir_and_config_after_the_verb(trio, tmp_path):
    st = trio.state["a"]
    r = subprocess.run([*WEFT, "status", "--json", "--state-dir", str(st)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["node_id"] == trio.status("a")["node_id"]
    r = subprocess.run([*WEFT, "net", "ls", "--state-dir", str(st)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "no networks" in r.stdout
    # --config names another file: here one whose control socket path is elsewhere, so status fails to find it.
    other = tmp_path / "other.toml"
    other.write_text('[control]\nsocket = "/nonexistent/x.sock"\n')
    r = subprocess.run([*WEFT, "status", "--state-dir", str(st), "--config", str(other)], capture_output=True, text=True)
    assert r.returncode == 1 and "/nonexistent/x.sock" in r.stderr


@pytest.mark.parametrize("args", [["status", "--bogus"], ["ping"], ["net", "sign", "lab"], ["get", "xyz"],
                                  ["frobnicate"], ["up", "--port", "99999"]])
def test_usage_errors_are_one_line(tmp_path, args):
    r = subprocess.run([*WEFT, "--state-dir", str(tmp_path / "s"), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("weft: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "--help" in r.stderr and r.stdout == ""


def test_sim_names_its_missing_extra_before_running(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None; from weftnet.cli.main import main; "
            f"sys.argv = ['weft', 'sim', 'small', '--out', {str(tmp_path / 'o')!r}]; main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "pip install 'weftnet[sim]'" in r.stderr and r.stderr.startswith("weft: error:")
    assert not (tmp_path / "o").exists()  # nothing ran, nothing was written


def test_net_sign_prints_the_path_it_wrote_and_create_makes_the_state_dir_private(tmp_path):
    runner = CliRunner()
    st = tmp_path / "fresh"  # does not exist yet: net create makes it, 0700 as init does
    os.umask(0o022)
    r = runner.invoke(cli, ["--state-dir", str(st), "net", "create", "lab", "--ipv4", "10.1.0.0/24"])
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(st.stat().st_mode) == 0o700
    assert stat.S_IMODE((st / "networks").stat().st_mode) == 0o700
    runner.invoke(cli, ["--state-dir", str(st), "init"])
    node = runner.invoke(cli, ["--state-dir", str(st), "id", "-q"]).output.strip()
    assert node.startswith("wn1") and len(node) == 61
    out = tmp_path / "certs" / "x.cert"
    r = runner.invoke(cli, ["--state-dir", str(st), "net", "sign", "lab", "--node", node, "--ip", "10.1.0.5", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert f"written to {out}" in r.output and out.exists()


def test_service_unit_has_one_capability_and_the_sandbox(tmp_path):
    r = CliRunner().invoke(cli, ["install-service", "--unit-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    unit = (tmp_path / "weftnet.service").read_text()
    lines = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert lines["AmbientCapabilities"] == "CAP_NET_ADMIN" and lines["CapabilityBoundingSet"] == "CAP_NET_ADMIN"
    assert lines["NoNewPrivileges"] == "yes" and lines["DynamicUser"] == "yes" and lines["ProtectSystem"] == "strict"
    assert lines["DeviceAllow"] == "/dev/net/tun rw" and lines["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert lines["ExecStart"].endswith("--state-dir /var/lib/weftnet up") and lines["StateDirectory"] == "weftnet"
    assert "User" not in lines  # no root: a dynamic user with only CAP_NET_ADMIN
    r = CliRunner().invoke(cli, ["install-service", "--unit-dir", str(tmp_path)])
    assert r.exit_code == 1 and "already exists" in r.output
    import shutil

    if shutil.which("systemd-analyze"):
        v = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "weftnet.service")], capture_output=True,
                           text=True, timeout=60)
        assert v.returncode == 0, v.stderr


# -- metrics and dashboard over HTTP ----------------------------------------------------------


def test_metrics_endpoint_caps_per_peer_series(trio):
    weft(trio.state["b"], "ping", "-c", "2", "-i", "0.05", trio.status("a")["node_id"])
    fams = scrape(f"http://127.0.0.1:{trio.mport}/metrics")
    assert fams["weftnet_sessions"][1][0].value >= 2
    peers = {s.labels["peer"] for s in fams["weftnet_peer_bytes"][1]}
    assert len(peers) == 1  # peer_series = 1
    assert fams["weftnet_peer_series_omitted"][1][0].value >= 1
    documented = documented_metrics()
    for name, (typ, samples) in fams.items():
        exposed = name + "_total" if typ == "counter" else name
        assert exposed in documented, f"{exposed} is not in docs/metrics.md"


def test_dashboard_snapshot_is_read_only_without_the_token(trio):
    base = f"http://127.0.0.1:{trio.dport}"
    status, headers, body = http_get(base + "/")
    assert status == 200 and b"/static/app.js" in body and "default-src 'self'" in headers["Content-Security-Policy"]
    n = len(trio.status("a")["sessions"])
    snap = wait_for(lambda: (s := json.loads(http_get(base + "/api/snapshot")[2]))["peer_count"] == n and s,
                    10, "a snapshot (one a second) with every session")
    assert snap["status"]["node_id"] == trio.status("a")["node_id"]
    b_id = trio.status("b")["node_id"]
    code, r = http_post(base + "/api/action", {"op": "ping", "target": b_id})
    assert code == 403 and "token" in r["error"]
    code, r = http_post(base + "/api/action", {"op": "ping", "target": b_id}, {"Authorization": "Bearer wrong"})
    assert code == 403
    token_file = trio.state["a"] / "dashboard.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    auth = {"Authorization": "Bearer " + token_file.read_text().strip()}
    code, r = http_post(base + "/api/action", {"op": "ping", "target": b_id}, auth)
    assert code == 200 and r["result"]["ok"] and r["result"]["node_id"] == b_id
    # A DNS-rebinding page reaches us under its own host name: refused.
    status, _h, _b = http_get(base + "/api/snapshot", headers={"Host": "evil.example:80"})
    assert status == 403
    # The event stream sends snapshots.
    import urllib.request

    with urllib.request.urlopen(base + "/api/events", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        seen = b""
        while b"\n\n" not in seen.split(b"data: ", 1)[-1]:
            seen += resp.read1(65536)
        data = seen.split(b"data: ", 1)[1].split(b"\n\n", 1)[0]
        assert json.loads(data)["peer_count"] >= 2


# -- reload -------------------------------------------------------------------------------------


def test_reload_applies_changes_keeps_sessions_and_refuses_bad_config(trio):
    st = trio.state["a"]
    before = {p["node_id"]: p["session_age"] for p in trio.status("a")["sessions"]}
    conf = (st / "config.toml").read_text()
    new_port = free_port(1)
    (st / "config.toml").write_text(conf.replace(f"127.0.0.1:{trio.mport}", f"127.0.0.1:{new_port}")
                                    .replace('level = "info"', 'level = "debug"').replace("k = 20", "k = 16"))
    out = weft(st, "reload").stdout
    assert f"metrics: listening on http://127.0.0.1:{new_port}/" in out
    assert "log: level debug" in out and "needs a restart: [dht] k (running with 20)" in out
    assert http_get(f"http://127.0.0.1:{new_port}/metrics")[0] == 200
    wait_for(lambda: _refused(trio.mport), 10, "the old metrics port to close")
    # A broken file is refused, with the error; the node keeps what it runs.
    (st / "config.toml").write_text(conf.replace("alpha = 3", "alpha = 99"))
    r = weft(st, "reload", check=False)
    assert r.returncode == 1 and "[dht] alpha must be from 1 to 16, not 99" in r.stderr
    assert "keeps its running config" in r.stderr and r.stderr.count("\n") == 1
    assert http_get(f"http://127.0.0.1:{new_port}/metrics")[0] == 200
    # SIGHUP does the same as `weft reload`.
    (st / "config.toml").write_text(conf)
    trio.procs["a"].send_signal(signal.SIGHUP)
    wait_for(lambda: http_get(f"http://127.0.0.1:{trio.mport}/metrics")[0] == 200
             if not _refused(trio.mport) else False, 10, "metrics back on the first port after SIGHUP")
    # Sessions were never dropped: the same peers, each session older than before.
    after = {p["node_id"]: p["session_age"] for p in trio.status("a")["sessions"]}
    assert set(before) <= set(after) and all(after[k] > before[k] for k in before)
    assert not [e for e in trio.log("a") if e["event"] == "session down"]


def _refused(port: int) -> bool:
    import socket

    s = socket.socket()
    try:
        s.settimeout(1)
        s.connect(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()
