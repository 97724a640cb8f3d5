"""End to end: real `weft up` processes on 127.0.0.1, driven through the CLI.

Three daemons (each with its own state directory and UDP port) join through
the first; the test then uses the CLI exactly as a person would, and finally
stops them with SIGTERM and checks for a clean exit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

WEFT = [sys.executable, "-m", "weftnet.cli.main"]


def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def weft(state: Path, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    p = subprocess.run([*WEFT, "--state-dir", str(state), *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"weft {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def wait_for(pred, timeout: float = 20.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def cluster(tmp_path):
    procs, states = [], []
    first_port = None
    try:
        for i in range(3):
            state = tmp_path / f"n{i}"
            weft(state, "init")
            port = free_port()
            args = ["up", "--listen", "127.0.0.1", "--port", str(port), "--log-format", "json"]
            if first_port is not None:
                args += ["--peer", f"127.0.0.1:{first_port}"]
            first_port = first_port or port
            log = open(tmp_path / f"n{i}.log", "w")
            procs.append(subprocess.Popen([*WEFT, "--state-dir", str(state), *args], stdout=log, stderr=log))
            states.append(state)
            wait_for(lambda: (state / "control.sock").exists(), what=f"node {i} control socket")
        yield states, procs, tmp_path
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def node_info(state: Path) -> dict:
    return json.loads(weft(state, "id", "--json").stdout)


def test_three_daemons_through_the_cli(cluster):
    states, procs, tmp = cluster
    ids = [node_info(s) for s in states]
    # Everyone joins through node 0; node 1 and 2 find each other through the DHT.
    wait_for(lambda: len(json.loads(weft(states[0], "status", "--json").stdout)["sessions"]) >= 2,
             what="two sessions at node 0")

    st = json.loads(weft(states[0], "status", "--json").stdout)
    assert st["node_id"] == ids[0]["node_id"] and st["address"] == ids[0]["address"]
    assert {p["node_id"] for p in st["sessions"]} >= {ids[1]["node_id"], ids[2]["node_id"]}
    assert all(p["bytes_in"] > 0 and p["bytes_out"] > 0 for p in st["sessions"])
    human = weft(states[0], "status").stdout
    assert "sessions:" in human and ids[0]["address"] in human

    # Ping node 2 from node 1 by overlay address, then by node ID.
    out = weft(states[1], "ping", "-c", "2", "-i", "0.1", ids[2]["address"]).stdout
    assert "2 received, 0% loss" in out and ids[2]["node_id"] in out
    out = weft(states[1], "ping", "-c", "1", ids[2]["node_id"]).stdout
    assert "1 received" in out

    # A message routed to a node ID arrives and is logged by the receiver.
    out = weft(states[2], "send", ids[1]["node_id"], "hello node one").stdout
    assert f"delivered to {ids[1]['node_id']}" in out
    wait_for(lambda: "hello node one" in (tmp / "n1.log").read_text(), what="message in node 1's log")

    out = weft(states[0], "trace", ids[2]["node_id"]).stdout
    assert ids[2]["node_id"] in out and " ms" in out

    # A record put on node 1 is read on node 2.
    key = weft(states[1], "put", "the answer is 42").stdout.strip()  # the key alone: K=$(weft put V)
    assert len(key) == 64
    assert weft(states[2], "get", key).stdout.strip() == "the answer is 42"
    out = weft(states[2], "lookup", ids[0]["node_id"]).stdout
    assert ids[0]["node_id"] in out

    # Errors from the daemon side are one line.
    r = weft(states[0], "get", "00" * 32, check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no record with that key" in r.stderr

    # The control socket is owner-only.
    mode = os.stat(states[0] / "control.sock").st_mode & 0o777
    assert mode == 0o600

    # Clean shutdown on SIGTERM: exit 0, socket removed, routing table saved.
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p, s in zip(procs, states):
        assert p.wait(15) == 0
        assert not (s / "control.sock").exists()
    log0 = [json.loads(line) for line in (tmp / "n0.log").read_text().splitlines() if line.startswith("{")]
    events = [e["event"] for e in log0]
    assert "node up" in events and "session up" in events and events[-1] == "stopped"


def test_restarted_node_keeps_its_records(tmp_path):
    state = tmp_path / "solo"
    weft(state, "init")
    port = free_port()

    def start():
        p = subprocess.Popen([*WEFT, "--state-dir", str(state), "up", "--listen", "127.0.0.1", "--port", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: (state / "control.sock").exists(), what="control socket")
        return p

    p = start()
    try:
        key = weft(state, "put", "survives a restart").stdout.strip()
        p.send_signal(signal.SIGINT)
        assert p.wait(15) == 0
        p = start()
        assert weft(state, "get", key).stdout.strip() == "survives a restart"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_second_daemon_on_same_state_dir_is_refused(tmp_path):
    state = tmp_path / "s"
    weft(state, "init")
    p = subprocess.Popen([*WEFT, "--state-dir", str(state), "up", "--listen", "127.0.0.1", "--port", "0"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (state / "control.sock").exists(), what="control socket")
        r = subprocess.run([*WEFT, "--state-dir", str(state), "up", "--listen", "127.0.0.1", "--port", "0"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert "already running" in r.stderr and "Traceback" not in r.stderr
    finally:
        p.kill()
        p.wait(10)
