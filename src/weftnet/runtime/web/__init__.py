"""The daemon's HTTP side: the Prometheus endpoint and the live dashboard (aiohttp).

``server.HttpEndpoints`` owns the listeners (one per configured address,
re-made on reload); ``dashboard.Dashboard`` samples the node once a second,
keeps bounded histories (throughput, RTT per peer) and pushes snapshots to
browsers over server-sent events. Static files (plain HTML, JS and SVG, no
build step) are in ``static/``.
"""
