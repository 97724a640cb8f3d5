"""Dup runs as tests/test_paths_netns.py does; during each, A's overlay plane closes its sessions as its liveness
check does for a peer it finds dead. Needs a tree with closeflag.patch applied (PYTHONPATH=that tree)."""
import json, sys, time, os, threading
sys.path.insert(0, "tests")
from pathlib import Path
from sdwan_lab import LINKS, TOOL, SdwanLab
from test_paths_netns import CLASSES, udp_run

N = int(sys.argv[1]); out = Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
force = os.environ.get("FORCE", "1") == "1"
lab = SdwanLab(out, classes=CLASSES)
try:
    lab.build(); lab.start(); lab.overlay_ready("A", "B"); lab.overlay_ready("B", "A")
    pid = lab.procs["A"].pid
    for i in range(N):
        for dev in LINKS:
            lab.drop("B", dev, f"loss{dev}", "udp dport 4500 numgen random mod 100 < 5 drop")
        try:
            mark = len((out / "A.log").read_text().splitlines())
            udp_run(lab, 5004, 1.0, 50)
            t1 = time.time()
            if force:
                threading.Timer(0.5, lambda: Path(f"/tmp/nm2/closeflag.{pid}").touch()).start()
            st0 = lab.status("A")
            (out / f"peers{i}.json").write_text(lab.weft("A", "peers", "--json"))
            samples = []
            stop = []
            def poll():
                while not stop:
                    try:
                        pa = lab.paths("A")
                        peer = next(p for p in pa["peers"] if p["node_id"] == lab.ids["B"])
                        row = {r["path"]: r["state"][:2] + str(r["probes"]) for r in peer["paths"] if r["path"] in ("10.21.0.2:4500", "10.22.0.2:4500 on l2")}
                        samples.append((round(time.time() - t1, 1), row.get("10.21.0.2:4500", "-"), row.get("10.22.0.2:4500 on l2", "-")))
                    except StopIteration:
                        samples.append((round(time.time() - t1, 1), "untracked"))
                    except Exception as e:
                        samples.append((round(time.time() - t1, 1), repr(e)[:30]))
                    time.sleep(0.3)
            th = threading.Thread(target=poll); th.start()
            try:
                dup = udp_run(lab, 6000, 7.0, 300)
            finally:
                stop.append(1); th.join()
            st1 = lab.status("A")
        finally:
            for dev in LINKS:
                lab.undrop("B", f"loss{dev}")
        got = {s for s, _ in dup["arrivals"]}
        n = dup["sent"]
        runs, cur = [], None
        for s in range(n):
            if s not in got:
                cur = [s, s] if cur is None else [cur[0], s]
            elif cur is not None:
                runs.append(cur); cur = None
        if cur: runs.append(cur)
        ev = [json.loads(l) for l in (out / "A.log").read_text().splitlines()[mark:]]
        ev = [(round(time.mktime(time.strptime(e["ts"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone + float(e["ts"][19:23]) - t1, 2), e["event"]) for e in ev if e["event"] in ("session down", "session up")]
        print(i, "loss", round(1 - len(got) / n, 4), "runs>=3", [(a, b - a + 1) for a, b in runs if b - a + 1 >= 3], ev, "unpaid", st1["paths"]["stats"]["probes_unpaid"] - st0["paths"]["stats"]["probes_unpaid"], "refused", st1["reach"]["stats"]["unpaid_refused"] - st0["reach"]["stats"]["unpaid_refused"], flush=True)
        print("   ", samples, flush=True)
        time.sleep(2)
finally:
    lab.close()
