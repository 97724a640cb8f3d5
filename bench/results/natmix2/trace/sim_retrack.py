"""tests/test_paths_netns.py's lab in the simulator (links isp1, isp2 and c; 5% loss into B): A closes its session
with B before a 7 s duplicate-class stream (as the overlay plane does for a peer it finds dead)."""
import sys
sys.path.insert(0, "tests")
from weftnet.core.paths.config import ClassSpec
from weftnet.sim.paths import PathLab, Impairment
from test_paths import _by_isp

def run(seed, close=True, reach=True):
    critical = ClassSpec("critical", proto=17, dport=((6000, 6000),), policy="duplicate", links=("isp1", "isp2"))
    lab = PathLab(seed)
    lab.net.routable = _by_isp
    for name, i in (("A", 1), ("B", 2)):
        lab.node(name, {"isp1": f"10.1.0.{i}", "isp2": f"10.2.0.{i}", "c": f"10.{2 + i}.0.{i}"}, classes=(critical,), reach=reach,
                 costs={"isp1": 1, "isp2": 10, "c": 50})
    lab.mesh()
    lab.stream("A", "B", 3.0)
    lab.net.impair(Impairment(lambda s, d: d[0] in ("10.1.0.2", "10.2.0.2"), loss=0.05))
    lab.stream("A", "B", 2.0, rate=50, start_seq=5000)
    a, b = lab.cores["A"], lab.cores["B"]
    if close:
        a.transport.close(b.node_id, lab.net.now)   # as the overlay plane does for a peer it found dead
        lab.drain()
    n = lab.stream("A", "B", 7.0, rate=100, dport=6000, start_seq=10_000)
    got = lab.received("B", "A", 6000)
    st = a.paths.status(lab.net.now)
    cls = st["classes"][0]
    return 1 - len(got) / n, cls["duplicated"], cls["links"], st["stats"]["probes_unpaid"]

if __name__ == "__main__":
    # usage (from the repository root): PYTHONPATH=src python bench/results/natmix2/trace/sim_retrack.py FIRST LAST
    # one line per seed: duplicate class loss, packets duplicated (of 700), probes refused as unpaid
    for s in range(int(sys.argv[1]), int(sys.argv[2])):
        r = run(s, close=True)
        print(s, round(r[0], 4), r[1], r[3], flush=True)
