"""Batch inference into the store: what gets (re)embedded, bit-identical untouched rows, chunking, errors."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from embed_world import change_neighbours, change_text, seal, write_run

from linksage.config.store import EmbedConfig
from linksage.embed.batch import default_day, embed_into_store, model_version, prefetch, read_pages
from linksage.errors import InputError
from linksage.store.fingerprint import page_ids
from linksage.store.lance_store import EmbeddingStore, embedding_matrix
from linksage.train.infer import PageEmbedder, load_model

CFG = EmbedConfig(chunk_rows=64, batch_size=32, device="cpu")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("world") / "run")


@pytest.fixture
def run(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "run"))


def by_url(store: EmbeddingStore) -> dict[str, bytes]:
    table = store.read(["url", "embedding"])
    emb = embedding_matrix(table["embedding"], store.dim)
    return {u: emb[i].tobytes() for i, u in enumerate(table["url"].to_pylist())}


def test_full_embed_matches_the_model_and_records_identity(run: Path) -> None:
    report = embed_into_store(run, run / "store", CFG)
    assert (report.pages, report.embedded, report.unchanged) == (300, 300, 0)
    assert report.result.committed and report.result.inserted == 300
    assert report.day == "2013-04-30"  # the newest first_seen (the world's pages are first seen in April 2013)
    store = EmbeddingStore.open(run / "store")
    table = store.read()
    urls = pq.read_table(run / "ingest" / "pages.parquet")["url"]
    assert sorted(table["page_id"].to_pylist()) == sorted(page_ids(urls).tolist())
    assert set(table["model_version"].to_pylist()) == {model_version(run / "train")}
    # every stored row equals a direct, unchunked inference of that page
    direct = PageEmbedder.from_run(run / "train", run, "cpu").embed(np.arange(300))
    emb = embedding_matrix(table["embedding"], store.dim)
    order = np.argsort(table["url"].to_pylist())
    want = direct[np.argsort(urls.to_pylist())]
    assert np.allclose(emb[order], want, atol=1e-5)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_rerun_on_unchanged_inputs_writes_nothing(run: Path) -> None:
    embed_into_store(run, run / "store", CFG)
    again = embed_into_store(run, run / "store", CFG, day="2013-05-01")
    assert (again.embedded, again.result.committed, again.result.version) == (0, False, 2)
    assert EmbeddingStore.open(run / "store").history()[-1].days == ("2013-04-30", "2013-05-01")


def test_changed_content_reembeds_the_page_and_the_pages_that_see_it(run: Path) -> None:
    embed_into_store(run, run / "store", CFG)
    before = by_url(EmbeddingStore.open(run / "store"))
    change_text(run, [3, 5])
    report = embed_into_store(run, run / "store", CFG, day="2013-05-01")
    nbr = np.load(run / "walk" / "neighbours.npy")
    expected = {3, 5} | set(np.flatnonzero(np.isin(nbr, [3, 5]).any(axis=1)).tolist())
    assert report.embedded == len(expected) and report.result.updated == len(expected)
    after = by_url(EmbeddingStore.open(run / "store"))
    urls = pq.read_table(run / "ingest" / "pages.parquet")["url"].to_pylist()
    changed = {i for i, u in enumerate(urls) if after[u] != before[u]}
    assert changed == expected  # and every other row is bit-identical
    days = EmbeddingStore.open(run / "store").read(["url", "day"])
    new_day = {
        u for u, d in zip(days["url"].to_pylist(), days["day"].to_pylist(), strict=True) if str(d) == "2013-05-01"
    }
    assert new_day == {urls[i] for i in expected}


def test_changed_neighbours_reembed_only_those_pages(run: Path) -> None:
    embed_into_store(run, run / "store", CFG)
    nbr = np.load(run / "walk" / "neighbours.npy")
    pages = [p for p in range(20) if len(set(nbr[p].tolist())) > 1][:4]  # a roll changes their order
    change_neighbours(run, pages)
    report = embed_into_store(run, run / "store", CFG)
    assert report.embedded == len(pages)


def test_new_model_reembeds_everything(run: Path) -> None:
    embed_into_store(run, run / "store", CFG)
    model = load_model(run / "train")
    with torch.no_grad():
        next(model.encoder.parameters()).add_(0.01)
    model.save(run / "train" / "model.pt")
    report = embed_into_store(run, run / "store", CFG)
    assert report.embedded == 300 and report.result.updated == 300
    assert set(EmbeddingStore.open(run / "store").read(["model_version"])["model_version"].to_pylist()) == {
        model_version(run / "train")
    }


def test_chunk_size_does_not_change_the_result(run: Path, tmp_path: Path) -> None:
    embed_into_store(run, tmp_path / "a", EmbedConfig(chunk_rows=7, batch_size=5, device="cpu"))
    embed_into_store(run, tmp_path / "b", EmbedConfig(chunk_rows=1000, batch_size=1000, device="cpu"))
    a, b = by_url(EmbeddingStore.open(tmp_path / "a")), by_url(EmbeddingStore.open(tmp_path / "b"))
    assert a.keys() == b.keys()
    assert all(np.allclose(np.frombuffer(a[u], np.float32), np.frombuffer(b[u], np.float32), atol=1e-5) for u in a)


def test_reembed_all_selects_every_page(run: Path) -> None:
    embed_into_store(run, run / "store", CFG)
    report = embed_into_store(run, run / "store", EmbedConfig(reembed_all=True, device="cpu"))
    assert report.embedded == 300 and report.result.committed


def test_duplicate_url_is_an_input_error_naming_the_row(run: Path) -> None:
    path = run / "ingest" / "pages.parquet"
    table = pq.read_table(path)
    urls = table["url"].to_pylist()
    urls[7] = urls[2]
    pq.write_table(table.set_column(table.column_names.index("url"), "url", pa.array(urls)), path)
    seal(run, "ingest", "dup")
    with pytest.raises(InputError, match=r"pages.parquet, row 7: pages \[2, 7\] have the same page id"):
        embed_into_store(run, run / "store", CFG)


def test_pages_out_of_order_are_an_input_error(run: Path) -> None:
    path = run / "ingest" / "pages.parquet"
    table = pq.read_table(path)
    pq.write_table(table.take(pa.array([1, 0, *range(2, table.num_rows)])), path)
    with pytest.raises(InputError, match=r"pages.parquet, row 0: page_idx must be 0..n-1 in row order"):
        read_pages(run)


def test_default_day() -> None:
    assert default_day(np.array([0, 1_364_774_400, 1_364_860_800])) == "2013-04-02"
    assert len(default_day(None)) == 10


def test_prefetch_keeps_order_and_propagates_errors() -> None:
    items = [np.array([i]) for i in range(10)]
    assert [int(x[0]) * 2 for x in items] == list(prefetch(lambda a: int(a[0]) * 2, items))

    def boom(a: np.ndarray) -> int:
        if a[0] == 3:
            raise ValueError("chunk 3 failed")
        return int(a[0])

    with pytest.raises(ValueError, match="chunk 3 failed"):
        list(prefetch(boom, items))


def test_prefetch_stops_its_thread_when_the_consumer_stops() -> None:
    gen = prefetch(lambda a: int(a[0]), [np.array([i]) for i in range(100)], depth=1)
    assert next(gen) == 0
    gen.close()
    assert not any(t.name == "embed-prefetch" and t.is_alive() for t in threading.enumerate())
