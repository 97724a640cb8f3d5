from weftnet.core.session.train import Scatter
def toggle(on, da, db):
    Scatter.MIN_SEG = 129 if on else 10**9
    if not on:
        db.driver._scatter_seg = 0
