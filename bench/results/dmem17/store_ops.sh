#!/bin/sh
# Instructions per call of each record path (store_ops.py) under callgrind, for each tree given:
#   sh bench/results/dmem17/store_ops.sh RECORDS TREE_SRC...
N=$1; shift
HERE=$(cd "$(dirname "$0")" && pwd)
for src in "$@"; do
  prev=
  for k in 0 1 2 3 4 5 6; do
    c=$(PYTHONHASHSEED=0 PYTHONPATH=$src valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        /work/main/.venv/bin/python "$HERE/store_ops.py" --records "$N" --upto $k 2>&1 | sed -n 's/.*Collected : //p')
    if [ -n "$prev" ]; then echo "$src records=$N phase=$k instructions=$((c - prev))"; fi
    prev=$c
  done
done
