"""Embed a page the store has never seen, from its URL, optional crawled content and the pins linking to it.

1. Text: ``page_text(title, description, body)``, or the URL's words when no content is given, encoded
   by the run's content-stage text encoder (its manifest's config). The page has no image tokens.
2. Neighbours: the page is appended to the current graph as one more page node, with edges to the given
   pins and to its domain (the edge rows are appended to the page-side CSRs; nothing points back to it,
   so walks never revisit it), and walked from with the walk stage's config (``walk_pages``).
3. The encoder reads a feature table of K + 1 rows (the page and its neighbours, with the neighbours'
   stored content vectors), built by the training code's own ``page_features_from_arrays``, so the
   inputs are assembled exactly as for a page of the run.

Fingerprints come from ``linksage.embed.batch.page_keys`` on the same table, so a stored row is keyed
like the embed stage would key it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from linksage.config.walk import WalkConfig
from linksage.content.text import page_text
from linksage.content.urltext import text_from_url
from linksage.ingest.urls import canonicalise, url_host
from linksage.serve.errors import BadInput, NotFound
from linksage.serve.ids import NUMBA_LOCK, page_id
from linksage.serve.run_view import RunSnapshot
from linksage.train.features import (
    PageFeatures,
    page_boards,
    page_features_from_arrays,
    run_board_means,
    run_neighbour_means,
)
from linksage.train.infer import LinkSageModel, PageEmbedder
from linksage.walk.pixie import CSR, WalkGraph, walk_pages


@dataclass(frozen=True)
class NewPage:
    url: str
    title: str | None = None
    description: str | None = None
    body: str | None = None
    pins: tuple[str, ...] = ()  # pin_ids of the pins that link to the page


@dataclass(frozen=True)
class EmbeddedPage:
    url: str  # canonical
    page_id: int
    embedding: np.ndarray  # (output_dim,) float32, unit norm: the full-size embedding
    text_source: str  # "content" or "url"
    pins: np.ndarray  # (d,) int64 pin_idx of the linking pins (deduplicated, in request order)
    domain: str
    domain_known: bool  # the domain is a node of the graph
    neighbours: np.ndarray  # (K,) int32 page_idx, -1 padded, by visits descending
    visits: np.ndarray  # (K,) float32
    content_fingerprint: int
    neighbour_fingerprint: int


def embed_new_page(run: RunSnapshot, page: NewPage) -> EmbeddedPage:
    """The page's full-size embedding and what went into it (see the module docstring)."""
    canonical, reason = canonicalise(page.url)
    if canonical is None:
        raise BadInput(f"url {page.url!r} is not a usable page URL: {reason}")
    model: LinkSageModel = run.need("model")
    pins = run.need("pins")
    pages = run.need("pages")
    graph: WalkGraph = run.need("graph")
    walk_cfg: WalkConfig = run.need("walk_cfg")

    unknown = [p for p in page.pins if p not in pins.rows]
    if unknown:
        raise NotFound(f"{len(unknown)} unknown pin(s): {', '.join(map(repr, unknown[:5]))}")
    pin_idx = np.array(list(dict.fromkeys(pins.rows[p] for p in page.pins)), dtype=np.int64)
    given = page_text(page.title, page.description, page.body)
    text = given or text_from_url(canonical)
    own_text = run.text_encoder().encode([text])  # (1, Dt)
    domain = url_host(canonical)
    domain_idx = pages.domain_rows.get(domain)

    nbr, vis = _walk(graph, walk_cfg, pin_idx, domain_idx)
    own = pages.find(canonical)
    if own is not None:  # the URL is a page of the run: it is not its own neighbour
        keep = nbr != own
        nbr, vis = _left_pack(nbr[keep], vis[keep], len(nbr))
    k = model.neighbours
    nbr, vis = _fit(nbr, vis, k)

    feats, local_urls = _features(run, model, graph, own_text, pin_idx, domain_idx, nbr, vis, own)
    embedding = PageEmbedder(model, feats).embed(np.zeros(1, np.int64))[0]  # (output_dim,)
    with NUMBA_LOCK:
        from linksage.embed.batch import page_keys

        keys = page_keys(pa.array([canonical, *local_urls], type=pa.string()), feats)
    return EmbeddedPage(
        url=canonical,
        page_id=page_id(canonical),
        embedding=embedding,
        text_source="content" if given else "url",
        pins=pin_idx,
        domain=domain,
        domain_known=domain_idx is not None,
        neighbours=nbr,
        visits=vis,
        content_fingerprint=int(keys.content_fp[0]),
        neighbour_fingerprint=int(keys.neighbour_fp[0]),
    )


def _walk(
    graph: WalkGraph, cfg: WalkConfig, pin_idx: np.ndarray, domain_idx: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Walks from a page appended to ``graph`` (see the module docstring): (neighbours (K,), visits (K,))."""
    n = graph.counts.get("page", 0)
    new_rows = {"pin": pin_idx, "domain": np.array([] if domain_idx is None else [domain_idx], np.int64)}
    csr: dict[tuple[str, str], CSR] = dict(graph.csr)
    for (src, dst), (indptr, indices) in graph.csr.items():
        if src == "page":
            row = new_rows.get(dst, np.zeros(0, np.int64)).astype(np.int32)
            csr[(src, dst)] = (
                _readonly(np.append(indptr, indptr[-1] + len(row))),
                _readonly(np.concatenate([indices, row])),
            )
    extended = WalkGraph(counts={**graph.counts, "page": n + 1}, csr=csr)
    with NUMBA_LOCK:
        nbr, vis = walk_pages(extended, np.array([n], np.int64), cfg)
    return nbr[0], vis[0]


def _features(
    run: RunSnapshot,
    model: LinkSageModel,
    graph: WalkGraph,
    own_text: np.ndarray,
    pin_idx: np.ndarray,
    domain_idx: int | None,
    nbr: np.ndarray,
    vis: np.ndarray,
    run_page: int | None = None,
) -> tuple[PageFeatures, list[str]]:
    """Feature table of K + 1 rows: row 0 the new page, rows 1.. its present neighbours, by the run's content.

    Only row 0's own tokens are read (neighbours enter as text and image), so the board and domain tables
    are filled for row 0 alone: its pins' boards and its domain, as the run's pages get them. Pin means
    leave out the given pins and, when the URL is the run's page ``run_page``, that page's pins too.
    """
    cfg = model.encoder.cfg
    content = run.root / "content"
    page_text_table = np.load(content / "page_text.npy", mmap_mode="r")
    if own_text.shape[1] != page_text_table.shape[1] or own_text.shape[1] != cfg.text_dim:
        raise BadInput(
            f"the text encoder gives {own_text.shape[1]}-dim vectors, {content / 'page_text.npy'} holds "
            f"{page_text_table.shape[1]} and the model reads {cfg.text_dim}; the run's content config changed"
        )
    present = nbr[nbr >= 0].astype(np.int64)
    m = 1 + len(present)
    text = np.concatenate([own_text.astype(np.float16), page_text_table[present]])  # (m, Dt)
    local = np.full((m, len(nbr)), -1, np.int32)
    local[0, : len(present)] = np.arange(1, m, dtype=np.int32)  # neighbours are left-packed
    visits = np.zeros((m, len(nbr)), np.float32)
    visits[0] = vis
    degrees = np.zeros(m, np.int64)
    degrees[0] = len(pin_idx)
    indptr, indices = graph.csr[("page", "pin")]
    excluded = np.asarray(pin_idx, np.int64)  # the pins that pin means leave out: the page's own
    if run_page is not None:
        excluded = np.union1d(excluded, np.asarray(indices[indptr[run_page] : indptr[run_page + 1]], np.int64))
    boards = board_text = board_means = None
    if cfg.board_slots:
        board_text = np.load(content / "board_text.npy", mmap_mode="r")
        boards = np.full((m, cfg.board_slots), -1, np.int32)
        pin_board = graph.csr[("pin", "board")]
        boards[0] = page_boards(np.array([0, len(pin_idx)]), pin_idx, *pin_board, cfg.board_slots)[0]
        if cfg.board_mean_dim:  # row 0's board means, its own pins left out, as the run's pages get them
            own = np.array([0, len(excluded)]), excluded
            targets, eligible, totals = run.pin_means_inputs(cfg.pin_means_before)
            row0 = run_board_means(
                run.root, own, pin_board, boards[:1], cfg.pin_means_before, (targets, eligible), totals
            )
            at = np.full((m, cfg.board_slots), -1, np.int32)
            at[:1] = row0.at
            board_means = dataclasses.replace(row0, at=at)  # rows 1.. are neighbours: their boards are not read
    page_mean = nbr_ok = None
    if cfg.nbr_mean_dim:  # row 0's neighbours' pin means, none that shares a pin with it, as in the run
        rows = [excluded] + [np.asarray(indices[indptr[p] : indptr[p + 1]], np.int64) for p in present]
        csr = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64), np.concatenate(rows)
        targets, eligible, _ = run.pin_means_inputs(cfg.pin_means_before)
        page_mean, nbr_ok = run_neighbour_means(run.root, csr, local, cfg.pin_means_before, (targets, eligible))
    domain = None
    if cfg.n_domains:
        domain = np.full(m, -1, np.int32)
        if domain_idx is not None:
            domain[0] = domain_idx
    image = has_image = tokens = token_mask = None
    if cfg.image_dim:
        image = np.zeros((m, cfg.image_dim), np.float16)
        image[1:] = np.load(content / "page_image.npy", mmap_mode="r")[present]
        has_image = np.zeros(m, bool)
        has_image[1:] = np.load(content / "page_has_image.npy", mmap_mode="r")[present]
        tokens = np.zeros((m, cfg.image_slots, cfg.image_dim), np.float16)  # only row 0's are read: no images
        token_mask = np.zeros((m, cfg.image_slots), bool)
    feats = page_features_from_arrays(
        text,
        degrees,
        local,
        visits,
        image=image,
        has_image=has_image,
        image_tokens=tokens,
        image_token_mask=token_mask,
        k=len(nbr),
        degree_bucket_count=model.degree_buckets,
        boards=boards,
        board_text=board_text,
        board_means=board_means,
        page_mean=page_mean,
        nbr_mean_ok=nbr_ok,
        domain=domain,
    )
    pages = run.need("pages")
    return feats, [pages.url(int(i)) for i in present]


def _fit(nbr: np.ndarray, vis: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` neighbour slots (padded with -1 / 0 when the walk kept fewer)."""
    out_n, out_v = np.full(k, -1, np.int32), np.zeros(k, np.float32)
    m = min(k, len(nbr))
    out_n[:m], out_v[:m] = nbr[:m], vis[:m]
    return out_n, out_v


def _left_pack(nbr: np.ndarray, vis: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    out_n, out_v = np.full(k, -1, np.int32), np.zeros(k, np.float32)
    out_n[: len(nbr)], out_v[: len(vis)] = nbr, vis
    return out_n, out_v


def _readonly(a: np.ndarray) -> np.ndarray:
    """Read-only, as ``WalkGraph.checked`` leaves its arrays: numba then reuses one compiled specialisation."""
    a.flags.writeable = False
    return a
