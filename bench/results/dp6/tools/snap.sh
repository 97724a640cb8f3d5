#!/bin/sh
# snap.sh NAME: copy /work/wt/dp6/src to /tmp/dp6snap/NAME and write a weft wrapper for it
rm -rf /tmp/dp6snap/$1; mkdir -p /tmp/dp6snap/$1; cp -r /work/wt/dp6/src /tmp/dp6snap/$1/src
find /tmp/dp6snap/$1 -name __pycache__ -prune -exec rm -rf {} \;
printf '#!/bin/sh\nPYTHONPATH=/tmp/dp6snap/%s/src exec /work/main/.venv/bin/python -m weftnet.cli.main "$@"\n' $1 > /tmp/dp6snap/$1/weft
chmod +x /tmp/dp6snap/$1/weft; echo /tmp/dp6snap/$1/weft
