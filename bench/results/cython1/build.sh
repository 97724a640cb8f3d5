#!/bin/sh
# The two compiled trees of bench/results/cython1 (README.md), from a commit's src/, with Cython 3.3.0
# (pip install cython==3.3.0 into the venv; gcc and Python.h needed). Annotations are not read as C
# types (annotation_typing=False): the modules are compiled as the plain Python they are.
#   sh build.sh COMMIT OUT_DIR
set -eu
COMMIT=$1; OUT=$2
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
CY=${CY:-$REPO/.venv/bin/cythonize}
for t in cy cyd; do
  rm -rf "$OUT/$t"; mkdir -p "$OUT/$t"
  git -C "$REPO" archive "$COMMIT" src | tar -x -C "$OUT/$t"
done
# the ping's path: TUN and UDP drivers, the VPN plane, network and firewall, the session transport
cd "$OUT/cy/src"
$CY -i -3 -j 2 -q -X annotation_typing=False weftnet/runtime/tun.py weftnet/runtime/driver.py \
  weftnet/core/vpn/plane.py weftnet/core/vpn/network.py weftnet/core/vpn/firewall.py \
  weftnet/core/session/transport.py weftnet/core/session/replay.py weftnet/core/session/ciphers.py
# the DHT node: every module bench/dht's workload runs (core/dht/events.py does not build: gcc
# rejects a zero-width bit-field Cython emits for it, so it stays Python)
cd "$OUT/cyd/src"
$CY -i -3 -j 2 -q -X annotation_typing=False weftnet/core/dht/*.py weftnet/core/node.py \
  weftnet/core/session/*.py weftnet/core/wire.py weftnet/core/contact.py weftnet/core/identity.py \
  weftnet/core/limits.py weftnet/core/counters.py weftnet/runtime/driver.py || true
