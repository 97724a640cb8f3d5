#!/bin/sh
# usage: abfile.sh ROUNDS TAG : whole tests/test_paths_netns.py, main c2f5f2a and natmix2 alternately, a busy loop on one core
cd /work/wt/natmix2
for r in $(seq 1 $1); do
  for v in main fix; do
    if [ $v = main ]; then P=${MAIN_SRC:-/tmp/nm2/srcmain/src}; else P=${FIX_SRC:-/work/wt/natmix2/src}; fi
    timeout 150 /work/main/.venv/bin/python -c "while True: pass" & HOG=$!
    echo "== $v round $r $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
    PYTHONPATH=$P timeout 400 /work/main/.venv/bin/python -m pytest -q -p no:cacheprovider tests/test_paths_netns.py --basetemp=/tmp/nm2/$2-$v-$r 2>&1 | grep -E "passed|failed|^E " | head -4
    kill $HOG 2>/dev/null; wait $HOG 2>/dev/null
    grep -c '"session down"' /tmp/nm2/$2-$v-$r/sdwan0/A.log | sed 's/^/   A session downs: /'
  done
done
echo done
