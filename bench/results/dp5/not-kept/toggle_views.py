def toggle(on, da, db):
    db.core.transport.open_views = bool(on)
    da.core.transport.open_views = bool(on)
