#!/bin/sh
# What bench/results/dmem11 ran, in order (BASE = a `git archive` of main's src, NEW = this branch's src):
#   sh bench/results/dmem11/run.sh /tmp/dmem11-base/src /work/wt/dmem11/src
# (the machine was shared with two other helpers' runs: rounds cut to fit the session.)
BASE=$1; NEW=$2
PY=/work/main/.venv/bin/python
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
cd "$ROOT/bench/dht" || exit 1
if [ -z "$SKIP_BREAKDOWN" ]; then
  # 1. the account at 1,000 nodes (tracemalloc: the two at once, the figures do not depend on the load)
  PYTHONPATH=$NEW $PY mem_breakdown.py bench --nodes 1000 --per-node-caches --top 50 > "$HERE/mem-breakdown-1000-dmem11.txt" 2>&1 &
  PYTHONPATH=$BASE $PY mem_breakdown.py bench --nodes 1000 --per-node-caches --top 50 > "$HERE/mem-breakdown-1000-main.txt" 2>&1
  wait
fi
echo "breakdown done $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
# 2. interleaved A/B of bench/dht's weftnet side (per-node caches)
sh "$ROOT/bench/results/dmem10/ab.sh" "$BASE" "$NEW" 2 1000 > "$HERE/ab.jsonl"
echo "ab 1000 done $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
sh "$ROOT/bench/results/dmem10/ab.sh" "$BASE" "$NEW" 1 500 100 >> "$HERE/ab.jsonl"
echo "ab done $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
# 3. unit costs, each tree twice, alternately
cd "$ROOT"
for side in base new base new; do
  if [ $side = base ]; then src=$BASE; else src=$NEW; fi
  echo "== $side $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)"
  PYTHONPATH=$src $PY "$HERE/unit_costs.py"
done > "$HERE/unit-costs.txt" 2>&1
echo "units done $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
# 4. the simulator: CPU a join (same stretch of scale-1m, interleaved) and digests
$PY bench/sim_ab_slice.py --src "$BASE" --src "$NEW" --build 10000 --slice 2000 --rounds 3 > "$HERE/sim-ab-slice.txt" 2>&1
echo "slice done $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
PYTHONPATH=$BASE $PY bench/sim_digest.py small scale-1m@8000 > "$HERE/sim-digest-base.txt" 2>&1 &
PYTHONPATH=$NEW $PY bench/sim_digest.py small scale-1m@8000 > "$HERE/sim-digest-new.txt" 2>&1
wait
echo "digests done $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
