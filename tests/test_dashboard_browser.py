"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a small overlay.

The page loads, shows the right peer count, updates (without a reload) when a
peer joins, and logs no console errors. Set WEFT_UPDATE_SCREENSHOT=1 to
write docs/dashboard.png from this run. Skipped, with the reason, without
chromium or the playwright package (.ci/run installs both).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from opstools import ROOT, Daemons, free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt install chromium)")


def test_dashboard_shows_peers_and_updates_live(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install '.[test]')")
    d = Daemons(tmp_path)
    port = free_port(1)
    d.init("a", f'[dashboard]\nlisten = "127.0.0.1:{port}"\n')
    try:
        d.up("a")
        d.up("b", peer="a")
        b_id = d.status("b")["node_id"]
        with sync_api.sync_playwright() as pw:
            # launch() gives the browser a fresh, temporary user-data-dir.
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"http://127.0.0.1:{port}/")
                expect = sync_api.expect
                expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
                expect(page.locator("#peer-count")).to_have_text("1", timeout=15_000)
                expect(page.locator(f'#peers-table tr[data-node="{b_id}"]')).to_have_count(1)
                expect(page.locator("#node-facts")).to_contain_text(d.status("a")["node_id"])
                expect(page.locator("#protection-facts")).to_contain_text("handshakes rate-limited")
                nat = page.locator('#routing table[data-table="NAT traversal"] tbody tr')
                expect(nat).to_contain_text("1 / 0 / 0")  # one session, direct (a and b on loopback)
                page.evaluate("window.__notReloaded = true")
                d.up("c", peer="a")
                c_id = d.status("c")["node_id"]
                expect(page.locator("#peer-count")).to_have_text("2", timeout=30_000)
                expect(page.locator(f'#peers-table tr[data-node="{c_id}"]')).to_have_count(1)
                expect(page.locator("#topology-plot circle")).to_have_count(3)  # this node + two peers
                assert page.evaluate("window.__notReloaded === true"), "the page reloaded instead of updating"
                d.procs["b"].terminate()  # a peer leaving shows too, once its session times out or closes
                page.wait_for_timeout(1500)
                shot = tmp_path / "dashboard.png"
                page.screenshot(path=str(shot), full_page=True)
                if os.environ.get("WEFT_UPDATE_SCREENSHOT"):
                    shutil.copy(shot, ROOT / "docs" / "dashboard.png")
                assert errors == [], errors
            finally:
                browser.close()
    finally:
        d.close()
