"""The FastAPI application: API routes, browse page, health, Prometheus metrics, JSON errors, body limit.

    app = create_app("runs/demo")          # uvicorn.run(app) or TestClient(app)

Startup loads the store's newest version and the run's stages (``ServeState.refresh``) and starts the
background reloader; shutdown stops it. Every error is a JSON body ``{"error": ..., "status": ...}``.
Plain embedding look-ups skip FastAPI altogether (``LinksageApp``, ``linksage.serve.lookup``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from linksage import __version__
from linksage.config import Config
from linksage.config.serve import ServeConfig
from linksage.errors import LinksageError
from linksage.serve.errors import ServeError
from linksage.serve.limits import BodyLimitMiddleware
from linksage.serve.lookup import EmbeddingLookup, error_answer
from linksage.serve.metrics import MetricsMiddleware, Receive, Registry, Scope, Send
from linksage.serve.params import model_dims
from linksage.serve.routes import api_router
from linksage.serve.schemas import HealthOut
from linksage.serve.state import ServeState

STATIC = Path(__file__).parent / "static"


class LinksageApp(FastAPI):
    """FastAPI, but a plain ``GET /v1/pages/embedding`` goes straight to ``embedding_lookup`` when it is set.

    Checked before FastAPI's own ``__call__``, so the look-up pays for none of its middleware stack, routing
    or request objects; everything else (and the look-ups it declines) is FastAPI's as usual.
    """

    embedding_lookup: EmbeddingLookup | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lookup = self.embedding_lookup
        if lookup is not None and lookup.handles(scope):
            await lookup(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def serve_config(config: Config | None) -> ServeConfig:
    """The root config's ``serve`` section when it has one, else the defaults."""
    section = getattr(config, "serve", None)
    return section if isinstance(section, ServeConfig) else ServeConfig()


def create_app(
    run_dir: Path | str, config: Config | None = None, serve_cfg: ServeConfig | None = None, *, reload: bool = True
) -> LinksageApp:
    """The app over ``run_dir`` (its store at ``config.store.path``, default <run_dir>/store).

    ``reload=False`` loads once at startup and never checks for new versions (tests that drive
    ``app.state.linksage.refresh()`` themselves).
    """
    config = config or Config()
    cfg = serve_cfg or serve_config(config)
    state = ServeState(run_dir, config.store, cfg)
    registry = Registry()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.refresh()
        if reload:
            state.start()
        try:
            yield
        finally:
            state.stop()

    app = LinksageApp(
        title="linksage",
        version=__version__,
        summary="Landing-page embeddings: look-ups, top-k pins and pages, new pages, browse.",
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},  # /metrics is ours; no per-request probe
    )
    app.state.linksage = state
    app.state.metrics = registry
    app.embedding_lookup = EmbeddingLookup(state, registry) if cfg.fast_lookup else None
    app.include_router(api_router(state, cfg))
    _add_service_routes(app, state, registry)
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.max_body_bytes)
    app.add_middleware(MetricsMiddleware, registry=registry)  # added last = outermost: it sees every answer
    return app


def _add_service_routes(app: FastAPI, state: ServeState, registry: Registry) -> None:
    @app.get("/healthz", response_model=HealthOut, tags=["service"], responses={503: {"model": HealthOut}})
    def healthz() -> JSONResponse:
        """200 once a store version is loaded and serving; 503 before (the body says why)."""
        store, run = state.store, state.run
        model_version = run.model_version if run is not None else None
        body = HealthOut(
            status="ok" if store is not None else "unavailable",
            run_dir=str(state.run_dir),
            store=str(state.store_path),
            store_version=store.version if store is not None else None,
            pages=len(store) if store is not None else 0,
            dim=store.dim if store is not None else None,
            model_version=model_version,
            dims=list(model_dims(state)),
            missing=dict(run.missing) if run is not None else {},
            reloads=state.reloads,
            reload_errors=state.reload_errors,
            last_error=state.last_error,
        )
        return JSONResponse(body.model_dump(), status_code=200 if store is not None else 503)

    @app.get("/metrics", response_class=PlainTextResponse, tags=["service"])
    def metrics() -> PlainTextResponse:
        """Prometheus text format: requests by route and status, latency histograms, the store's version."""
        store = state.store
        extra: list[tuple[str, str, str, float]] = [
            ("linksage_store_version", "gauge", "Store version being served (0: none).", store.version if store else 0),
            ("linksage_store_pages", "gauge", "Pages in the served store version.", len(store) if store else 0),
            (
                "linksage_store_load_seconds",
                "gauge",
                "Seconds the served version took to load.",
                store.load_s if store else 0,
            ),
            ("linksage_reloads_total", "counter", "Snapshots replaced since start.", state.reloads),
            ("linksage_reload_errors_total", "counter", "Failed reload attempts since start.", state.reload_errors),
        ]
        return PlainTextResponse(registry.render(extra), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/browse")

    @app.get("/browse", include_in_schema=False)
    def browse() -> FileResponse:
        return FileResponse(STATIC / "browse.html", media_type="text/html")


def _add_error_handlers(app: FastAPI) -> None:
    def error(status: int, message: str, detail: list[dict[str, Any]] | None = None) -> JSONResponse:
        body: dict[str, Any] = {"error": message, "status": status}
        if detail is not None:
            body["detail"] = detail
        return JSONResponse(body, status_code=status)

    @app.exception_handler(ServeError)
    async def serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return error(*error_answer(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [_validation_entry(e) for e in exc.errors()]
        message = "; ".join(f"{d['where']}: {d['msg']}" for d in detail) or "invalid request"
        return error(422, message, detail)

    @app.exception_handler(LinksageError)
    async def linksage_error(_: Request, exc: LinksageError) -> JSONResponse:
        return error(*error_answer(exc))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return error(*error_answer(exc))


def _validation_entry(err: Any) -> dict[str, Any]:
    loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body")]
    value = err.get("input")
    shown = value if isinstance(value, str | int | float | bool) or value is None else repr(value)
    if isinstance(shown, str) and len(shown) > 200:
        shown = shown[:197] + "..."
    return {"where": ".".join(loc) or "request", "msg": str(err.get("msg", "")), "input": shown}
