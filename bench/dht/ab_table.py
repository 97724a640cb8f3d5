"""Rows and medians of interleaved A/B runs of bench/dht's weftnet side (bench/results/djoin10/ab.sh:
one JSON row a run): python bench/dht/ab_table.py [--branch NAME] ab.jsonl [more.jsonl ...]"""
import json
import statistics as st
import sys

args = sys.argv[1:]
branch = "branch"
if args[:1] == ["--branch"]:
    branch, args = args[1], args[2:]
rows = [json.loads(line) for f in args for line in open(f) if line.strip()]
cols = ("rss_kib_per_node", "join_cpu_seconds", "put_cpu_seconds", "get_cpu_seconds", "put_p50_ms", "put_p95_ms",
        "get_p50_ms", "get_p95_ms", "datagrams_per_join", "datagrams_per_get")
print("| nodes | round | tree | UTC | load | KiB/node | join CPU s | put CPU s | get CPU s | put p50 / p95 ms | get p50 / p95 ms | datagrams / join, get | put, read |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    w = r["row"]
    print(f"| {w['nodes']:,} | {r['round']} | {'main' if r['side'] == 'main' else branch} | {r['utc']} | {r['load']} | "
          f"{w['rss_kib_per_node']} | {w['join_cpu_seconds']} | {w['put_cpu_seconds']} | {w['get_cpu_seconds']} | "
          f"{w['put_p50_ms']} / {w['put_p95_ms']} | {w['get_p50_ms']} / {w['get_p95_ms']} | "
          f"{w['datagrams_per_join']}, {w['datagrams_per_get']} | {w['put_ok']}, {w['get_ok']} |")
print()
print("| nodes | tree (runs) | KiB/node | join CPU s | put CPU s | get CPU s | put p50 / p95 ms | get p50 / p95 ms | datagrams / join, get |")
print("|---|---|---|---|---|---|---|---|---|")
for n in sorted({r["row"]["nodes"] for r in rows}, reverse=True):
    for side in ("main", "branch"):
        sel = [r["row"] for r in rows if r["row"]["nodes"] == n and r["side"] == side]
        if not sel:
            continue
        m = {c: round(st.median(x[c] for x in sel), 2) for c in cols}
        print(f"| {n:,} | {'main' if side == 'main' else branch} ({len(sel)}) | {m['rss_kib_per_node']} | "
              f"{m['join_cpu_seconds']} | {m['put_cpu_seconds']} | {m['get_cpu_seconds']} | {m['put_p50_ms']} / "
              f"{m['put_p95_ms']} | {m['get_p50_ms']} / {m['get_p95_ms']} | {m['datagrams_per_join']}, {m['datagrams_per_get']} |")
