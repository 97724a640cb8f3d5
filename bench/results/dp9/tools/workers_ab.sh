#!/bin/sh
# workers_ab.sh OUT ROUNDS: underload.py with two workers and four streams, dp9's build and main's
# alternated (new first in odd rounds, base first in even ones), each run's line with the load
cd /work/wt/dp9
for r in $(seq 1 $2); do
  if [ $((r % 2)) = 1 ]; then order="03635c3 a9172d6"; else order="a9172d6 03635c3"; fi
  for c in $order; do
    printf "round %s build %s %s: " $r $c "$(date -u +%H:%M:%S)" >> $1
    /work/main/.venv/bin/python bench/dataplane/underload.py --weft /tmp/dp9snap/$c/weft --workers 2 --parallel 4 --seconds 8 2>&1 | tail -1 >> $1
  done
done
