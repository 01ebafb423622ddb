"""``serve(run_dir, host, port)``: the app under uvicorn, what ``linksage serve`` runs."""

from __future__ import annotations

from pathlib import Path

from linksage import log
from linksage.config import Config
from linksage.config.serve import ServeConfig
from linksage.serve.app import create_app, serve_config


def serve(
    run_dir: Path | str,
    host: str | None = None,
    port: int | None = None,
    config: Config | None = None,
    serve_cfg: ServeConfig | None = None,
) -> None:
    """Serve the run directory's store until interrupted; ``host``/``port`` override the ``serve`` config."""
    import uvicorn

    cfg = serve_cfg or serve_config(config)
    host = host or cfg.host
    port = cfg.port if port is None else port
    app = create_app(run_dir, config, cfg)
    log.event(f"[serve] browse http://{host}:{port}/browse  API docs http://{host}:{port}/docs", run=str(run_dir))
    # uvicorn picks uvloop and httptools when installed (several times h11's throughput)
    uvicorn.run(app, host=host, port=port, access_log=cfg.access_log, log_level="warning", lifespan="on")
