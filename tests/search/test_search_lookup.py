"""Top-k pins for a page URL and top-k pages for a pin, over a run directory's store (exact on a tiny world)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "embed"))
from embed_world import write_run

from linksage.config.store import EmbedConfig, IndexConfig, StoreConfig
from linksage.embed.batch import embed_into_store
from linksage.errors import LinksageError
from linksage.search.lookup import format_hits, search, search_pages_for_pin, search_pins_for_page
from linksage.store.commands import format_history, store_history, store_restore
from linksage.store.lance_store import EmbeddingStore, embedding_matrix
from linksage.train.infer import load_model


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_run(tmp_path_factory.mktemp("lookup") / "run")
    embed_into_store(root, root / "store", EmbedConfig(device="cpu"))
    return root


def pin_space(run: Path) -> np.ndarray:
    return load_model(run / "train").pin_vectors(np.load(run / "content" / "pin_target.npy"))


def test_pins_for_a_page_are_the_exact_top_k(run: Path) -> None:
    hits = search_pins_for_page(run, "HTTP://www.Site3.example.com/page/10/#frag", k=7)  # canonicalised first
    store = EmbeddingStore.open(run / "store")
    row = store.read(where="url = 'https://site3.example.com/page/10'")
    query = embedding_matrix(row["embedding"], store.dim)[0]
    scores = pin_space(run) @ query
    want = np.argsort(-scores, kind="stable")[:7]
    assert [h.id for h in hits] == [f"pin{i}" for i in want]
    assert np.allclose([h.score for h in hits], scores[want], atol=1e-5)
    assert [h.rank for h in hits] == list(range(1, 8)) and hits[0].text == f"pin text {want[0]}"


def test_pages_for_a_pin_are_the_exact_top_k(run: Path) -> None:
    hits = search_pages_for_pin(run, "pin12", k=5)
    store = EmbeddingStore.open(run / "store")
    table = store.read(["url", "embedding"])
    scores = embedding_matrix(table["embedding"], store.dim) @ pin_space(run)[12]
    want = np.argsort(-scores, kind="stable")[:5]
    assert [h.id for h in hits] == [table["url"][int(i)].as_py() for i in want]
    assert np.allclose([h.score for h in hits], scores[want], atol=1e-5)


def test_approximate_index_gives_the_same_answers_on_an_easy_set(run: Path) -> None:
    cfg = StoreConfig(index=IndexConfig(kind="hnsw"))
    exact = [h.id for h in search_pages_for_pin(run, "pin3", k=5)]
    assert [h.id for h in search_pages_for_pin(run, "pin3", k=5, cfg=cfg)] == exact


def test_errors_name_what_is_missing(run: Path) -> None:
    with pytest.raises(LinksageError, match="not in the store"):
        search_pins_for_page(run, "https://nowhere.example.org/x", k=3)
    with pytest.raises(LinksageError, match="is not a usable URL"):
        search_pins_for_page(run, "http://[stone]/x", k=3)
    with pytest.raises(LinksageError, match="pin 'nope' is not in"):
        search_pages_for_pin(run, "nope", k=3)
    with pytest.raises(LinksageError, match="exactly one of --url"):
        search(run, k=3)
    with pytest.raises(LinksageError, match="-k must be positive"):
        search(run, pin="pin1", k=0)


def test_cli_functions_history_restore_and_format(run: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(run, tmp_path / "copy"))
    rows = store_history(copy)
    assert [r["version"] for r in rows] == [1, 2] and rows[1]["days"] == ["2013-04-30"] and rows[1]["rows"] == 300
    table = format_history(rows).splitlines()
    assert "(the store's creation, empty)" in table[1] and "day-2013-04-30" in table[2]
    restored = store_restore(copy, 1)
    assert restored == {"restored": 1, "previous": 2, "version": 3, "rows": 0}
    assert [r["rows"] for r in store_history(copy)] == [0, 300, 0]
    text = format_hits(search(run, pin="pin1", k=2))
    assert len(text.splitlines()) == 2 and "https://" in text


def test_a_page_from_another_model_is_refused(run: Path, tmp_path: Path) -> None:
    import torch

    copy = Path(shutil.copytree(run, tmp_path / "copy"))
    model = load_model(copy / "train")
    with torch.no_grad():
        next(model.encoder.parameters()).add_(0.01)
    model.save(copy / "train" / "model.pt")  # retrained, not yet re-embedded
    with pytest.raises(LinksageError, match=r"comes from model .* run `linksage run embed"):
        search_pins_for_page(copy, "https://site3.example.com/page/10", k=3)
