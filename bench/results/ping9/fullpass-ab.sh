#!/bin/bash
# Alternates main and this branch in pcore8's fullpass.py (the daemon's callbacks whole, warm, on loopback):
# fullpass-ab.sh ROUNDS  (order flipped every round)
R=${1:-6}
for r in $(seq 1 $R); do
  if [ $((r % 2)) = 1 ]; then order="main ping9"; else order="ping9 main"; fi
  for b in $order; do
    if [ $b = main ]; then src=/work/main/src; else src=/work/wt/ping9/src; fi
    echo "round $r $b: $(PYTHONPATH=$src /work/main/.venv/bin/python /work/wt/ping9/bench/results/pcore8/fullpass.py --tests /work/main/tests --pings 1000 --runs 1 2>&1 | tail -1)"
  done
done
