"""The A/B table of bench/results/ov6/{ab,ba}N/dataplane.json: overlay row, this branch against main."""
import json
import statistics
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/ov6")


def p50(r):
    return (r.get("ping") or {}).get("p50_ms", "—")


rows = {"weftnet-overlay": [], "weftnet-baseline-overlay": []}
print("| run | ov6 Gbit/s A→B / B→A | ov6 CPU s/GB A→B / B→A | main Gbit/s A→B / B→A | main CPU s/GB A→B / B→A "
      "| ov6 / main ping p50 ms | ov6 / main UDP Mbit/s (CPU s/GB) | load (ov6 / main) |")
print("|---|---|---|---|---|---|---|---|")
for d in sorted(root.glob("[ab][ab][0-9]*"), key=lambda p: int(p.name[2:])):
    f = d / "dataplane.json"
    if not f.exists():
        continue
    res = {r["name"]: r for r in json.load(open(f))["results"] if r.get("status") == "ok"}
    if len(res) < 2:
        continue
    o, m = res["weftnet-overlay"], res["weftnet-baseline-overlay"]
    for k, r in (("weftnet-overlay", o), ("weftnet-baseline-overlay", m)):
        rows[k].append(r)

    def g(r):
        return f"{r['forward']['gbit_s']:.2f} / {r['reverse']['gbit_s']:.2f}"

    def c(r):
        return f"{r['forward']['tunnel_cpu_s_per_gb']:.2f} / {r['reverse']['tunnel_cpu_s_per_gb']:.2f}"

    def u(r):
        x = r.get("udp") or {}
        return f"{x.get('delivered_mbit_s', '—')} ({x.get('tunnel_cpu_s_per_gb', '—')})"

    print(f"| {d.name} | {g(o)} | {c(o)} | {g(m)} | {c(m)} | {p50(o)} / {p50(m)} "
          f"| {u(o)} / {u(m)} | {o['load_1m']} / {m['load_1m']} |")

for k, rs in rows.items():
    if rs:
        print(f"{k}: mean CPU s/GB A→B {statistics.mean(r['forward']['tunnel_cpu_s_per_gb'] for r in rs):.2f}, "
              f"B→A {statistics.mean(r['reverse']['tunnel_cpu_s_per_gb'] for r in rs):.2f}; "
              f"mean Gbit/s {statistics.mean(r['forward']['gbit_s'] for r in rs):.2f} / "
              f"{statistics.mean(r['reverse']['gbit_s'] for r in rs):.2f}; "
              f"median ping p50 {statistics.median(r['ping']['p50_ms'] for r in rs if r.get('ping')):.3f} ms "
              f"({len(rs)} runs)")
