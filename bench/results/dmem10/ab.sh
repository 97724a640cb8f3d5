#!/bin/sh
# Interleaved A/B of bench/dht's weftnet side with --per-node-caches (each node its own caches, as
# alone in its process): the whole workload (joins, puts, gets), one fresh process a run, the two
# trees alternately (the order swapped every round). One JSON row per run, the load average before/after.
# FLAGS (environment) replaces --per-node-caches: FLAGS= for bench/dht as run by default (shared caches).
#   sh bench/results/dmem10/ab.sh BASE_SRC NEW_SRC ROUNDS SIZES...
A=$1; B=$2; ROUNDS=$3; shift 3
PY=/work/main/.venv/bin/python
cd "$(dirname "$0")/../../dht" || exit 1
for n in "$@"; do
  r=1
  while [ "$r" -le "$ROUNDS" ]; do
    if [ $((r % 2)) -eq 1 ]; then order="base new"; else order="new base"; fi
    for side in $order; do
      if [ "$side" = base ]; then src=$A; else src=$B; fi
      l0=$(cut -d' ' -f1 /proc/loadavg)
      out=$(PYTHONPATH=$src $PY weftnet_side.py --nodes "$n" ${FLAGS---per-node-caches})
      l1=$(cut -d' ' -f1 /proc/loadavg)
      echo "{\"round\": $r, \"tree\": \"$side\", \"nodes\": $n, \"utc\": \"$(date -u +%H:%M:%S)\", \"load\": \"$l0-$l1\", \"row\": $(echo "$out" | tail -1)}"
    done
    r=$((r + 1))
  done
done
