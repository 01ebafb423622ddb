"""Fingerprints beside inference (an empty store, reembed_all): the same store as keys first, errors, threads."""

from __future__ import annotations

import shutil
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
from embed_world import change_text

from linksage.config.store import EmbedConfig
from linksage.embed import batch
from linksage.embed.batch import PageKeys, embed_into_store
from linksage.store.lance_store import COLUMNS, EmbeddingStore, embedding_matrix
from linksage.train.infer import PageEmbedder

CFG = EmbedConfig(chunk_rows=64, batch_size=32, device="cpu")  # 300 pages: 5 chunks
THREADS = ("embed-upload", "embed-keys", "embed-write")


def store_bytes(path: Path) -> dict[str, object]:
    """Every column of the newest version, rows by page_id (embeddings as their bytes), and each version's days."""
    store = EmbeddingStore.open(path)
    table = store.read(COLUMNS)
    table = table.take(np.argsort(table["page_id"].to_numpy()))
    out: dict[str, object] = {c: table[c].to_pylist() for c in COLUMNS if c != "embedding"}
    out["embedding"] = embedding_matrix(table["embedding"], store.dim).tobytes()
    out["versions"] = [(v.version, v.rows, v.days) for v in store.history()]
    return out


class Spy:
    """Records, in order, when the keys were computed and each chunk embedded.

    ``hold_keys`` > 0: the keys wait until that many chunks were embedded (then a moment more, in which no
    further chunk may start), so the test sees how far inference runs ahead of them.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hold_keys: int = 0) -> None:
        self.events: list[str] = []
        self.keys_thread = ""
        embedded = threading.Semaphore(0)
        real_keys, real_embed = batch.page_keys, PageEmbedder.embed

        def page_keys(*args: object, **kwargs: object) -> PageKeys:
            self.keys_thread = threading.current_thread().name
            for _ in range(hold_keys):
                assert embedded.acquire(timeout=60)
            time.sleep(0.3 if hold_keys else 0.0)
            keys = real_keys(*args, **kwargs)  # type: ignore[arg-type]
            self.events.append("keys")
            return keys

        def embed(embedder: PageEmbedder, pages: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
            self.events.append("embed")
            try:
                return real_embed(embedder, pages, *args, **kwargs)  # type: ignore[arg-type]
            finally:
                embedded.release()

        monkeypatch.setattr(batch, "page_keys", page_keys)
        monkeypatch.setattr(PageEmbedder, "embed", embed)

    def embedded_before_keys(self) -> int:
        return self.events.index("keys")


def no_threads_left() -> bool:
    return not any(t.name in THREADS and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize(
    "case",
    ["first fill", "first fill of candidates", "reembed_all"],
)
def test_keys_beside_inference_write_the_store_that_keys_first_write(
    image_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    cfg, candidates = CFG, None
    if case == "first fill of candidates":
        candidates = np.array([250, 3, 3, 17, *range(100, 240)])  # unsorted, repeated: 143 pages in 3 chunks
    stores, timings = {}, {}
    for beside in (True, False):
        path = tmp_path / f"store-{beside}"
        if case == "reembed_all":  # a filled store (keys first), then every page again
            with monkeypatch.context() as m:
                m.setattr(batch, "_KEYS_BESIDE_INFERENCE", False)
                embed_into_store(image_run, path, cfg)
            cfg = EmbedConfig(chunk_rows=64, batch_size=32, device="cpu", reembed_all=True)
        with monkeypatch.context() as m:
            m.setattr(batch, "_KEYS_BESIDE_INFERENCE", beside)
            spy = Spy(m, hold_keys=batch._LOOKAHEAD if beside else 0)
            report = embed_into_store(image_run, path, cfg, candidates=candidates)
        assert report.embedded == (143 if candidates is not None else 300) and report.result.committed
        assert spy.keys_thread == "embed-keys"
        if beside:  # inference ran while the keys were computed, _LOOKAHEAD chunks ahead of them and no more
            assert spy.embedded_before_keys() == batch._LOOKAHEAD
            assert report.timings["keys_wait_s"] >= 0.2  # the keys were held 0.3 s after the third chunk
        else:
            assert spy.embedded_before_keys() == 0 and report.timings["keys_wait_s"] < 0.05
        stores[beside], timings[beside] = store_bytes(path), list(report.timings)
    assert stores[True] == stores[False]  # page_id, url, embedding, fingerprints, model_version, day; versions
    assert timings[True] == timings[False]  # the same seconds named, in the same order, whichever order ran
    assert no_threads_left()


def test_an_error_in_the_background_fingerprints_surfaces_with_its_traceback(
    image_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_keys(*args: object, **kwargs: object) -> PageKeys:
        time.sleep(0.2)  # inference has started
        raise ValueError("fingerprints failed")

    monkeypatch.setattr(batch, "page_keys", failing_keys)
    with pytest.raises(ValueError, match=r"^fingerprints failed$") as info:
        embed_into_store(image_run, tmp_path / "store", CFG)
    frames = traceback.extract_tb(info.value.__traceback__)
    assert frames[-1].name == "failing_keys" and frames[-1].line == 'raise ValueError("fingerprints failed")'
    assert no_threads_left()
    store = EmbeddingStore.open(tmp_path / "store")
    assert (store.version, store.count()) == (1, 0)  # the first fill aborted before its commit


def test_a_model_error_while_the_keys_are_computed_leaves_no_thread_running(
    image_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_keys(*args: object, **kwargs: object) -> PageKeys:
        time.sleep(0.5)
        raise AssertionError("not raised: the model's error comes first")

    def failing_embed(self: PageEmbedder, pages: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        raise RuntimeError("device lost")

    monkeypatch.setattr(batch, "page_keys", slow_keys)
    monkeypatch.setattr(PageEmbedder, "embed", failing_embed)
    with pytest.raises(RuntimeError, match="device lost"):
        embed_into_store(image_run, tmp_path / "store", CFG)
    assert no_threads_left()  # the keys' thread was joined, not left behind
    assert EmbeddingStore.open(tmp_path / "store").count() == 0


def test_a_second_call_on_the_filled_store_diffs_first_and_embeds_only_the_changed_pages(
    image_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = Path(shutil.copytree(image_run, tmp_path / "run"))
    embed_into_store(run, tmp_path / "store", CFG)  # a first fill: keys beside inference
    with monkeypatch.context() as m:
        m.setattr(batch, "_KEYS_BESIDE_INFERENCE", False)
        embed_into_store(run, tmp_path / "serial", CFG)
    change_text(run, [3, 5])
    nbr = np.load(run / "walk" / "neighbours.npy")
    expected = {3, 5} | set(np.flatnonzero(np.isin(nbr, [3, 5]).any(axis=1)).tolist())
    with monkeypatch.context() as m:
        spy = Spy(m)
        report = embed_into_store(run, tmp_path / "store", CFG, day="2013-05-01")
    assert spy.embedded_before_keys() == 0  # a non-empty store: the diff needs the keys first
    assert report.embedded == report.result.updated == len(expected) and report.timings["keys_wait_s"] < 0.05
    with monkeypatch.context() as m:
        m.setattr(batch, "_KEYS_BESIDE_INFERENCE", False)
        embed_into_store(run, tmp_path / "serial", CFG, day="2013-05-01")
    assert store_bytes(tmp_path / "store") == store_bytes(tmp_path / "serial")
    assert no_threads_left()
