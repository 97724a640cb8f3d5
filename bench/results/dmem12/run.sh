#!/bin/sh
# What bench/results/dmem12 ran, in order (BASE = a `git archive` of main dad27d0 at /tmp/dmem12-base, NEW = this
# branch's tree):  sh bench/results/dmem12/run.sh /tmp/dmem12-base /work/wt/dmem12
BASE=$1; NEW=$2
PY=/work/main/.venv/bin/python
HERE=$(cd "$(dirname "$0")" && pwd)
stamp() { echo "$1 $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"; }
# 1. interleaved A/B of the library (both trees run with this branch's bench/dht, so its harness)
stamp "ab start"
sh "$NEW/bench/results/dmem10/ab.sh" "$BASE/src" "$NEW/src" 3 1000 500 > "$HERE/ab.jsonl"
sh "$NEW/bench/results/dmem10/ab.sh" "$BASE/src" "$NEW/src" 1 100 >> "$HERE/ab.jsonl"
stamp "ab done"
# 2. the harness alone: main's library under main's bench/dht (base) and under this branch's (new)
sh "$NEW/bench/results/dmem12/ab_harness.sh" "$BASE" "$NEW" 2 1000 > "$HERE/ab-harness.jsonl"
stamp "harness done"
# 3. decodes and cache hits by phase at 500 nodes, each tree
for t in "$BASE" "$NEW"; do
  echo "== $t"
  cd "$NEW" && PYTHONPATH=$t/src $PY bench/results/dmem12/count_hits.py 500 2>&1 | tail -3
done > "$HERE/count-hits-500.txt"
stamp "counts done"
# 4. simulator digests (this tree; main's are d8b881b7e2554b02 and 0f831ad1a4da12c7)
cd "$NEW" && PYTHONPATH=$NEW/src $PY bench/sim_digest.py small scale-1m@8000 > "$HERE/sim-digest-new.txt" 2>&1
stamp "digests done"
