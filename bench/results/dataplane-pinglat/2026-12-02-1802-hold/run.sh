#!/bin/sh
# pinglat runs alternated without and with a process that holds a CPU wake-up latency of 0 on
# /dev/cpu_dma_latency (PM QoS: the idle governor then polls instead of halting the CPU), as root from
# the checkout. Each run writes OUT/PAIR-MODE/pinglat.{md,json}; OUT/poll.txt has the time the CPUs
# spent in the cpuidle POLL state during each run (µs, both CPUs).
#   sh run.sh OUT PAIRS [pinglat arguments...]
# here: sh run.sh OUT 4 --rounds 2;  the 1 s run: sh run.sh OUT 2 --rounds 1 --pings 60 --interval 1
OUT=$1; PAIRS=$2; shift 2
mkdir -p "$OUT"
i=1
while [ "$i" -le "$PAIRS" ]; do
  for mode in none hold; do
    hp=""
    if [ $mode = hold ]; then
      python3 -c "import os,struct,time; fd=os.open('/dev/cpu_dma_latency', os.O_WRONLY); os.write(fd, struct.pack('i',0)); time.sleep(3600)" &
      hp=$!; sleep 1
    fi
    p0=$(cat /sys/devices/system/cpu/cpu*/cpuidle/state0/time | paste -sd+ | bc)
    python3 bench/dataplane/pinglat.py --only wireguard-go,weftnet "$@" --weft .venv/bin/weft \
      --out "$OUT/$i-$mode" > "$OUT/$i-$mode.log" 2>&1
    p1=$(cat /sys/devices/system/cpu/cpu*/cpuidle/state0/time | paste -sd+ | bc)
    echo "$i $mode poll_us=$((p1-p0))" >> "$OUT/poll.txt"
    [ -n "$hp" ] && kill $hp
  done
  i=$((i + 1))
done
