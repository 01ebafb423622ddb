"""``GET /v1/pages/embedding`` without FastAPI: the hot look-up as one small ASGI handler.

Profiled under load, FastAPI's side of a look-up (its middleware stack, routing, dependency solving,
``Request`` and ``Response`` objects) took about two thirds of the server's CPU per answer, more than the
look-up itself. So ``linksage.serve.app.LinksageApp`` hands every plain look-up (GET, no body, no root
path) to ``EmbeddingLookup`` before FastAPI sees the request. The FastAPI route of the same path stays:
it documents the endpoint in the OpenAPI spec, answers whatever the fast path declines (another method,
a request with a body), and answers every look-up when ``serve.fast_lookup = false``. Both dispatches
build their answer with ``embedding_body`` and their errors with ``error_answer``, and the tests check
that they give the same bytes.

The body is written directly: the float32 values with ``%.9g`` (nine significant digits print every
float32 exactly), one ``%`` operation per vector with a format string kept per dim.
"""

from __future__ import annotations

import json
import logging
import time
from functools import lru_cache

from linksage.errors import LinksageError
from linksage.serve.errors import ServeError
from linksage.serve.metrics import Receive, Registry, Scope, Send
from linksage.serve.params import canonical, check_dim, int_param, query_params, stored_row, url_param
from linksage.serve.state import ServeState

EMBEDDING_PATH = "/v1/pages/embedding"
JSON_TYPE = (b"content-type", b"application/json")
_EMBEDDING_JSON = '{"url":%s,"page_id":"%d","dim":%d,"embedding":[%s],"model_version":%s,"day":"%s","store_version":%d}'
_BODY_HEADERS = (b"content-length", b"transfer-encoding")
logger = logging.getLogger("linksage")


@lru_cache(maxsize=64)
def _floats_format(dim: int) -> str:
    return ",".join(["%.9g"] * dim)


@lru_cache(maxsize=256)
def _json_string(text: str) -> str:
    return json.dumps(text)


def embedding_body(state: ServeState, query: dict[str, str]) -> bytes:
    """The JSON answer of a look-up (``EmbeddingOut``); a ``ServeError`` for a bad request or unknown page.

    Checks run in this order, so an answer names the first problem: url present, store loaded, dim,
    URL usable, page stored.
    """
    url = url_param(query)
    store = state.need_store()
    dim = check_dim(state, int_param(query, "dim", None, 1, None), store.dim)
    canonical_url = canonical(url)
    row = stored_row(store, canonical_url, url)
    body = _EMBEDDING_JSON % (
        json.dumps(canonical_url),
        int(store.page_ids[row]),
        dim,
        _floats_format(dim) % tuple(store.vector(row, dim).tolist()),
        _json_string(store.model_version(row)),
        store.day(row),
        store.version,
    )
    return body.encode()


def error_body(status: int, message: str) -> bytes:
    """``{"error": ..., "status": ...}`` exactly as Starlette's ``JSONResponse`` renders it."""
    payload = {"error": message, "status": status}
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def error_answer(exc: Exception) -> tuple[int, str]:
    """Status and message the API answers for an exception (a ``ServeError`` carries its own status)."""
    if isinstance(exc, ServeError):
        return exc.status, str(exc)
    if isinstance(exc, LinksageError):
        logger.error("serve: %s", exc)
        return 500, str(exc)
    logger.exception("serve: unexpected error", exc_info=exc)
    return 500, f"internal error: {type(exc).__name__}"


class EmbeddingLookup:
    """Answers ``GET /v1/pages/embedding`` as a bare ASGI handler and counts it in the metrics registry."""

    def __init__(self, state: ServeState, registry: Registry) -> None:
        self.state = state
        self.registry = registry

    @staticmethod
    def handles(scope: Scope) -> bool:
        """A plain look-up: anything else (a body, another method, a root path) goes the FastAPI way."""
        if scope["type"] != "http" or scope["path"] != EMBEDDING_PATH or scope["method"] != "GET":
            return False
        if scope.get("root_path"):
            return False
        return not any(name in _BODY_HEADERS for name, _ in scope["headers"])

    def answer(self, query_string: bytes) -> tuple[int, bytes]:
        try:
            return 200, embedding_body(self.state, query_params(query_string))
        except Exception as exc:  # every error is a JSON answer, as FastAPI's handlers give it
            status, message = error_answer(exc)
            return status, error_body(status, message)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = 500
        try:
            status, body = self.answer(scope["query_string"])
            headers = [(b"content-length", b"%d" % len(body)), JSON_TYPE]  # Starlette's order
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            self.registry.observe("GET", EMBEDDING_PATH, status, time.perf_counter() - start)
