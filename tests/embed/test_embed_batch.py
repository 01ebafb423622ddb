"""Batch inference into the store: what gets (re)embedded, bit-identical untouched rows, chunking, errors."""

from __future__ import annotations

import dataclasses
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from embed_world import change_neighbours, change_text, seal, write_run

from linksage.config.store import EmbedConfig
from linksage.embed.batch import default_day, embed_into_store, model_version, page_keys, read_pages, write_behind
from linksage.errors import InputError
from linksage.model import LinkSageEncoder, PageInputs
from linksage.store.fingerprint import hash_rows, page_ids
from linksage.store.lance_store import EmbeddingStore, embedding_matrix
from linksage.train import infer
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


def test_write_behind_keeps_order_and_returns_the_consumers_result() -> None:
    result, waited = write_behind(lambda items: [x * 2 for x in items], iter(range(10)))
    assert result == [x * 2 for x in range(10)] and waited >= 0.0


def test_write_behind_raises_a_producer_error_inside_the_consumer_then_here() -> None:
    seen: list[object] = []

    def produce() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("chunk 3 failed")

    def consume(items: Iterator[int]) -> int:
        try:
            for item in items:
                seen.append(item)
        except ValueError as exc:  # what the store's write sees: it aborts before its commit
            seen.append(str(exc))
            raise
        return len(seen)

    with pytest.raises(ValueError, match="chunk 3 failed"):
        write_behind(consume, produce())
    assert seen == [1, 2, "chunk 3 failed"]
    assert not any(t.name == "embed-write" and t.is_alive() for t in threading.enumerate())


def test_write_behind_stops_the_producer_when_the_consumer_fails() -> None:
    produced: list[int] = []

    def produce() -> Iterator[int]:
        for i in range(1000):
            produced.append(i)
            yield i

    def consume(items: Iterator[int]) -> None:
        for item in items:
            if item == 3:
                raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_behind(consume, produce(), depth=1)
    assert len(produced) <= 3 + 1 + 2  # the failing item, the queue, the one being put
    assert not any(t.name == "embed-write" and t.is_alive() for t in threading.enumerate())


def test_a_failure_while_embedding_leaves_the_store_at_its_previous_version(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embed_into_store(run, run / "store", CFG)
    before = by_url(EmbeddingStore.open(run / "store"))
    real_embed, calls = PageEmbedder.embed, [0]

    def failing_embed(self: PageEmbedder, pages: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        calls[0] += 1
        if calls[0] == 3:  # two chunks are already with the store's writer
            raise RuntimeError("device lost")
        return real_embed(self, pages, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(PageEmbedder, "embed", failing_embed)
    with pytest.raises(RuntimeError, match="device lost"):
        embed_into_store(run, run / "store", EmbedConfig(chunk_rows=64, batch_size=32, device="cpu", reembed_all=True))
    store = EmbeddingStore.open(run / "store")
    assert store.version == 2 and by_url(store) == before


def test_memory_mapped_features_equal_copied_ones_and_share_the_mean_image(image_run: Path) -> None:
    run = image_run
    model = load_model(run / "train")
    copied, mapped = model.features(run), model.features(run, copy=False)
    assert copied.image_dim == 24 and copied.has_image.any() and not copied.has_image.all()
    for name in ("text", "image", "image_mask", "nbr_image", "has_image", "degree_bucket", "neighbours", "log_visits"):
        assert torch.equal(getattr(copied, name), getattr(mapped, name)), name
    for feats in (copied, mapped, mapped.to("cpu")):
        assert feats.image_is_nbr_image() and feats.image_mask_is_has_image()  # one table, not two copies
    mapped.text[0] += 1  # copy-on-write: the file is untouched
    assert torch.equal(model.features(run).text, copied.text)


def test_page_keys_hash_a_shared_table_once_with_the_same_fingerprints(image_run: Path) -> None:
    run = image_run
    model = load_model(run / "train")
    feats = model.features(run)
    url, _ = read_pages(run)
    keys = page_keys(url, feats)
    content = np.stack(  # the reference: every table hashed on its own, from separate copies
        [
            hash_rows(np.array(feats.text.numpy())),
            hash_rows(np.array(feats.image.numpy())),
            hash_rows(np.array(feats.image_mask.numpy())),
            hash_rows(np.array(feats.nbr_image.numpy())),
            hash_rows(np.array(feats.has_image.numpy())),
        ],
        axis=1,
    )
    assert np.array_equal(keys.content_fp, hash_rows(content))
    unshared = dataclasses.replace(feats, image=feats.image.clone(), image_mask=feats.image_mask.clone())
    assert not unshared.image_is_nbr_image()
    assert np.array_equal(page_keys(url, unshared).content_fp, keys.content_fp)


def test_compiled_batches_are_padded_to_one_shape_and_give_the_eager_rows(
    image_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = image_run
    shapes: list[int] = []

    def spy(encoder: LinkSageEncoder, inputs: PageInputs, dim: int, bf16: bool, device_type: str) -> torch.Tensor:
        shapes.append(int(inputs.self_text.shape[0]))  # what torch.compile would see
        return infer._encode(encoder, inputs, dim, bf16, device_type)

    monkeypatch.setitem(infer._COMPILED, "default", spy)
    model = load_model(run / "train")
    feats = model.features(run)
    pages = np.array([5, 3, 299, 0, 17, 42, 8])
    compiled = PageEmbedder(model, feats, compile=True).embed(pages, batch_size=3)
    assert shapes == [3, 3, 3]  # 7 pages: the last batch of one page is padded to 3
    eager = PageEmbedder(model, feats).embed(pages, batch_size=3)
    np.testing.assert_allclose(compiled, eager, atol=1e-6)
    np.testing.assert_array_equal(PageEmbedder(model, feats).embed(pages[:0]), np.zeros((0, 32), np.float32))


def test_pages_with_images_embed_like_direct_inference(image_run: Path, tmp_path: Path) -> None:
    report = embed_into_store(image_run, tmp_path / "store", EmbedConfig(chunk_rows=50, batch_size=16, device="cpu"))
    assert report.embedded == 300 and report.compile_mode == "off" and report.batch_size == 16
    table = EmbeddingStore.open(tmp_path / "store").read(["url", "embedding"])
    urls = pq.read_table(image_run / "ingest" / "pages.parquet")["url"].to_pylist()
    row = {u: i for i, u in enumerate(urls)}
    pages = np.array([row[u] for u in table["url"].to_pylist()])
    direct = PageEmbedder.from_run(image_run / "train", image_run, "cpu").embed(pages, batch_size=16)
    np.testing.assert_allclose(embedding_matrix(table["embedding"], 32), direct, atol=1e-6)  # other batches


def test_pin_means_move_the_neighbour_fingerprints_of_exactly_the_pages_that_read_them(run: Path) -> None:
    model = load_model(run / "train")
    feats = model.features(run)
    url, _ = read_pages(run)
    rng = np.random.default_rng(0)
    n, k, s = feats.n_pages, feats.k, 2
    ok = rng.random((n, k)) < 0.7
    with_means = dataclasses.replace(
        feats,
        boards=torch.from_numpy(rng.integers(-1, 3, (n, s)).astype(np.int32)),
        board_text=torch.from_numpy(rng.normal(size=(3, feats.text_dim)).astype(np.float16)),
        board_mean=torch.from_numpy(np.vstack([rng.normal(size=(3, 4)), np.zeros((1, 4))]).astype(np.float16)),
        board_mean_fixed=torch.from_numpy(rng.normal(size=(n, 4)).astype(np.float16)),
        board_mean_at=torch.from_numpy(np.where(rng.random((n, s)) < 0.5, np.arange(n)[:, None], -1).astype(np.int32)),
        page_mean=torch.from_numpy(rng.normal(size=(n, 4)).astype(np.float16)),
        nbr_mean_ok=torch.from_numpy(ok),
    )
    before = page_keys(url, with_means).neighbour_fp
    rows = np.array([7, 3, 150])
    assert np.array_equal(page_keys(url, with_means, rows=rows).neighbour_fp, before[rows])  # a subset keys alike

    j = int(np.bincount(feats.neighbours.numpy()[feats.neighbours.numpy() >= 0]).argmax())  # a popular neighbour
    moved = dataclasses.replace(with_means, page_mean=with_means.page_mean.clone())
    moved.page_mean[j] += 1
    nbr = feats.neighbours.numpy()
    readers = set(np.flatnonzero(((nbr == j) & ok).any(axis=1)).tolist())
    assert readers and set(np.flatnonzero((nbr == j).any(axis=1)).tolist()) != readers  # some read it, some don't
    assert set(np.flatnonzero(page_keys(url, moved).neighbour_fp != before).tolist()) == readers

    at = with_means.board_mean_at.numpy()
    p = int(np.flatnonzero((at >= 0).any(axis=1))[0])
    own = dataclasses.replace(with_means, board_mean_fixed=with_means.board_mean_fixed.clone())
    own.board_mean_fixed[int(at[p][at[p] >= 0][0])] += 1  # a corrected row: page p's alone
    assert np.flatnonzero(page_keys(url, own).neighbour_fp != before).tolist() == [p]
    board = dataclasses.replace(with_means, board_mean=with_means.board_mean.clone())
    board.board_mean[1] += 1  # board 1's plain mean: every page with a slot on board 1 that is not corrected
    boards = with_means.boards.numpy()
    plain = set(np.flatnonzero(((boards == 1) & (at < 0)).any(axis=1)).tolist())
    assert plain and set(np.flatnonzero(page_keys(url, board).neighbour_fp != before).tolist()) == plain
