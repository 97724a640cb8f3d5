"""BGP and EVPN metrics and the dashboard's view of them, scraped from a daemon that has a session with FRR.

    C1 --br100/vxlan100-- F (FRR, 10.77.0.1) ==veth== W (weft, 10.77.0.2) --br100/vxlan100-- C2

The setup is tests/test_bgp_frr.py's, smaller: one container on each side. What a
user watching /metrics sees: the neighbour in state ``established`` with the
prefix counts ``weft bgp summary`` shows, the EVPN instance's local and remote
MACs and the remote IP of a MAC/IP route (FRR's bridge gets an address and
ARPs for C1), the same neighbour in the dashboard's BGP table in chromium,
and, once FRR shuts the neighbour down, the state leaving
``established`` and the NOTIFICATION counted. Needs root, iproute2 and FRR.
"""

from __future__ import annotations

import json
import shutil
import stat

import pytest

from bgp_lab import Lab, can_netns, have_frr, sh, wait_for
from opstools import check_documented, get_in_netns, sample, scrape_netns
from test_bgp_frr import FRR_CONF, MAC, WEFT_CONF, vtep_host

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not (can_netns() and have_frr()), reason="needs root, iproute2 (ip, bridge) and FRR (apt frr)"),
]

HTTP = '\n[metrics]\nlisten = "127.0.0.1:9477"\n[dashboard]\nlisten = "127.0.0.1:9478"\n'


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path, "bm")
    try:
        yield lab
    except BaseException:
        print(lab.dump_logs())
        raise
    finally:
        lab.close()


def test_bgp_and_evpn_metrics_with_frr(lab):
    f, w = lab.add_ns("F"), lab.add_ns("W")
    lab.link(f, "u0", w, "u0")
    sh("ip", "-n", f, "addr", "add", "10.77.0.1/24", "dev", "u0")
    sh("ip", "-n", w, "addr", "add", "10.77.0.2/24", "dev", "u0")
    vtep_host(lab, f, "10.77.0.1", with_vxlan=True)
    vtep_host(lab, w, "10.77.0.2", with_vxlan=False)
    c1 = lab.container("C1", f, "br100", "10.100.0.1/24", MAC[1])
    lab.container("C2", w, "br100", "10.100.0.2/24", MAC[2])
    frr = lab.start_frr(f, FRR_CONF.format(name=lab.name("F")))
    state = lab.weft_init("W", WEFT_CONF + HTTP)
    lab.weft_up(w, state)
    wait_for(lambda: lab.weft_json(state, "bgp", "summary")["peers"][0]["state"] == "Established", 60,
             "the session with FRR")
    wait_for(lambda: lab.ping(c1, "10.100.0.2"), 30, "C1 to ping C2 across the two VTEPs")
    # FRR's bridge gets an address and talks to C1: the ARP entry makes FRR advertise C1's MAC with its IP
    sh("ip", "-n", f, "addr", "add", "10.100.0.254/24", "dev", "br100")
    wait_for(lambda: lab.ping(f, "10.100.0.1"), 30, "FRR's host to ping C1")

    def learned():
        s = lab.weft_json(state, "bgp", "summary")
        evi = s["evpn"][0]
        return evi["local_macs"] >= 1 and evi["remote_macs"] >= 1 and s["peers"][0]["prefixes_received"] >= 3 and s
    wait_for(learned, 30, "C2's MAC learned here, C1's MAC and MAC/IP routes from FRR")

    fams = scrape_netns(w)
    summ = lab.weft_json(state, "bgp", "summary")
    peer = summ["peers"][0]
    g = {"instance": "global", "peer": "10.77.0.1"}
    assert sample(fams, "weftnet_bgp_peer_state", **g, state="established") == 1
    assert sample(fams, "weftnet_bgp_peer_state", **g, state="idle") == 0
    assert sample(fams, "weftnet_bgp_peer_info", **g, remote_as="65000") == 1
    # FRR's type-3 and C1's type-2 at least; the same count weft bgp summary shows
    assert sample(fams, "weftnet_bgp_peer_prefixes", **g, direction="received") == peer["prefixes_received"] >= 2
    assert sample(fams, "weftnet_bgp_peer_prefixes", **g, direction="sent") == peer["prefixes_sent"] >= 2
    assert sample(fams, "weftnet_bgp_peer_uptime_seconds", **g) > 0
    assert sample(fams, "weftnet_bgp_peer_messages", **g, type="update", direction="in") >= 2
    assert sample(fams, "weftnet_bgp_peer_established", **g) == 1
    for fam, n in summ["routes"].items():
        assert sample(fams, "weftnet_bgp_routes", instance="global", family=fam) == n
    evi = summ["evpn"][0]
    assert sample(fams, "weftnet_evpn_macs", vni="100", origin="local") == evi["local_macs"] >= 1
    assert sample(fams, "weftnet_evpn_macs", vni="100", origin="remote") == evi["remote_macs"] >= 1
    assert sample(fams, "weftnet_evpn_remote_vteps", vni="100") == 1
    assert sample(fams, "weftnet_evpn_ips", vni="100", origin="remote") >= 1  # C1's 10.100.0.1 (a MAC/IP route)
    assert sample(fams, "weftnet_evpn_routes_received", type="2") >= 1
    assert sample(fams, "weftnet_evpn_dataplane_events", event="fdb_installed") >= 1
    check_documented(fams, "BGP")
    check_documented(fams, "EVPN")

    # the dashboard reads the same view (its snapshot is taken once a second: wait for one taken
    # after the summary above, or a route that arrived just before it is not in it yet)
    def dashboard_snapshot():
        snap = json.loads(get_in_netns(w, "http://127.0.0.1:9478/api/snapshot"))
        received = snap["subsystems"]["bgp"][0]["peers"][0]["prefixes_received"]
        return snap if received == peer["prefixes_received"] else None
    snap = wait_for(dashboard_snapshot, 10, "the dashboard's snapshot to show the routes the summary shows")
    bgp = snap["subsystems"]["bgp"][0]
    assert bgp["instance"] == "global" and bgp["peers"][0]["state"] == "established"
    assert bgp["peers"][0]["prefixes_received"] == peer["prefixes_received"]
    assert snap["subsystems"]["evpn"]["vnis"][0]["remote_macs"] >= 1

    show_in_browser(lab, w, peer["prefixes_received"])

    # FRR shuts the neighbour down: the state leaves established, its NOTIFICATION is counted
    sh("vtysh", "-N", frr, "-c", "configure terminal", "-c", "router bgp 65000", "-c", "neighbor 10.77.0.2 shutdown")

    def down():
        fams = scrape_netns(w)
        return sample(fams, "weftnet_bgp_peer_state", **g, state="established") == 0 and fams
    fams = wait_for(down, 30, "the metrics to show the session down")
    assert sample(fams, "weftnet_bgp_peer_messages", **g, type="notification", direction="in") >= 1
    assert sum(s.value for s in fams["weftnet_bgp_peer_state"].samples) == 1  # exactly one state at a time
    assert "weftnet_bgp_peer_uptime_seconds" not in fams or not fams["weftnet_bgp_peer_uptime_seconds"].samples


def show_in_browser(lab: Lab, ns: str, prefixes: int) -> None:
    """The dashboard page, in Debian's chromium started inside the daemon's namespace, shows the neighbour."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        return  # tests/test_dashboard_browser.py skips with the reason
    chromium = shutil.which("chromium")
    if chromium is None:
        return
    from test_dashboard_browser import CHROMIUM_ARGS

    wrapper = lab.tmp / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {chromium} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(wrapper), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto("http://127.0.0.1:9478/")
            row = page.locator('#routing table[data-table="BGP neighbours"] tbody tr')
            expect(row).to_have_count(1, timeout=15_000)
            expect(row).to_contain_text("10.77.0.1")
            expect(row).to_contain_text("established")
            expect(row.locator("td").nth(5)).to_have_text(str(prefixes))
            expect(page.locator('#routing table[data-table="EVPN instances"] tbody tr')).to_contain_text("100")
            assert errors == [], errors
        finally:
            browser.close()
