#!/bin/sh
# Issue 16, join round twelve: the counts and the interleaved A/B of bench/results/djoin12/README.md.
#   sh bench/results/djoin12/measure.sh MAIN_COMMIT BRANCH_DIR OUTDIR
# MAIN_COMMIT's src and bench/dht are exported with git archive and both trees compiled to .pyc first
# (this shell sets PYTHONDONTWRITEBYTECODE: uncompiled, each run would charge its tree the compiling).
MAIN=$1; MINE=$2; OUT=$3
PY=/work/main/.venv/bin/python
set -e
mkdir -p "$OUT/base" "$OUT/br/bench"
git -C "$MINE" archive "$MAIN" src bench/dht | tar -x -C "$OUT/base"
cp -r "$MINE/src" "$OUT/br/" && cp -r "$MINE/bench/dht" "$OUT/br/bench/"
find "$OUT/br" -name __pycache__ -prune -exec rm -rf {} +
$PY -m compileall -q "$OUT/base/src" "$OUT/base/bench/dht" "$OUT/br/src" "$OUT/br/bench/dht"
# 1. Instructions of 80 joins (and of 2, the imports' and set-up's share), seeded: no load moves them.
for side in base br; do
  (cd "$OUT/$side" && PYTHONHASHSEED=0 PYTHONPATH=src:bench/dht valgrind --tool=callgrind \
     --callgrind-out-file="$OUT/cg-$side.out" $PY bench/dht/join_core.py --nodes 80 --per-node-caches \
     > "$OUT/cg-$side.txt" 2> "$OUT/cg-$side.err")
done
(cd "$OUT/base" && PYTHONHASHSEED=0 PYTHONPATH=src:bench/dht valgrind --tool=callgrind \
   --callgrind-out-file="$OUT/cg-base2.out" $PY bench/dht/join_core.py --nodes 2 --per-node-caches \
   > "$OUT/cg-base2.txt" 2> "$OUT/cg-base2.err")
grep Collected "$OUT"/cg-*.err
# 2. What a join at 1,000 nodes converts, and in how many batches.
(cd "$OUT/br" && PYTHONPATH=src:bench/dht $PY bench/dht/join_core.py --nodes 1000 --per-node-caches --account)
# 3. bench/dht's weftnet side (the whole workload, each node its own caches), main and branch alternately.
sh "$MINE/bench/results/djoin10/ab.sh" "$OUT/base/src" "$OUT/br/src" 3 1000 > "$OUT/ab1000.jsonl"
sh "$MINE/bench/results/djoin10/ab.sh" "$OUT/base/src" "$OUT/br/src" 3 500 > "$OUT/ab500.jsonl"
# 4. The simulator's digests (unchanged: d8b881b7e2554b02, 0f831ad1a4da12c7).
(cd "$MINE" && PYTHONPATH=src $PY bench/sim_digest.py small scale-1m@8000)
