import importlib.util, sys
import weftnet.core.session.train as T
import weftnet.core.session.transport as TR
spec = importlib.util.spec_from_file_location("old_train", "/work/main/src/weftnet/core/session/train.py")
old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
new_cut, new_join = T.cut, T.join
def toggle(on, da, db):
    TR.cut = new_cut if on else old.cut
    T.join = new_join if on else old.join
