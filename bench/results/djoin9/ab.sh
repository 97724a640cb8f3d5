#!/bin/sh
# Interleaved runs of bench/dht's sides (the whole workload: joins, puts, gets), one process each:
# kademlia, weftnet as bench/dht runs it (nodes share the process-wide caches), and weftnet with
# --per-node-caches (each node its own, as alone in its process). Prints one JSON row per run with
# the load average before and after.
#   sh bench/results/djoin9/ab.sh SRC ROUNDS SIZES...   (SRC: the weftnet tree's src, e.g. /work/main/src)
SRC=$1; ROUNDS=$2; shift 2
PY=/work/main/.venv/bin/python
cd "$(dirname "$0")/../../dht" || exit 1
for n in "$@"; do
  r=1
  while [ "$r" -le "$ROUNDS" ]; do
    for side in kademlia weftnet weftnet-pernode; do
      l0=$(cut -d' ' -f1 /proc/loadavg)
      case $side in
        kademlia) out=$($PY kademlia_side.py --nodes "$n") ;;
        weftnet) out=$(PYTHONPATH=$SRC $PY weftnet_side.py --nodes "$n") ;;
        weftnet-pernode) out=$(PYTHONPATH=$SRC $PY weftnet_side.py --nodes "$n" --per-node-caches) ;;
      esac
      l1=$(cut -d' ' -f1 /proc/loadavg)
      echo "{\"round\": $r, \"side\": \"$side\", \"utc\": \"$(date -u +%H:%M:%S)\", \"load\": \"$l0-$l1\", \"row\": $(echo "$out" | tail -1)}"
    done
    r=$((r + 1))
  done
done
