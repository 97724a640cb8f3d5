#!/bin/bash
# Alternates main and this branch in bench/dataplane/bulkcost.py (this tree's script and test harness):
# bulkcost-ab.sh ROUNDS BURST
R=${1:-4}; B=${2:-4}
for r in $(seq 1 $R); do
  if [ $((r % 2)) = 1 ]; then order="main ping9"; else order="ping9 main"; fi
  for b in $order; do
    if [ $b = main ]; then src=/work/main/src; else src=/work/wt/ping9/src; fi
    echo "round $r burst $B $b: $(PYTHONPATH=$src /work/main/.venv/bin/python /work/wt/ping9/bench/dataplane/bulkcost.py --n 2000 --burst $B 2>&1 | tail -1) (load $(cut -d' ' -f1 /proc/loadavg))"
  done
done
