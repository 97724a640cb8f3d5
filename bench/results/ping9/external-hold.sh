#!/bin/bash
cd /work/wt/ping9
for i in 1 2 3; do
  for mode in off on; do
    if [ $mode = on ]; then python3 /tmp/ping9/hold.py 0 & H=$!; sleep 0.5; fi
    echo "=== iter $i mode $mode load $(cut -d' ' -f1 /proc/loadavg)"
    python3 bench/dataplane/pinglat.py --only weftnet,wireguard-go --rounds 2 --weft /work/main/.venv/bin/weft --out /tmp/ping9/exp1-$i-$mode 2>&1 | grep round
    if [ $mode = on ]; then kill $H; wait $H; fi
  done
done
