#!/bin/sh
# ab.sh ONLY OUT: one run.py run, weftnet rows of NEW (ef04980) and BASE (1c89207)
cd /work/wt/dp8 && /work/main/.venv/bin/python bench/dataplane/run.py --only $1 --weft /tmp/dp8snap/ef04980/weft --baseline /tmp/dp8snap/1c89207/weft --reverse --udp-length 0 --scaling 0 --pings 0 --out $2 > $2.log 2>&1
grep "^| weftnet" $2/dataplane.md | cut -d'|' -f2,4-7,13
