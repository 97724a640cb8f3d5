#!/bin/sh
# Interleaved runs of bench/dht's weftnet side (the whole workload: joins, puts, gets; each node its own
# caches, as bench/dht/run.py runs it), main's tree and this branch's alternately, one process each,
# with optional DHT settings for this branch's runs. One JSON row per run, with the load average.
#   sh bench/results/djoin10/ab.sh MAIN_SRC BRANCH_SRC ROUNDS SIZES...
MAIN=$1; MINE=$2; ROUNDS=$3; shift 3
PY=/work/main/.venv/bin/python
cd "$(dirname "$0")/../../dht" || exit 1
for n in "$@"; do
  r=1
  while [ "$r" -le "$ROUNDS" ]; do
    for side in main branch; do
      if [ "$side" = main ]; then SRC=$MAIN; else SRC=$MINE; fi
      l0=$(cut -d' ' -f1 /proc/loadavg)
      out=$(PYTHONPATH=$SRC $PY weftnet_side.py --nodes "$n" --per-node-caches)
      l1=$(cut -d' ' -f1 /proc/loadavg)
      echo "{\"round\": $r, \"side\": \"$side\", \"utc\": \"$(date -u +%H:%M:%S)\", \"load\": \"$l0-$l1\", \"row\": $(echo "$out" | tail -1)}"
    done
    r=$((r + 1))
  done
done
