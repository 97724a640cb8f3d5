from weftnet.core.session.train import Train
_orig = Train.read.__func__
def _bytes(cls, view, seg, mf, ms):
    return Train(bytes(view), seg)
def toggle(on, da, db):
    Train.read = classmethod(_orig if on else _bytes)
