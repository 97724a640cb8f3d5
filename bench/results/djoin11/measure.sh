#!/bin/sh
# djoin11's measurements, in order of what they settle (run once the machine is free):
# 1. instructions of join_core.py at 80 nodes (per-node caches) under callgrind, main's tree and this
#    branch's side by side (deterministic whatever the load: PYTHONHASHSEED=0, both trees compiled first);
# 2. the collector question: bench/dht's two sides at 1,000 nodes with Python's collector setting and
#    with the daemon's (--gc daemon), the same setting on both sides, interleaved;
# 3. bench/dht's weftnet side, main's tree against this branch's (ab.sh of djoin10).
#   sh bench/results/djoin11/measure.sh MAIN_SRC BRANCH_SRC OUTDIR
MAIN=$1; MINE=$2; OUT=$3
PY=/work/main/.venv/bin/python
RES=$(cd "$(dirname "$0")" && pwd)
HERE=$RES/../../dht
mkdir -p "$OUT"
cd "$HERE" || exit 1
# Both trees compiled to .pyc first (env -u: a shell with PYTHONDONTWRITEBYTECODE would otherwise charge each
# run its compiling; MAIN: a tree of its own, e.g. `git archive 6ef68d6 src | tar -x -C /tmp/main`).
env -u PYTHONDONTWRITEBYTECODE $PY -m compileall -q "$MAIN" "$MINE" >/dev/null
echo "callgrind start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/log"
PYTHONHASHSEED=0 PYTHONPATH=$MAIN valgrind --tool=callgrind --callgrind-out-file="$OUT/cg-main.out" \
  $PY join_core.py --nodes 80 --per-node-caches > "$OUT/callgrind-80-main.txt" 2>&1 &
P1=$!
PYTHONHASHSEED=0 PYTHONPATH=$MINE valgrind --tool=callgrind --callgrind-out-file="$OUT/cg-branch.out" \
  $PY join_core.py --nodes 80 --per-node-caches > "$OUT/callgrind-80-branch.txt" 2>&1 &
P2=$!
wait $P1 $P2
echo "callgrind end $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/log"
for spec in "500 1" "500 2" "1000 1" "1000 2"; do
  set -- $spec; n=$1; r=$2
  for gcmode in default daemon; do
    for side in kademlia_side.py weftnet_side.py; do
      extra=""; [ "$side" = weftnet_side.py ] && extra="--per-node-caches"
      l0=$(cut -d' ' -f1 /proc/loadavg)
      row=$(PYTHONPATH=$MINE $PY $side --nodes $n --gc $gcmode $extra | tail -1)
      l1=$(cut -d' ' -f1 /proc/loadavg)
      echo "{\"round\": $r, \"gc\": \"$gcmode\", \"utc\": \"$(date -u +%H:%M:%S)\", \"load\": \"$l0-$l1\", \"row\": $row}" >> "$OUT/gc.jsonl"
    done
  done
done
sh "$RES/../djoin10/ab.sh" "$MAIN" "$MINE" 2 500 >> "$OUT/ab.jsonl"
echo "done $(date -u +%H:%M:%S)" >> "$OUT/log"
