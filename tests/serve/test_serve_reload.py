"""New store versions are picked up without a restart; writes through the API; the model-version guard."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fastapi.testclient import TestClient

from linksage.config.serve import ServeConfig
from linksage.serve.app import create_app
from linksage.store.commands import store_restore
from linksage.store.fingerprint import page_ids
from linksage.store.lance_store import EmbeddingStore, embedding_matrix, make_batch


def wait_for(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, "the server did not pick up the change in time"
        time.sleep(0.1)


def first_page(world: Path) -> str:
    return str(pq.read_table(world / "ingest" / "pages.parquet", columns=["url"])["url"][0].as_py())


def rewrite(
    world: Path, url: str, vector: np.ndarray, model_version: str | None = None, day: str = "2013-07-01"
) -> int:
    """Upsert one row as the embed stage of a later day would (a new store version)."""
    store = EmbeddingStore.open(world / "store")
    old = store.get(page_ids([url]).tolist())
    batch = make_batch(
        page_ids([url]),
        [url],
        vector[None, :].astype(np.float32),
        model_version or old["model_version"][0].as_py(),
        np.array([1], np.uint64),
        np.array([2], np.uint64),
        day,
    )
    return store.upsert(pa.Table.from_batches([batch]), day).version


def test_a_new_store_version_is_served_without_a_restart(world_copy: Path) -> None:
    url = first_page(world_copy)
    app = create_app(world_copy, serve_cfg=ServeConfig(reload_interval_s=0.2))
    with TestClient(app) as client:
        before = client.get("/v1/pages/embedding", params={"url": url}).json()
        vector = np.random.default_rng(0).normal(size=len(before["embedding"])).astype(np.float32)
        vector /= np.linalg.norm(vector)
        version = rewrite(world_copy, url, vector)
        assert version == before["store_version"] + 1

        wait_for(lambda: client.get("/healthz").json()["store_version"] == version)
        after = client.get("/v1/pages/embedding", params={"url": url}).json()
        assert after["store_version"] == version and after["day"] == "2013-07-01"
        np.testing.assert_array_equal(np.asarray(after["embedding"], np.float32), vector)
        assert "linksage_store_version " + str(version) in client.get("/metrics").text

        restored = store_restore(world_copy, before["store_version"])["version"]  # a restore is a new version
        wait_for(lambda: client.get("/healthz").json()["store_version"] == restored)
        again = client.get("/v1/pages/embedding", params={"url": url}).json()
        assert again["embedding"] == before["embedding"]


def test_a_stored_new_page_becomes_a_normal_page(world_copy: Path) -> None:
    app = create_app(world_copy, reload=False)  # refreshed by hand below: no timing in this test
    with TestClient(app) as client:
        version = client.get("/healthz").json()["store_version"]
        request = {
            "url": "https://fresh.example.net/a/new/page",
            "pins": ["p1", "p2"],
            "store": True,
            "day": "2013-07-02",
        }
        r = client.post("/v1/pages/embed", json=request)
        assert r.status_code == 200, r.text
        stored = r.json()["stored"]
        assert stored == {"version": version + 1, "day": "2013-07-02", "inserted": 1, "updated": 0}
        assert client.get("/v1/pages/embedding", params={"url": request["url"]}).status_code == 404  # not yet loaded

        app.state.linksage.refresh()
        got = client.get("/v1/pages/embedding", params={"url": request["url"]}).json()
        assert got["store_version"] == version + 1 and got["day"] == "2013-07-02"
        np.testing.assert_array_equal(np.float32(got["embedding"]), np.float32(r.json()["embedding"]))
        assert client.get("/v1/pages/pins", params={"url": request["url"], "k": 3}).status_code == 200
        detail = client.get("/v1/pages/detail", params={"url": request["url"]}).json()
        assert detail["in_store"] and not detail["in_run"] and detail["content"] is None

        row = EmbeddingStore.open(world_copy / "store").get(page_ids([request["url"]]).tolist())
        np.testing.assert_array_equal(embedding_matrix(row["embedding"], 32)[0], np.float32(got["embedding"]))


def test_pins_of_a_page_embedded_by_another_model_are_refused(world_copy: Path) -> None:
    url = first_page(world_copy)
    vector = np.ones(32, np.float32) / np.sqrt(32)
    rewrite(world_copy, url, vector, model_version="0123456789abcdef")
    with TestClient(create_app(world_copy, reload=False)) as client:
        r = client.get("/v1/pages/pins", params={"url": url})
        assert r.status_code == 409
        assert "model 0123456789abcdef" in r.json()["error"] and "linksage run embed" in r.json()["error"]
        assert client.get("/v1/pages/embedding", params={"url": url}).status_code == 200  # look-ups still work


def test_a_run_without_a_store_answers_503_until_one_appears(world_copy: Path) -> None:
    table = world_copy / "store" / "pages.lance"
    table.rename(world_copy / "pages-later.lance")
    with TestClient(create_app(world_copy, reload=False)) as client:
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        r = client.get("/v1/pages/embedding", params={"url": first_page(world_copy)})
        assert r.status_code == 503 and "no embedding store" in r.json()["error"]
        (world_copy / "pages-later.lance").rename(table)
        client.app.state.linksage.refresh()  # type: ignore[attr-defined]
        assert client.get("/v1/pages/embedding", params={"url": first_page(world_copy)}).status_code == 200
