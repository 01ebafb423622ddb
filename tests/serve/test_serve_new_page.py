"""POST /v1/pages/embed against slow, obviously-correct references: a full copy of the graph for the walk,
the run's whole feature tables plus one appended row for the encoder."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from serve_world import build_world

from linksage.config._load import build
from linksage.config.serve import ServeConfig
from linksage.config.walk import WalkConfig
from linksage.content.text import HashingTextEncoder
from linksage.content.urltext import text_from_url
from linksage.ingest.urls import url_host
from linksage.serve import schemas
from linksage.serve.app import create_app
from linksage.store.lance_store import EmbeddingStore
from linksage.train.features import load_page_features, page_features_from_arrays
from linksage.train.infer import PageEmbedder, load_model
from linksage.train.pairs import time_column
from linksage.train.pin_means import board_means, eligible_pins, page_means, shares_a_pin
from linksage.walk.pixie import WalkGraph, walk_pages

NEW = {
    "url": "https://brand-new.example.org/2013/06/A-Page-Nobody-Crawled?utm_source=x",
    "pins": ["p3", "p10", "p3"],  # duplicates count once
}
CANONICAL = "https://brand-new.example.org/2013/06/A-Page-Nobody-Crawled"


def reference_walk(world: Path, pins: list[int], domain: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Walks from a page appended to a rebuilt, fully validated copy of the graph."""
    graph = WalkGraph.from_dir(world / "graph")
    n = graph.counts["page"]
    rows = {"pin": pins, "domain": [] if domain is None else [domain]}
    csr = {}
    for (src, dst), (indptr, indices) in graph.csr.items():
        if src == "page":
            extra = np.asarray(rows[dst], np.int32)
            indptr = np.concatenate([np.asarray(indptr), [indptr[-1] + len(extra)]])
            indices = np.concatenate([np.asarray(indices), extra])
        csr[(src, dst)] = (np.array(indptr), np.array(indices))
    full = WalkGraph.checked({**graph.counts, "page": n + 1}, csr)
    manifest = json.loads((world / "walk" / "manifest.json").read_text())
    nbr, vis = walk_pages(full, np.array([n]), build(WalkConfig, manifest["config"]["walk"], prefix="walk."))
    return nbr[0], vis[0]


def reference_boards(world: Path, pins: list[int], slots: int) -> list[int]:
    """The new page's boards over its pins, most pins first (ties: lower board_idx), -1 padded."""
    indptr = np.load(world / "graph" / "pin__board.indptr.npy")
    indices = np.load(world / "graph" / "pin__board.indices.npy")
    counts: dict[int, int] = {}
    for q in pins:
        for b in indices[indptr[q] : indptr[q + 1]]:
            counts[int(b)] = counts.get(int(b), 0) + 1
    ranked = sorted(counts, key=lambda b: (-counts[b], b))[:slots]
    return ranked + [-1] * (slots - len(ranked))


def reference_embedding(world: Path, text: str, pins: list[int], nbr: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """The encoder over the run's whole tables with the new page appended as row n (its pin means, when the
    model reads them, computed over the whole graph with that row appended)."""
    model = load_model(world / "train")
    cfg = model.encoder.cfg
    slots = cfg.board_slots
    feats = load_page_features(world, k=model.neighbours, degree_bucket_count=model.degree_buckets, board_slots=slots)
    assert slots and feats.boards is not None and feats.board_text is not None  # the world has board tokens
    degree = len(pins)
    own = HashingTextEncoder(32).encode([text]).astype(np.float16)
    k = model.neighbours
    neighbours = np.concatenate(
        [np.load(world / "walk" / "neighbours.npy")[:, :k], np.asarray(nbr[:k], np.int32)[None]]
    )
    visits = np.concatenate([np.load(world / "walk" / "visits.npy")[:, :k], np.asarray(vis[:k], np.float32)[None]])
    indptr = np.load(world / "graph" / "page__pin.indptr.npy")
    boards = np.concatenate([feats.boards.numpy(), np.asarray([reference_boards(world, pins, slots)], np.int32)])
    means: dict[str, object] = {}
    if cfg.board_mean_dim or cfg.nbr_mean_dim:
        page_pin = (
            np.append(indptr, indptr[-1] + len(pins)),
            np.concatenate([np.load(world / "graph" / "page__pin.indices.npy"), np.asarray(pins, np.int32)]),
        )
        pin_board = (
            np.load(world / "graph" / "pin__board.indptr.npy"),
            np.load(world / "graph" / "pin__board.indices.npy"),
        )
        targets = np.load(world / "content" / "pin_target.npy")
        created = time_column(world / "ingest" / "pins.parquet", "pin_idx", "created_at", len(targets))
        eligible = eligible_pins(created, len(targets), cfg.pin_means_before)
        if cfg.board_mean_dim:
            means["board_means"] = board_means(*page_pin, *pin_board, boards, targets, eligible)
        if cfg.nbr_mean_dim:
            means["page_mean"] = page_means(*page_pin, targets, eligible)
            means["nbr_mean_ok"] = ~shares_a_pin(*page_pin, neighbours)
    appended = page_features_from_arrays(
        np.concatenate([feats.text.numpy(), own]),
        np.concatenate([np.diff(indptr), [degree]]),
        neighbours,
        visits,
        k=k,
        degree_bucket_count=model.degree_buckets,
        boards=boards,
        board_text=feats.board_text.numpy(),
        **means,  # type: ignore[arg-type]
    )
    return PageEmbedder(model, appended).embed(np.array([appended.n_pages - 1]))[0]


def test_a_new_page_is_embedded_from_its_url_and_pins(client: TestClient, world: Path) -> None:
    version = EmbeddingStore.open(world / "store").version
    body = _check_new_page(client, world)
    assert body.stored is None and EmbeddingStore.open(world / "store").version == version  # no write unless asked


@pytest.fixture(scope="module")
def means_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, TestClient]]:
    """A run whose model reads board and neighbour means, and a client over it."""
    root = tmp_path_factory.mktemp("serve-means") / "run"
    build_world(root, overrides=("train.board_means=true", "train.neighbour_means=true"))
    app = create_app(root, serve_cfg=ServeConfig(allow_store_writes=False), reload=False)
    with TestClient(app) as c:
        yield root, c


def test_a_new_page_reads_pin_means_as_a_page_of_the_run_would(means_world: tuple[Path, TestClient]) -> None:
    world, client = means_world
    cfg = load_model(world / "train").encoder.cfg
    assert cfg.board_mean_dim == 32 and cfg.nbr_mean_dim == 32
    _check_new_page(client, world)


def _check_new_page(client: TestClient, world: Path) -> schemas.EmbedOut:
    """POST ``NEW`` and compare its walk and embedding with the references."""
    r = client.post("/v1/pages/embed", json=NEW)
    assert r.status_code == 200, r.text
    body = schemas.EmbedOut.model_validate(r.json())
    assert body.url == CANONICAL and body.text_source == "url" and body.pins == 2 and not body.in_store
    assert body.dim == 32 and abs(np.linalg.norm(body.embedding) - 1.0) < 1e-5

    pin_ids = pq.read_table(world / "ingest" / "pins.parquet", columns=["pin_id"])["pin_id"].to_pylist()
    pin_idx = [pin_ids.index(p) for p in ("p3", "p10")]
    domains = pq.read_table(world / "ingest" / "domains.parquet")["domain"].to_pylist()
    domain = domains.index(url_host(CANONICAL)) if url_host(CANONICAL) in domains else None
    nbr, vis = reference_walk(world, pin_idx, domain)
    urls = pq.read_table(world / "ingest" / "pages.parquet", columns=["url"])["url"].to_pylist()
    k = load_model(world / "train").neighbours
    assert [n.url for n in body.neighbours] == [urls[i] for i in nbr[:k] if i >= 0]
    assert [n.visits for n in body.neighbours] == [float(v) for v, i in zip(vis[:k], nbr[:k], strict=True) if i >= 0]
    assert body.neighbours, "two linked pins reach some other page"

    want = reference_embedding(world, text_from_url(CANONICAL), pin_idx, nbr, vis)
    np.testing.assert_allclose(body.embedding, want, atol=2e-5)
    return body


def test_given_content_is_used_and_results_are_repeatable(client: TestClient, world: Path) -> None:
    request = {**NEW, "title": "Sourdough in five days", "body": "Flour, water and patience.", "dim": 16}
    a, b = client.post("/v1/pages/embed", json=request).json(), client.post("/v1/pages/embed", json=request).json()
    assert a == b
    assert a["text_source"] == "content" and a["dim"] == 16 and len(a["embedding"]) == 16
    plain = client.post("/v1/pages/embed", json={**NEW, "dim": 16}).json()
    assert plain["embedding"] != a["embedding"]
    # the same walk in both: only the page's own text differs
    assert plain["neighbours"] == a["neighbours"]


def test_a_page_of_the_run_is_not_its_own_neighbour(client: TestClient, world: Path) -> None:
    indptr = np.load(world / "graph" / "page__pin.indptr.npy")
    indices = np.load(world / "graph" / "page__pin.indices.npy")
    idx = int(np.argmax(np.diff(indptr)))
    url = pq.read_table(world / "ingest" / "pages.parquet", columns=["url"])["url"][idx].as_py()
    pin_ids = pq.read_table(world / "ingest" / "pins.parquet", columns=["pin_id"])["pin_id"].to_pylist()
    pins = [pin_ids[int(p)] for p in indices[indptr[idx] : indptr[idx + 1]]]
    body = client.post("/v1/pages/embed", json={"url": url, "pins": pins}).json()
    assert body["in_store"] is True
    assert url not in [n["url"] for n in body["neighbours"]]


def test_new_page_errors(client: TestClient) -> None:
    r = client.post("/v1/pages/embed", json={"url": "https://x.example.com/a", "pins": ["p1", "nope", "nada"]})
    assert r.status_code == 404 and "2 unknown pin(s): 'nope', 'nada'" in r.json()["error"]
    r = client.post("/v1/pages/embed", json={"url": "mailto:someone@example.com"})
    assert r.status_code == 422 and "not a usable page URL" in r.json()["error"]
    r = client.post("/v1/pages/embed", json={"url": "https://x.example.com/a", "dim": 20})
    assert r.status_code == 422 and "Matryoshka" in r.json()["error"]
    r = client.post("/v1/pages/embed", json={"url": "https://x.example.com/a", "day": "yesterday"})
    assert r.status_code == 422 and "ISO date" in r.json()["error"]
    r = client.post("/v1/pages/embed", json={"url": "https://x.example.com/a", "store": True})
    assert r.status_code == 403 and "allow_store_writes" in r.json()["error"]
    r = client.post("/v1/pages/embed", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["status"] == 422


def test_a_run_pages_own_pins_stay_out_of_its_pin_means_when_its_url_is_posted(
    means_world: tuple[Path, TestClient], tmp_path: Path
) -> None:
    """Posting a run page's URL with one of its pins: its other pins must not enter its means either."""
    world, client = means_world
    indptr = np.load(world / "graph" / "page__pin.indptr.npy")
    indices = np.load(world / "graph" / "page__pin.indices.npy")
    idx = int(np.argmax(np.diff(indptr)))
    own = indices[indptr[idx] : indptr[idx + 1]]
    assert len(own) >= 3
    url = pq.read_table(world / "ingest" / "pages.parquet", columns=["url"])["url"][idx].as_py()
    pin_ids = pq.read_table(world / "ingest" / "pins.parquet", columns=["pin_id"])["pin_id"].to_pylist()
    request = {"url": url, "pins": [pin_ids[int(own[0])]]}
    before = client.post("/v1/pages/embed", json=request).json()["embedding"]

    def embedding_after(changed: np.ndarray, name: str) -> list[float]:
        copy = tmp_path / name
        shutil.copytree(world, copy, ignore=shutil.ignore_patterns(".lock"))
        targets = np.load(copy / "content" / "pin_target.npy")
        targets[changed] = np.float16(3.0)
        np.save(copy / "content" / "pin_target.npy", targets)
        app = create_app(copy, serve_cfg=ServeConfig(allow_store_writes=False), reload=False)
        with TestClient(app) as c:
            return c.post("/v1/pages/embed", json=request).json()["embedding"]

    assert embedding_after(own[1:], "own") == before  # its other pins: left out
    pb_indptr = np.load(world / "graph" / "pin__board.indptr.npy")
    pb_indices = np.load(world / "graph" / "pin__board.indices.npy")
    board = pb_indices[pb_indptr[own[0]]]
    members = np.repeat(np.arange(len(pb_indptr) - 1), np.diff(pb_indptr))[pb_indices == board]
    others = np.setdiff1d(members, own)
    assert len(others)
    assert embedding_after(others, "others") != before  # other pins of its board: read (the check is live)
