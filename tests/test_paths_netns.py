"""Paths over real links: daemons in namespaces joined by two underlay links and a third site (tests/sdwan_lab.py).

Impaired with what this kernel has — a link set down, nftables drop and ``numgen`` loss on
a netdev ingress hook, ``tbf`` with a flood for queueing delay (no netem here). Failover
figures are asserted with a generous margin (the machine is shared); bench/paths/run.py
measures them precisely, over many cuts. Needs root, /dev/net/tun, ip, nft, tc, iperf3.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from sdwan_lab import LINKS, TOOL, SdwanLab, wait_for

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        not (os.geteuid() == 0 and os.path.exists("/dev/net/tun") and all(shutil.which(t) for t in
                                                                           ("ip", "nft", "tc", "iperf3", "ping"))),
        reason="needs root, /dev/net/tun, ip, nft, tc, iperf3 and ping (the test makes its own namespaces)",
    ),
]

CLASSES = """
[[class]]
name = "voice"
proto = "udp"
dport = 5060
latency = 0.05
policy = "cheapest"

[[class]]
name = "bulk"
proto = "udp"
dport = 7000
policy = "cheapest"

[[class]]
name = "critical"
proto = "udp"
dport = 6000
policy = "duplicate"
links = ["l1", "l2"]

[[class]]
name = "single"
proto = "udp"
dport = 6001
policy = "cheapest"
links = ["l1"]
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = SdwanLab(tmp_path_factory.mktemp("sdwan"), classes=CLASSES)
    try:
        lab.build()
        lab.start()
        lab.overlay_ready("A", "B")
        lab.overlay_ready("B", "A")
        yield lab
    finally:
        lab.close()


def udp_run(lab: SdwanLab, port: int, seconds: float, rate: float, during=None) -> dict:
    """A UDP stream A -> B over the overlay; ``during()`` runs meanwhile. Returns the receiver's report."""
    rx = lab.popen("B", *TOOL, "recv", str(port), str(seconds + 3))
    assert rx.stdout.readline().strip() == "listening"
    tx = lab.popen("A", *TOOL, "send", lab.addr["B"], str(port), str(seconds), str(rate))
    if during is not None:
        during()
    tx.wait(seconds + 30)
    sent = int(tx.stdout.read().split()[1])
    report = json.loads(rx.stdout.readline())
    rx.wait(10)
    report["sent"] = sent
    return report


def gap(report: dict) -> float:
    times = [t for _, t in report["arrivals"]]
    return max(b - a for a, b in zip(times, times[1:]))


def in_use_link(lab: SdwanLab) -> str:
    peer = next(p for p in lab.paths("A")["peers"] if p["node_id"] == lab.ids["B"])
    return next(r["link"] for r in peer["paths"] if r["in_use"])


def test_a_link_cut_mid_iperf3_moves_the_transfer_to_the_other_link_without_a_reset(lab):
    srv = lab.popen("B", "iperf3", "-s", "-1", "-p", "5201")
    wait_for(lambda: "5201" in lab.in_ns("B", "ss", "-Hltn").stdout, 10, "iperf3 listening in B")
    client = lab.popen("A", "iperf3", "-c", lab.addr["B"], "-p", "5201", "-t", "8", "-i", "0.1", "-J")
    time.sleep(3.0)
    used = in_use_link(lab)
    assert used in LINKS
    lab.link("A", used, up=False)  # the link in use goes down at A's end, mid-transfer
    try:
        out, _ = client.communicate(timeout=60)
        srv.wait(10)
        result = json.loads(out)
        assert "error" not in result, result.get("error")  # no reset: the one connection ran to the end
        intervals = [(i["sum"]["start"], i["sum"]["bytes"]) for i in result["intervals"]]
        after = sum(b for s, b in intervals if s >= 5.0)
        assert after > 1 << 20  # it kept going after the cut
        # The longest stretch without a byte acknowledged (0.1 s resolution).
        longest = run = 0
        for _, b in intervals:
            run = run + 1 if b == 0 else 0
            longest = max(longest, run)
        assert longest * 0.1 < 3.0  # issue 11: < 1 s; asserted generously here, measured in bench/paths
        assert in_use_link(lab) != used
    finally:
        lab.link("A", used, up=True)
    events = (lab.tmp / "A.log").read_text()
    assert '"event": "path down"' in events


def test_a_blackholed_direct_path_goes_through_c_and_comes_back_when_it_heals(lab):
    wait_for(lambda: all(lab.in_ns(h, "ip", "link", "show", "l1").stdout.count("UP") for h in "AB"), 10, "links up")
    before = lab.status("C")["paths"]["transit"]["stats"]["forwarded"]
    tables = []

    def blackhole():
        time.sleep(2.0)
        for host in "AB":
            for dev in LINKS:
                lab.drop(host, dev, f"bh{dev}")
                tables.append((host, f"bh{dev}"))

    report = udp_run(lab, 5004, 6.0, 100, blackhole)
    try:
        path = lab.path_to("A", "B")
        assert path.startswith("via ") and lab.ids["C"] in path
        forwarded = lab.status("C")["paths"]["transit"]["stats"]["forwarded"] - before
        assert forwarded > 200  # the stream, both ways' probes, through C
        assert report["received"] >= report["sent"] * 0.8
        assert gap(report) < 3.0  # issue 11: within 1 s; generous on a shared machine (bench measures it)
    finally:
        for host, table in tables:
            lab.undrop(host, table)
    # Healed: back on a direct link (after the hold time), not through C.
    wait_for(lambda: not (lab.path_to("A", "B") or "via").startswith("via"), 20, "A back on a direct path")


def test_a_latency_sla_class_leaves_a_congested_link_and_an_sla_less_class_stays(lab):
    a_l1, b_l1 = LINKS["l1"]
    # Queueing delay on l1 (A to B): a 2 Mbit/s bucket with a 400 ms queue, kept full by a flood
    # a little faster than that (so a few percent of what enters is dropped, not most of it).
    lab.in_ns("A", "tc", "qdisc", "add", "dev", "l1", "root", "tbf", "rate", "2mbit", "burst", "8kb",
              "latency", "400ms")
    flood = lab.popen("A", *TOOL, "flood", b_l1, "9", "30", "2300000", a_l1)
    try:
        def l1_slow():
            peer = next(p for p in lab.paths("A")["peers"] if p["node_id"] == lab.ids["B"])
            row = next((r for r in peer["paths"] if r["link"] == "l1" and r["state"] == "up"), None)
            return row is not None and (row["rtt_ms"] or 0) > 100

        udp_run(lab, 5004, 1.0, 50)  # traffic: B is an active peer, probed every 0.2 s
        wait_for(l1_slow, 20, "A to measure l1's queueing delay")
        before = {c["name"]: dict(c["links"]) for c in lab.paths("A")["classes"]}
        udp_run(lab, 5060, 3.0, 50)  # voice: latency <= 50 ms, the cheapest link that meets it
        udp_run(lab, 7000, 3.0, 50)  # bulk: no SLA, the cheapest link
        after = {c["name"]: dict(c["links"]) for c in lab.paths("A")["classes"]}

        def grew(cls: str, link: str) -> int:
            return after[cls].get(link, 0) - before[cls].get(link, 0)

        assert grew("voice", "l2") >= 140 and grew("voice", "l1") == 0
        assert grew("bulk", "l1") >= 120  # no SLA: it stays on the cheap link, slow as it is
    finally:
        flood.terminate()
        lab.in_ns("A", "tc", "qdisc", "del", "dev", "l1", "root")


def test_a_duplicate_class_survives_5_percent_loss_on_each_link(lab):
    tables = []
    for dev in LINKS:  # 5% random loss on each link, into B
        lab.drop("B", dev, f"loss{dev}", "udp dport 4500 numgen random mod 100 < 5 drop")
        tables.append(f"loss{dev}")
    try:
        udp_run(lab, 5004, 1.0, 50)
        dup = udp_run(lab, 6000, 7.0, 300)  # both links, each packet twice
        plain = udp_run(lab, 6001, 7.0, 300)  # one of them, once (the default path would detour via C)
    finally:
        for t in tables:
            lab.undrop("B", t)
    dup_loss = 1 - dup["received"] / dup["sent"]
    plain_loss = 1 - plain["received"] / plain["sent"]
    assert plain_loss > 0.02  # the links do lose ~5%
    assert dup_loss < 0.01 and dup_loss < plain_loss / 4
    b = lab.status("B")
    assert b["transport"]["duplicates_dropped"] > 1000  # second copies, dropped before decryption
    crit = next(c for c in lab.paths("A")["classes"] if c["name"] == "critical")
    assert crit["duplicated"] > 1800 and {"l1", "l2"} <= set(crit["links"])
