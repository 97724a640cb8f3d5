#!/bin/sh
# usage: perfstat.sh WEFT OUT  -- run the weftnet row (A->B) and count the daemons' system calls for 6 s
cd /work/main
.venv/bin/python bench/dataplane/run.py --only weftnet --weft $1 --udp-length 0 --scaling 0 --pings 0 --seconds 12 --out $2 > $2.log 2>&1 &
for i in $(seq 1 90); do sleep 1; I=$(pgrep -x iperf3 | wc -l); if [ "$I" -ge 2 ]; then break; fi; done
sleep 3
for P in $(pgrep -f "weft.* --state-dir /tmp/dp-.*/weftnet/s[ab] up"); do
  echo "pid $P $(tr '\0' ' ' < /proc/$P/cmdline | grep -o 's[ab] up')"
  perf stat -x, -e syscalls:sys_enter_read,syscalls:sys_enter_recvmsg,syscalls:sys_enter_sendmsg,syscalls:sys_enter_writev,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_pwait2,context-switches,task-clock -p $P -- sleep 5 2>&1 &
done
wait
tail -2 $2.log
