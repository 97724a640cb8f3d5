#!/bin/sh
# Interleaved per-get traces (trace_gets.py), main's tree and this branch's alternately: wall and CPU
# percentiles of the gets (a get's CPU is its latency minus the time the process was not running: what
# the other jobs on a shared machine do not move). One line per run, with the load average.
#   sh bench/results/dget1/ab_trace.sh MAIN_SRC BRANCH_SRC ROUNDS SIZES...
MAIN=$1; MINE=$2; ROUNDS=$3; shift 3
PY=/work/main/.venv/bin/python
cd "$(dirname "$0")/../../dht" || exit 1
for n in "$@"; do
  r=1
  while [ "$r" -le "$ROUNDS" ]; do
    for side in main branch; do
      if [ "$side" = main ]; then SRC=$MAIN; else SRC=$MINE; fi
      l0=$(cut -d' ' -f1 /proc/loadavg)
      out=$(PYTHONPATH=$SRC $PY ../results/dget1/trace_gets.py --nodes "$n" 2>&1); out=$(echo "$out" | head -1)
      l1=$(cut -d' ' -f1 /proc/loadavg)
      echo "$n nodes, round $r, $side, $(date -u +%H:%M:%S), load $l0-$l1: $out"
    done
    r=$((r + 1))
  done
done
