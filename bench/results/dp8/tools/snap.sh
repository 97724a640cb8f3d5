#!/bin/sh
# snap.sh COMMIT: the tree of COMMIT (this repository) in /tmp/dp8snap/COMMIT/src and a weft wrapper for it,
# so a bench run uses fixed code while the branch moves on
rm -rf /tmp/dp8snap/$1; mkdir -p /tmp/dp8snap/$1
git -C /work/wt/dp8 archive $1 src | tar -x -C /tmp/dp8snap/$1
printf '#!/bin/sh\nPYTHONPATH=/tmp/dp8snap/%s/src exec /work/main/.venv/bin/python -m weftnet.cli.main "$@"\n' $1 > /tmp/dp8snap/$1/weft
chmod +x /tmp/dp8snap/$1/weft; echo /tmp/dp8snap/$1/weft
