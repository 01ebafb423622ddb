"""The API end to end on a small run directory (TestClient over the real app, real store and indices)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from linksage.serve import schemas
from linksage.store.fingerprint import page_ids
from linksage.store.lance_store import EmbeddingStore, embedding_matrix
from linksage.train.infer import load_model


def stored_row(world: Path, url: str) -> tuple[np.ndarray, str, str]:
    store = EmbeddingStore.open(world / "store")
    row = store.get(page_ids([url]).tolist())
    assert row.num_rows == 1
    return embedding_matrix(row["embedding"], store.dim)[0], row["model_version"][0].as_py(), str(row["day"][0])


def page_with_everything(world: Path) -> tuple[int, str]:
    """A page with crawled content, walk neighbours and linking pins (the richest one to check)."""
    pages = pq.read_table(world / "ingest" / "pages.parquet", columns=["url", "title"])
    nbr = np.load(world / "walk" / "neighbours.npy")
    degree = np.diff(np.load(world / "graph" / "page__pin.indptr.npy"))
    titles = pages["title"].to_pylist()
    idx = next(i for i in np.argsort(-degree, kind="stable") if titles[i] and (nbr[i] >= 0).sum() >= 3)
    return int(idx), pages["url"][int(idx)].as_py()


def test_healthz(client: TestClient, world: Path) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    health = schemas.HealthOut.model_validate(r.json())
    assert health.status == "ok"
    assert health.store_version == EmbeddingStore.open(world / "store").version
    assert health.pages == EmbeddingStore.open(world / "store").count()
    assert health.dims == [8, 16, 32] and health.dim == 32
    assert health.missing == {}


def test_embedding_is_the_stored_prefix_renormalised(client: TestClient, world: Path) -> None:
    _, url = page_with_everything(world)
    stored, model_version, day = stored_row(world, url)
    full = client.get("/v1/pages/embedding", params={"url": url})
    assert full.status_code == 200
    body = schemas.EmbeddingOut.model_validate(full.json())
    assert body.dim == 32 and body.url == url and body.model_version == model_version and body.day == day
    assert body.page_id == str(int(page_ids([url])[0]))
    np.testing.assert_array_equal(np.asarray(body.embedding, np.float32), stored)  # bit for bit
    for dim in (8, 16):
        r = client.get("/v1/pages/embedding", params={"url": url, "dim": dim})
        got = np.asarray(r.json()["embedding"], np.float32)
        want = stored[:dim] / np.linalg.norm(stored[:dim])
        assert r.json()["dim"] == dim and got.shape == (dim,)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        assert abs(np.linalg.norm(got) - 1.0) < 1e-5


@pytest.mark.parametrize(
    "variant",
    [
        "http://www.{host}{path}",
        "HTTPS://{HOST}{path}/",
        "https://{host}:443{path}?utm_source=newsletter&utm_medium=email",
        "https://{host}{path}#section-2",
        "  https://{host}{path}  ",
    ],
)
def test_urls_are_canonicalised_before_lookup(client: TestClient, world: Path, variant: str) -> None:
    _, url = page_with_everything(world)
    host, path = url[len("https://") :].split("/", 1)
    raw = variant.format(host=host, HOST=host.upper(), path="/" + path)
    r = client.get("/v1/pages/embedding", params={"url": raw, "dim": 8})
    assert r.status_code == 200, r.text
    assert r.json()["url"] == url
    assert r.json()["embedding"] == client.get("/v1/pages/embedding", params={"url": url, "dim": 8}).json()["embedding"]


def test_top_pins_match_an_exact_search(client: TestClient, world: Path) -> None:
    _, url = page_with_everything(world)
    stored, _, _ = stored_row(world, url)
    pins = pq.read_table(world / "ingest" / "pins.parquet", columns=["pin_id", "text"])
    vectors = load_model(world / "train").pin_vectors(np.load(world / "content" / "pin_target.npy"))
    scores = vectors @ stored  # (n_pins,) exact cosines
    want = np.argsort(-scores, kind="stable")[:15]
    r = client.get("/v1/pages/pins", params={"url": url, "k": 15})
    assert r.status_code == 200
    body = schemas.PinsOut.model_validate(r.json())
    assert [h.rank for h in body.pins] == list(range(1, 16))
    assert [h.pin_id for h in body.pins] == [pins["pin_id"][int(i)].as_py() for i in want]
    np.testing.assert_allclose([h.score for h in body.pins], scores[want], atol=1e-5)
    assert body.pins[0].text == pins["text"][int(want[0])].as_py()


def test_top_pages_for_a_pin_match_an_exact_search(client: TestClient, world: Path) -> None:
    store = EmbeddingStore.open(world / "store")
    table = store.read(["url", "embedding"])
    emb = embedding_matrix(table["embedding"], store.dim)
    pin = 7
    query = load_model(world / "train").pin_vectors(np.load(world / "content" / "pin_target.npy")[pin : pin + 1])[0]
    scores = emb @ query
    want = np.argsort(-scores, kind="stable")[:10]
    pin_id = pq.read_table(world / "ingest" / "pins.parquet", columns=["pin_id"])["pin_id"][pin].as_py()
    r = client.get(f"/v1/pins/{pin_id}/pages", params={"k": 10})
    assert r.status_code == 200
    body = schemas.PagesOut.model_validate(r.json())
    assert [h.url for h in body.pages] == [table["url"][int(i)].as_py() for i in want]
    np.testing.assert_allclose([h.score for h in body.pages], scores[want], atol=1e-5)


def test_detail_shows_content_neighbours_and_linking_pins(client: TestClient, world: Path) -> None:
    idx, url = page_with_everything(world)
    pages = pq.read_table(world / "ingest" / "pages.parquet").slice(idx, 1).to_pylist()[0]
    nbr, vis = np.load(world / "walk" / "neighbours.npy")[idx], np.load(world / "walk" / "visits.npy")[idx]
    indptr, indices = (
        np.load(world / "graph" / "page__pin.indptr.npy"),
        np.load(world / "graph" / "page__pin.indices.npy"),
    )
    pin_ids = pq.read_table(world / "ingest" / "pins.parquet", columns=["pin_id"])["pin_id"].to_pylist()
    all_urls = pq.read_table(world / "ingest" / "pages.parquet", columns=["url"])["url"].to_pylist()
    r = client.get("/v1/pages/detail", params={"url": url})
    assert r.status_code == 200
    body = schemas.DetailOut.model_validate(r.json())
    assert body.in_store and body.in_run and body.content is not None
    assert body.content.title == pages["title"] and body.content.description == pages["description"]
    assert body.content.domain == url.split("/")[2]
    present = nbr >= 0
    assert [n.url for n in body.neighbours] == [all_urls[i] for i in nbr[present]]
    assert [n.visits for n in body.neighbours] == pytest.approx(vis[present].tolist())
    linked = indices[indptr[idx] : indptr[idx + 1]]
    assert body.linked_pins_total == len(linked)
    assert [p.pin_id for p in body.linked_pins] == [pin_ids[i] for i in linked[:20]]


def test_sample_is_repeatable_and_from_the_store(client: TestClient, world: Path) -> None:
    a = client.get("/v1/pages/sample", params={"n": 5, "seed": 3}).json()
    b = client.get("/v1/pages/sample", params={"n": 5, "seed": 3}).json()
    assert a == b and len(a["urls"]) == 5
    stored = set(EmbeddingStore.open(world / "store").read(["url"])["url"].to_pylist())
    assert set(a["urls"]) <= stored


def test_evaluation_and_its_histogram(client: TestClient, world: Path) -> None:
    r = client.get("/v1/evaluation")
    body = schemas.EvaluationOut.model_validate(r.json())
    assert body.available and body.dims == [8, 16, 32]
    assert set(body.recall) == {"recall@10", "recall@50", "recall@100"}
    assert body.histogram == "/v1/evaluation/plots/scores_dim32.png"
    png = client.get(body.histogram)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert client.get("/v1/evaluation/plots/metrics.json").status_code == 404
    assert client.get("/v1/evaluation/plots/..%2Fmetrics.json").status_code == 404


@pytest.mark.parametrize(
    ("path", "params", "status", "words"),
    [
        ("/v1/pages/embedding", {"url": "https://nowhere.example.com/none"}, 404, "not in the store"),
        ("/v1/pages/embedding", {"url": "not a url"}, 422, "not a usable page URL"),
        ("/v1/pages/embedding", {"url": "ftp://files.example.com/x"}, 422, "not a usable page URL"),
        ("/v1/pages/embedding", {"url": "https://a.example.com/", "dim": 12}, 422, "Matryoshka dims [8, 16, 32]"),
        ("/v1/pages/embedding", {"url": "https://a.example.com/", "dim": 0}, 422, "dim"),
        ("/v1/pages/embedding", {"url": "https://a.example.com/", "dim": "big"}, 422, "dim"),
        ("/v1/pages/embedding", {}, 422, "url"),
        ("/v1/pages/pins", {"url": "https://nowhere.example.com/none"}, 404, "not in the store"),
        ("/v1/pages/pins", {"url": "https://a.example.com/", "k": 0}, 422, "k"),
        ("/v1/pages/pins", {"url": "https://a.example.com/", "k": 1001}, 422, "k"),
        ("/v1/pins/no-such-pin/pages", {}, 404, "'no-such-pin' is not in"),
        ("/v1/pins/p1/pages", {"k": -3}, 422, "k"),
        ("/v1/pages/detail", {"url": "https://nowhere.example.com/none"}, 404, "neither in the store nor in the run"),
        ("/v1/no-such-route", {}, 404, "Not Found"),
    ],
)
def test_errors_are_json_with_a_clear_message(
    client: TestClient, path: str, params: dict[str, object], status: int, words: str
) -> None:
    r = client.get(path, params=params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = schemas.ErrorOut.model_validate(r.json())
    assert body.status == status and words in body.error


def test_oversized_bodies_get_413(client: TestClient) -> None:
    big = b'{"url": "https://a.example.com/", "body": "' + b"x" * (1 << 20) + b'"}'
    r = client.post("/v1/pages/embed", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]

    def chunks():  # no Content-Length: the body is counted as it arrives
        yield b'{"url": "https://a.example.com/", "body": "'
        for _ in range(20):
            yield b"y" * 65_536
        yield b'"}'

    r = client.post("/v1/pages/embed", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["status"] == 413


def test_openapi_spec_documents_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/v1/pages/embedding",
        "/v1/pages/pins",
        "/v1/pins/{pin_id}/pages",
        "/v1/pages/embed",
        "/v1/pages/detail",
        "/healthz",
        "/metrics",
    } <= paths
    get_pins = spec["paths"]["/v1/pages/pins"]["get"]
    k = next(p for p in get_pins["parameters"] if p["name"] == "k")
    assert k["schema"]["minimum"] == 1 and k["schema"]["maximum"] == 1000
    assert get_pins["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")


def test_metrics_count_requests_by_route_and_report_the_store_version(client: TestClient, world: Path) -> None:
    def count(text: str, route: str, status: int) -> int:
        prefix = f'linksage_requests_total{{method="GET",route="{route}",status="{status}"}} '
        return next((int(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)), 0)

    _, url = page_with_everything(world)
    before = client.get("/metrics").text
    for _ in range(3):
        client.get("/v1/pages/embedding", params={"url": url})
    client.get("/v1/pins/nobody/pages")
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = after.text
    assert count(text, "/v1/pages/embedding", 200) == count(before, "/v1/pages/embedding", 200) + 3
    assert count(text, "/v1/pins/{pin_id}/pages", 404) == count(before, "/v1/pins/{pin_id}/pages", 404) + 1
    version = EmbeddingStore.open(world / "store").version
    assert f"linksage_store_version {version}" in text.splitlines()
    assert 'linksage_request_duration_seconds_count{method="GET",route="/v1/pages/embedding"}' in text
