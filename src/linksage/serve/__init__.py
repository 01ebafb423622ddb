"""Serving: an HTTP API (FastAPI) and a browse page over a run directory's embedding store.

- ``app``        ``create_app(run_dir, ...)``: the routes, errors, body limit and metrics middleware
- ``state``      snapshots of the store (one per version) and of the run's stages, reloaded in the background
- ``new_page``   embedding a page the store has never seen, with neighbours walked in the current graph
- ``metrics``    request counters and latency histograms in the Prometheus text format
- ``ids``        page ids of single URLs in pure Python (the same hash as ``linksage.store.fingerprint``)
- ``server``     ``serve(run_dir, host, port)``: uvicorn on the app (what ``linksage serve`` calls)

Nothing here is imported by ``import linksage``; FastAPI loads only when a server is made.
"""
