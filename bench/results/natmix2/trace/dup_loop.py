"""Repeat the duplicate-class run of tests/test_paths_netns.py on one lab; print loss, events, stats."""
import json, sys, time, os
sys.path.insert(0, "tests")
from pathlib import Path
from sdwan_lab import LINKS, TOOL, SdwanLab
from test_paths_netns import CLASSES, udp_run

N = int(sys.argv[1]); out = Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
lab = SdwanLab(out, classes=CLASSES)
def stats():
    a = lab.status("A")
    found = {}
    def walk(d, path=""):
        if isinstance(d, dict):
            for k, v in d.items():
                if k in ("dead_peers", "paths_dead", "probes_lost", "replies_limited") and not isinstance(v, (dict, list)):
                    found[path + k] = v
                else:
                    walk(v, path + k + ".")
    walk(a)
    return found
try:
    lab.build(); lab.start(); lab.overlay_ready("A", "B"); lab.overlay_ready("B", "A")
    for i in range(N):
        for dev in LINKS:
            lab.drop("B", dev, f"loss{dev}", "udp dport 4500 numgen random mod 100 < 5 drop")
        try:
            s0 = stats()
            crit0 = next(c for c in lab.paths("A")["classes"] if c["name"] == "critical")
            mark = len((out / "A.log").read_text().splitlines())
            t0 = time.time()
            udp_run(lab, 5004, 1.0, 50)
            t1 = time.time()
            dup = udp_run(lab, 6000, 7.0, 300)
            t2 = time.time()
        finally:
            for dev in LINKS:
                lab.undrop("B", f"loss{dev}")
        crit = next(c for c in lab.paths("A")["classes"] if c["name"] == "critical")
        s1 = stats()
        loss = 1 - dup["received"] / dup["sent"]
        got = {s for s, _ in dup["arrivals"]}
        lost = sorted(set(range(dup["sent"])) - got)
        ev = [json.loads(l) for l in (out / "A.log").read_text().splitlines()[mark:]]
        ev = [(e["ts"][11:23], e["event"], e.get("detail") or e.get("path") or e.get("reason") or "") for e in ev
              if e.get("event") not in ("path down",) or "10.2" in e.get("detail", "")]
        print(json.dumps({"i": i, "loss": round(loss, 4), "sent": dup["sent"], "lost_seqs": lost[:5] + (["..."] if len(lost) > 5 else []),
                          "lost_n": len(lost), "dup_start": time.strftime("%H:%M:%S", time.gmtime(t1)) + f".{int((t1%1)*1000):03d}",
                          "dupd": crit["duplicated"] - crit0["duplicated"], "default": crit["default"] - crit0["default"],
                          "links": {k: v - crit0["links"].get(k, 0) for k, v in crit["links"].items()},
                          "stats0": s0, "stats1": s1, "events": [x for x in ev if x[1] != "path down" or True][:30]}), flush=True)
        time.sleep(float(os.environ.get("GAP", "2")))
finally:
    lab.close()
