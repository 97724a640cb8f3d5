#!/bin/bash
set -e
A=p9na$$; B=p9nb$$
ip netns add $A; ip netns add $B
trap "ip netns del $A; ip netns del $B" EXIT
ip link add v9a netns $A type veth peer name v9b netns $B
ip -n $A addr add 10.99.0.1/24 dev v9a; ip -n $B addr add 10.99.0.2/24 dev v9b
ip -n $A link set v9a up; ip -n $B link set v9b up; ip -n $A link set lo up; ip -n $B link set lo up
probe() {
ip netns exec $B python3 - <<'PY' &
import socket
s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.99.0.2",7000)); s.settimeout(5)
s.recvfrom(100); print("  SO_INCOMING_NAPI_ID", s.getsockopt(socket.SOL_SOCKET, 56))
PY
sleep 0.5
ip netns exec $A python3 -c 'import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.sendto(b"x",("10.99.0.2",7000))'
wait
}
echo "veth as the bench makes it:"; probe
cat /proc/sys/net/core/busy_poll /proc/sys/net/core/busy_read
