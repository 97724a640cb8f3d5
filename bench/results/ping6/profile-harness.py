import os, sys, subprocess, tempfile, time, shutil
from pathlib import Path
sys.path.insert(0, "/work/wt/ping6/bench/dataplane")
from netns import Topology
from systems import Weftnet
work = Path(tempfile.mkdtemp(prefix="ping6prof-"))
try:
    s = Weftnet(Path(sys.argv[1]))
    with Topology(work, prefix=f"pp{os.getpid()}") as topo:
        ov = s.setup(topo, work)
        b_pid, a_pid = topo.pids()[:2]
        time.sleep(2)
        ping = subprocess.Popen(["ip", "netns", "exec", topo.ns("a"), "ping", "-q", "-i", "0.01", "-c", "1500", ov.server], stdout=subprocess.DEVNULL)
        time.sleep(0.3)
        subprocess.run(["perf", "record", "-q", "-F", "20000", "-g", "-o", sys.argv[2], "-p", f"{a_pid},{b_pid}", "--", "sleep", "12"], check=True)
        ping.wait()
finally:
    shutil.rmtree(work, ignore_errors=True)
