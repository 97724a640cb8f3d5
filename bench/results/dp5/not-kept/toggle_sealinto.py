
import weftnet.core.session.transport as t
def toggle(on, da, db):
    t._SEAL_INTO = bool(on)
