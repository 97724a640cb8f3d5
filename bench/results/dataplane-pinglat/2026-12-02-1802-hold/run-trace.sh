#!/bin/sh
# pingtrace and passcost --idle-ms 10, alternated without and with a CPU wake-up latency of 0 held
cd /work/main
OUT=$1  # sh run-trace.sh OUT, as root from the checkout
for i in 1 2; do
  for mode in none hold; do
    hp=""
    if [ $mode = hold ]; then
      python3 -c "import os,struct,time; fd=os.open('/dev/cpu_dma_latency', os.O_WRONLY); os.write(fd, struct.pack('i',0)); time.sleep(3600)" &
      hp=$!; sleep 1
    fi
    echo "== pingtrace, run $i, $mode ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))" >> $OUT/pingtrace.txt
    python3 bench/dataplane/pingtrace.py --pings 250 --weft .venv/bin/weft >> $OUT/pingtrace.txt 2>&1
    echo "== passcost --idle-ms 10, run $i, $mode ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))" >> $OUT/passcost-idle.txt
    .venv/bin/python bench/dataplane/passcost.py --pings 300 --idle-ms 10 >> $OUT/passcost-idle.txt 2>&1
    [ -n "$hp" ] && kill $hp
  done
done
echo finished >> $OUT/passcost-idle.txt
