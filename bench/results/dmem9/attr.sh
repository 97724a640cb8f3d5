#!/bin/sh
# Memory per node by cache: bench/dht's weftnet side on one tree, with no cache per node (as bench/dht
# runs by default), then each cache alone per node (PERNODE_ONLY, bench/dht/pernode.py), then all.
#   sh bench/results/dmem9/attr.sh SRC NODES CACHES...   (e.g. contacts node_id_for ed25519_public_to_x25519)
SRC=$1; N=$2; shift 2
PY=/work/main/.venv/bin/python
cd "$(dirname "$0")/../../dht" || exit 1
row() {
  l0=$(cut -d' ' -f1 /proc/loadavg)
  out=$(PYTHONPATH=$SRC "$@")
  l1=$(cut -d' ' -f1 /proc/loadavg)
  echo "{\"only\": \"$only\", \"nodes\": $N, \"utc\": \"$(date -u +%H:%M:%S)\", \"load\": \"$l0-$l1\", \"row\": $(echo "$out" | tail -1)}"
}
only=shared; row $PY weftnet_side.py --nodes "$N"
for c in "$@"; do
  only=$c; PERNODE_ONLY=$c row $PY weftnet_side.py --nodes "$N" --per-node-caches
done
only=all; row $PY weftnet_side.py --nodes "$N" --per-node-caches
