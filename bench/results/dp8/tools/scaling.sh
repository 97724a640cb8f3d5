#!/bin/sh
# sc.sh WEFT OUT: weftnet row + scaling (1 and 2 workers, iperf3 -P 4), TCP both ways and UDP
cd /work/wt/dp8 && /work/main/.venv/bin/python bench/dataplane/run.py --only weftnet --weft $1 --reverse --udp-length 1200 --scaling 4 --pings 0 --seconds 8 --out $2 > $2.log 2>&1
