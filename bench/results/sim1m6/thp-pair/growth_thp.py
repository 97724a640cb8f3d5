"""Run bench/sim_join_growth.py with the simulator's heap collapsed into huge pages as it grows (SIM_THP=1)."""
import os, runpy, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if os.environ.get("SIM_THP") == "1":
    import thp
    from weftnet.sim import engine
    orig = engine.Simulation._next_window
    state = {"rss": 0, "passes": 0}
    def statm():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    def nw(self):
        r = statm()
        if r - state["rss"] >= 32 << 20:
            state["rss"] = r
            state["passes"] += 1
            thp.collapse()
        return orig(self)
    engine.Simulation._next_window = nw
    import atexit
    atexit.register(lambda: print("thp passes", state["passes"], open("/proc/self/smaps_rollup").read(), file=sys.stderr))
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
