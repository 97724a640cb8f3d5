#!/bin/sh
# bench/dht's weftnet side with per-node caches, main's library (BASE/src) under two harnesses, alternately:
# main's bench/dht (BASE/bench/dht: "base") and this branch's (NEW/bench/dht, bench/dht/pernode.py: "new").
#   sh bench/results/dmem12/ab_harness.sh BASE_TREE NEW_TREE ROUNDS SIZES...
A=$1; B=$2; ROUNDS=$3; shift 3
PY=/work/main/.venv/bin/python
for n in "$@"; do
  r=1
  while [ "$r" -le "$ROUNDS" ]; do
    if [ $((r % 2)) -eq 1 ]; then order="base new"; else order="new base"; fi
    for side in $order; do
      if [ "$side" = base ]; then dir=$A/bench/dht; else dir=$B/bench/dht; fi
      l0=$(cut -d' ' -f1 /proc/loadavg)
      out=$(cd "$dir" && PYTHONPATH=$A/src $PY weftnet_side.py --nodes "$n" --per-node-caches)
      l1=$(cut -d' ' -f1 /proc/loadavg)
      echo "{\"round\": $r, \"harness\": \"$side\", \"nodes\": $n, \"utc\": \"$(date -u +%H:%M:%S)\", \"load\": \"$l0-$l1\", \"row\": $(echo "$out" | tail -1)}"
    done
    r=$((r + 1))
  done
done
