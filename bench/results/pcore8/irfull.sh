#!/bin/bash
# irping.sh NAME=SRC... : callgrind instructions per ping of fullpass.py (difference of 1,100 and 100 pings)
for spec in "$@"; do
  name=${spec%%=*}; src=${spec#*=}
  for n in 100 1100; do
    ir=$(PYTHONPATH=$src valgrind --tool=callgrind --callgrind-out-file=/dev/null /work/main/.venv/bin/python /work/wt/pcore8/bench/results/pcore8/fullpass.py --tests /tmp/pcore8-base/tests --pings $n --runs 1 2>&1 | grep "Collected" | awk '{print $4}' | tr -d ,)
    echo "$name $n $ir"
  done
done
