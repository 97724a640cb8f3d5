#!/bin/sh
# Interleaved A/B of bench/dht/join_core.py --per-node-caches (the joins over NodeCores wired in memory:
# the core's CPU, no sockets or event loop; same seeded work every run).
#   sh bench/results/dmem9/ab-core.sh BASE_SRC NEW_SRC ROUNDS NODES
A=$1; B=$2; ROUNDS=$3; N=$4
PY=/work/main/.venv/bin/python
cd "$(dirname "$0")/../../dht" || exit 1
r=1
while [ "$r" -le "$ROUNDS" ]; do
  if [ $((r % 2)) -eq 1 ]; then order="base new"; else order="new base"; fi
  for side in $order; do
    if [ "$side" = base ]; then src=$A; else src=$B; fi
    l0=$(cut -d' ' -f1 /proc/loadavg)
    out=$(PYTHONPATH=$src $PY join_core.py --nodes "$N" --per-node-caches | head -1)
    l1=$(cut -d' ' -f1 /proc/loadavg)
    echo "round $r $side $(date -u +%H:%M:%S) load $l0-$l1: $out"
  done
  r=$((r + 1))
done
