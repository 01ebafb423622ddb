"""The JSON API: page embeddings, top-k pins for a page, top-k pages for a pin, new pages, browse helpers.

Each handler reads the state's snapshots once (``state.need_store()``, ``state.need_run()``) and answers
from them alone. The two hot look-ups return pre-serialised JSON (``embedding_body`` of
``linksage.serve.lookup``, ``_json``) instead of going through response-model validation; their bodies
are still documented by ``response_model``, and the tests validate them against it.
"""

# no `from __future__ import annotations` here: FastAPI must see the route annotations built inside
# `api_router` (their bounds come from the config) as objects, not as names to look up in the module
import datetime
import json
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, Response

from linksage.config.serve import ServeConfig
from linksage.serve.errors import BadInput, Conflict, Forbidden, NotFound
from linksage.serve.lookup import embedding_body
from linksage.serve.new_page import EmbeddedPage, NewPage, embed_new_page
from linksage.serve.params import canonical, check_dim, query_params, stored_row
from linksage.serve.run_view import RunSnapshot
from linksage.serve.schemas import (
    MAX_URL_CHARS,
    ContentOut,
    DetailOut,
    EmbeddingOut,
    EmbedIn,
    EmbedOut,
    ErrorOut,
    EvaluationOut,
    ImageOut,
    LinkedPin,
    NeighbourOut,
    PagesOut,
    PinsOut,
    SampleOut,
    StoredOut,
)
from linksage.serve.state import ServeState
from linksage.serve.store_view import StoreSnapshot

BODY_PREVIEW = 2_000
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (404, 409, 422, 503)}
EMBEDDING_PARAMS = [
    {
        "name": "url",
        "in": "query",
        "required": True,
        "description": "a page URL (canonicalised)",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_URL_CHARS, "title": "Url"},
    },
    {
        "name": "dim",
        "in": "query",
        "required": False,
        "description": "a Matryoshka dim; default the full size",
        "schema": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}], "title": "Dim"},
    },
]


def _json(payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")).encode(), media_type="application/json")


def _prefix(vector: np.ndarray, dim: int) -> np.ndarray:
    if dim >= len(vector):
        return vector
    prefix = vector[:dim]
    norm = np.linalg.norm(prefix)
    return prefix / norm if norm > 0 else prefix


def _same_model(store: StoreSnapshot, row: int, run: RunSnapshot) -> str:
    stored = store.model_version(row)
    if stored != run.model_version:
        raise Conflict(
            f"the page's stored embedding comes from model {stored}, but {run.root / 'train'} holds model "
            f"{run.model_version}: pins live in the current model's space; run `linksage run embed` first"
        )
    return stored


def _neighbours(run: RunSnapshot, page_idx: int, limit: int) -> list[NeighbourOut]:
    if run.walks is None or run.pages is None or limit == 0:
        return []
    neighbours, visits = run.walks
    out: list[NeighbourOut] = []
    for nbr, vis in zip(neighbours[page_idx], visits[page_idx], strict=True):
        if nbr < 0 or len(out) >= limit:
            break
        out.append(NeighbourOut(rank=len(out) + 1, url=run.pages.url(int(nbr)), visits=float(vis)))
    return out


def _linked_pins(run: RunSnapshot, page_idx: int, limit: int) -> tuple[list[LinkedPin], int]:
    if run.graph is None or run.pins is None:
        return [], 0
    indptr, indices = run.graph.edges("page", "pin")
    if page_idx + 1 >= len(indptr):
        return [], 0
    linked = indices[indptr[page_idx] : indptr[page_idx + 1]]
    pins = run.pins
    return [LinkedPin(pin_id=pins.ids[int(p)], text=pins.text[int(p)]) for p in linked[:limit]], len(linked)


def _content(run: RunSnapshot, page_idx: int) -> ContentOut:
    assert run.pages is not None
    c = run.pages.content(page_idx)
    images = [ImageOut(**img) for img in (c.get("images") or [])]
    body = c.get("body")
    return ContentOut(
        title=c.get("title"),
        description=c.get("description"),
        body=body[:BODY_PREVIEW] if body else body,
        domain=run.pages.domain(page_idx),
        first_seen=c.get("first_seen"),
        fetched_at=c.get("fetched_at"),
        images=images,
    )


def api_router(state: ServeState, cfg: ServeConfig) -> APIRouter:
    """The /v1 routes over ``state``; ``cfg`` bounds k and the new-page requests."""
    router = APIRouter(prefix="/v1", responses=ERRORS)
    Url = Annotated[str, Query(min_length=1, max_length=MAX_URL_CHARS, description="a page URL (canonicalised)")]
    K = Annotated[int, Query(ge=1, le=cfg.max_k, description="how many results")]

    @router.get(
        "/pages/embedding", response_model=EmbeddingOut, tags=["pages"], openapi_extra={"parameters": EMBEDDING_PARAMS}
    )
    async def page_embedding(request: Request) -> Response:
        """A page's stored embedding at a Matryoshka dim: its prefix, re-normalised.

        Usually answered by ``linksage.serve.lookup`` before FastAPI sees the request; this route documents
        it (parameters in ``openapi_extra``: they are parsed by ``embedding_body``, not by FastAPI's
        validation) and answers whatever the fast path declines, with the same code.
        """
        body = embedding_body(state, query_params(request.scope.get("query_string", b"")))
        return Response(body, media_type="application/json")

    @router.get("/pages/pins", response_model=PinsOut, tags=["pages"])
    def page_pins(url: Url, k: K = 20) -> Response:
        """Top-k pins for a page: ANN candidates over the pins' targets, re-ranked by exact cosine."""
        store, run = state.need_store(), state.need_run()
        canonical_url = canonical(url)
        row = stored_row(store, canonical_url, url)
        index, pins = run.need("pins_index"), run.need("pins")
        model_version = _same_model(store, row, run)
        scores, found = index.search(store.embeddings[row][None, :], k)
        hits = [
            {"rank": i + 1, "pin_id": pins.ids[int(p)], "score": float(s), "text": pins.text[int(p)]}
            for i, (s, p) in enumerate(zip(scores[0], found[0], strict=True))
            if np.isfinite(s)
        ]
        return _json(
            {
                "url": canonical_url,
                "page_id": str(int(store.page_ids[row])),
                "k": k,
                "model_version": model_version,
                "store_version": store.version,
                "pins": hits,
            }
        )

    @router.get("/pins/{pin_id}/pages", response_model=PagesOut, tags=["pins"])
    def pin_pages(pin_id: Annotated[str, Path(max_length=1_024)], k: K = 20) -> Response:
        """Top-k pages of the store for a pin, by the pin's target vector in the model's space."""
        store, run = state.need_store(), state.need_run()
        pins, model = run.need("pins"), run.need("model")
        idx = pins.rows.get(pin_id)
        if idx is None:
            raise NotFound(f"pin {pin_id[:200]!r} is not in {run.root / 'ingest' / 'pins.parquet'}")
        query = model.pin_vectors(pins.targets[idx : idx + 1])  # (1, dim)
        if query.shape[1] != store.dim:
            raise Conflict(f"the model gives {query.shape[1]}-dim vectors, the store holds {store.dim}-dim ones")
        scores, ids = store.pages_index.search(query, k)
        hits: list[dict[str, Any]] = []
        for s, pid in zip(scores[0], ids[0], strict=True):
            row = store.rows.get(int(pid)) if np.isfinite(s) else None
            if row is not None:
                hits.append({"rank": len(hits) + 1, "url": store.url(row), "page_id": str(int(pid)), "score": float(s)})
        return _json(
            {
                "pin_id": pin_id,
                "k": k,
                "model_version": run.model_version,
                "store_version": store.version,
                "pages": hits,
            }
        )

    @router.post("/pages/embed", response_model=EmbedOut, tags=["pages"], responses={403: {"model": ErrorOut}})
    def embed_page(request: EmbedIn) -> EmbedOut:
        """Embed a page the store has never seen (neighbours walked in the current graph); store it if asked."""
        run = state.need_run()
        if len(request.pins) > cfg.max_embed_pins:
            raise BadInput(f"pins: at most {cfg.max_embed_pins} pins per request, got {len(request.pins)}")
        if request.store and not cfg.allow_store_writes:
            raise Forbidden("store writes are disabled on this server (serve.allow_store_writes = false)")
        day = _day(request.day)
        model = run.need("model")
        dim = check_dim(state, request.dim, model.output_dim)
        page = embed_new_page(
            run,
            NewPage(request.url, request.title, request.description, request.body, tuple(request.pins)),
        )
        store = state.store
        in_store = store is not None and store.find(page.url) is not None
        stored = _write(state, run, page, day) if request.store else None
        pages = run.need("pages")
        neighbours = [
            NeighbourOut(rank=i + 1, url=pages.url(int(n)), visits=float(v))
            for i, (n, v) in enumerate(zip(page.neighbours, page.visits, strict=True))
            if n >= 0
        ]
        return EmbedOut(
            url=page.url,
            page_id=str(page.page_id),
            dim=dim,
            embedding=_prefix(page.embedding, dim).tolist(),
            model_version=str(run.model_version),
            in_store=in_store,
            text_source="content" if page.text_source == "content" else "url",
            pins=len(page.pins),
            domain=page.domain,
            domain_known=page.domain_known,
            neighbours=neighbours,
            stored=stored,
        )

    @router.get("/pages/detail", response_model=DetailOut, tags=["browse"])
    def page_detail(
        url: Url,
        neighbours: Annotated[int, Query(ge=0, le=cfg.max_k)] = 20,
        pins: Annotated[int, Query(ge=0, le=cfg.max_k)] = 20,
    ) -> DetailOut:
        """What the browse page shows of a page: its content, walk neighbours and linking pins."""
        canonical_url = canonical(url)
        store, run = state.store, state.run
        srow = store.find(canonical_url) if store is not None else None
        prow = run.pages.find(canonical_url) if run is not None and run.pages is not None else None
        if srow is None and prow is None:
            raise NotFound(f"page {canonical_url} (from {url[:200]!r}) is neither in the store nor in the run")
        linked, total = _linked_pins(run, prow, pins) if run is not None and prow is not None else ([], 0)
        return DetailOut(
            url=canonical_url,
            page_id=str(int(store.page_ids[srow]))
            if store is not None and srow is not None
            else _page_id(canonical_url),
            in_store=srow is not None,
            in_run=prow is not None,
            store_version=store.version if store is not None else None,
            model_version=store.model_version(srow) if store is not None and srow is not None else None,
            day=store.day(srow) if store is not None and srow is not None else None,
            content=_content(run, prow) if run is not None and prow is not None else None,
            neighbours=_neighbours(run, prow, neighbours) if run is not None and prow is not None else [],
            linked_pins=linked,
            linked_pins_total=total,
        )

    @router.get("/pages/sample", response_model=SampleOut, tags=["browse"])
    def sample_pages(
        n: Annotated[int, Query(ge=1, le=100)] = 8, seed: Annotated[int | None, Query(ge=0, le=2**32 - 1)] = None
    ) -> SampleOut:
        """A few page URLs of the store, at random (``seed`` makes it repeatable)."""
        store = state.need_store()
        rows = np.random.default_rng(seed).choice(len(store), size=min(n, len(store)), replace=False)
        return SampleOut(store_version=store.version, urls=[store.url(int(r)) for r in np.sort(rows)])

    @router.get("/evaluation", response_model=EvaluationOut, tags=["browse"])
    def evaluation() -> EvaluationOut:
        """The latest evaluation's headline numbers and plots (the browse page's histogram)."""
        run = state.need_run()
        ev = run.evaluation
        if ev is None:
            return EvaluationOut(available=False, reason=run.missing.get("evaluation", "not loaded"))
        m = ev.metrics
        hist = ev.histogram()
        return EvaluationOut(
            available=True,
            dims=[int(d) for d in m.get("dims", [])],
            ks=[int(k) for k in m.get("ks", [])],
            recall={f"recall@{k}": _floats(m.get(f"recall@{k}")) for k in m.get("ks", [])},
            mrr=_floats(m.get("mrr")),
            distributions={str(d): _floats(v) for d, v in (m.get("distributions") or {}).items()},
            histogram=f"/v1/evaluation/plots/{hist}" if hist else None,
            plots=list(ev.plots),
        )

    @router.get("/evaluation/plots/{name}", tags=["browse"], response_class=FileResponse)
    def evaluation_plot(name: Annotated[str, Path(max_length=200)]) -> FileResponse:
        """One PNG plot of the latest evaluation, by file name."""
        ev = state.need_run().need("evaluation")
        if name not in ev.plots:  # only names listed from the folder: no path ever built from the request
            raise NotFound(f"no plot {name[:200]!r}; plots are {list(ev.plots)}")
        return FileResponse(ev.folder / "plots" / name, media_type="image/png")

    return router


def _write(state: ServeState, run: RunSnapshot, page: EmbeddedPage, day: str) -> StoredOut:
    """Upsert the page's full-size embedding as one new store version; the reloader is woken to pick it up."""
    from linksage.store.lance_store import EmbeddingStore, make_batch

    model = run.need("model")
    batch = make_batch(
        np.array([page.page_id], np.int64),
        [page.url],
        page.embedding[None, :],
        str(run.model_version),
        np.array([page.content_fingerprint], np.uint64),
        np.array([page.neighbour_fingerprint], np.uint64),
        day,
    )
    with state.write_lock:
        store = EmbeddingStore.open_or_create(state.store_path, model.output_dim)
        result = store.upsert(pa.Table.from_batches([batch]), day)  # a bare RecordBatch would iterate columns
    state.wake()
    return StoredOut(version=result.version, day=day, inserted=result.inserted, updated=result.updated)


def _day(day: str | None) -> str:
    if day is None:
        return datetime.datetime.now(datetime.UTC).date().isoformat()
    try:
        return datetime.date.fromisoformat(day).isoformat()
    except ValueError:
        raise BadInput(f"day: expected an ISO date like 2013-04-01, got {day[:40]!r}") from None


def _floats(values: Any) -> dict[str, float]:
    if not isinstance(values, dict):
        return {}
    return {str(k): float(v) for k, v in values.items() if isinstance(v, int | float)}


def _page_id(canonical: str) -> str:
    from linksage.serve.ids import page_id

    return str(page_id(canonical))
