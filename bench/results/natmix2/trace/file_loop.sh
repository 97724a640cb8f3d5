#!/bin/sh
# usage: fileloop.sh N LOAD(0/1) TAG
cd /work/wt/natmix2
for i in $(seq 1 $1); do
  if [ "$2" = 1 ]; then timeout 120 /work/main/.venv/bin/python -c "while True: pass" & HOG=$!; fi
  echo "== run $i load=$2 $(date -u +%T) $(cat /proc/loadavg)"
  PYTHONPATH=src timeout 400 /work/main/.venv/bin/python -m pytest -q -p no:cacheprovider tests/test_paths_netns.py --basetemp=/tmp/nm2/$3-$i 2>&1 | grep -E "passed|failed|assert|Error" | head -8
  if [ "$2" = 1 ]; then kill $HOG 2>/dev/null; wait $HOG 2>/dev/null; fi
done
echo done
