#!/bin/bash
# ab.sh SCRIPT ROUNDS NAME=SRC... : alternate the builds, print each run's lines prefixed with the name
script=$1; rounds=$2; shift 2
for r in $(seq 1 $rounds); do
  for spec in "$@"; do
    name=${spec%%=*}; src=${spec#*=}
    PYTHONPATH=$src /work/main/.venv/bin/python /work/wt/pcore8/bench/results/pcore8/$script --tests /tmp/pcore8-base/tests --pings 2000 --runs 3 $EXTRA | sed "s/^/$name r$r /"
  done
done
