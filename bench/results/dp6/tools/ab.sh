#!/bin/sh
# ab.sh NEW BASE OUT: one run, weftnet (NEW) and weftnet-baseline (BASE)
cd /work/main && .venv/bin/python bench/dataplane/run.py --only weftnet,weftnet-baseline --baseline $2 --weft $1 --reverse --udp-length 0 --scaling 0 --pings 0 --out $3 > $3.log 2>&1
grep "^| weftnet" $3/dataplane.md | cut -d'|' -f2,4-7,13
