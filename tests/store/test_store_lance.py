"""The Lance embedding store: upsert semantics, versions, tags, restore, and errors."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from store_rows import DIM, batches, expected, state

from linksage.errors import LinksageError
from linksage.store.lance_store import COLUMNS, EmbeddingStore, embedding_matrix, make_batch

OLD = np.arange(0, 100)
NEW = np.arange(50, 180)


@pytest.fixture
def store(tmp_path: Path) -> EmbeddingStore:
    return EmbeddingStore.open_or_create(tmp_path / "store", DIM)


def test_create_is_an_empty_first_version(tmp_path: Path) -> None:
    assert not EmbeddingStore.exists(tmp_path / "store")
    store = EmbeddingStore.open_or_create(tmp_path / "store", DIM)
    assert EmbeddingStore.exists(tmp_path / "store")
    assert (store.version, store.count(), store.dim) == (1, 0, DIM)
    assert store.read().schema.names == list(COLUMNS)


def test_reopening_with_another_dim_is_refused(store: EmbeddingStore) -> None:
    with pytest.raises(LinksageError, match="holds 16-dim embeddings, the model gives 32"):
        EmbeddingStore.open_or_create(store.path, 32)


def test_opening_a_missing_store_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(LinksageError, match=r"no embedding store at .*linksage run embed"):
        EmbeddingStore.open(tmp_path / "nowhere")


def test_upsert_inserts_then_merges_leaving_other_rows_bit_identical(store: EmbeddingStore) -> None:
    first = store.upsert(batches(OLD, seed=1), "2013-04-01")
    assert (first.version, first.inserted, first.updated) == (2, 100, 0)
    second = store.upsert(batches(NEW, seed=2, day="2013-04-02"), "2013-04-02")
    assert (second.version, second.inserted, second.updated, second.rows) == (3, 80, 50, 130)
    table = store.read()
    assert table.num_rows == 180
    assert state(table) == expected([(OLD, 1), (NEW, 2)])
    days = dict(zip(table["page_id"].to_pylist(), table["day"].to_pylist(), strict=True))
    assert days[0] == datetime.date(2013, 4, 1) and days[60] == days[170] == datetime.date(2013, 4, 2)
    # the untouched rows are byte-for-byte the rows of the previous version
    before = state(store.at(2).read())
    assert all(state(table)[p] == before[p] for p in range(50))


def test_same_upsert_twice_is_idempotent(store: EmbeddingStore) -> None:
    store.upsert(batches(OLD, seed=1), "2013-04-01")
    store.upsert(batches(OLD, seed=1), "2013-04-01")
    table = store.read()
    assert table.num_rows == len(OLD)
    assert len(set(table["page_id"].to_pylist())) == len(OLD)
    assert state(table) == expected([(OLD, 1)])


def test_empty_upsert_makes_no_version(store: EmbeddingStore) -> None:
    store.upsert(batches(OLD, seed=1), "2013-04-01")
    result = store.upsert(iter([]), "2013-04-02")
    assert (result.committed, result.version, store.version) == (False, 2, 2)


def test_duplicate_ids_abort_the_upsert_before_commit(store: EmbeddingStore) -> None:
    store.upsert(batches(OLD, seed=1), "2013-04-01")
    dup = np.array([500, 501, 502, 500])
    with pytest.raises(LinksageError, match="page_id 500 appears more than once"):
        store.upsert(batches(dup, seed=2, size=2), "2013-04-02")
    assert store.at(None).version == 2
    assert state(store.at(None).read()) == expected([(OLD, 1)])


def test_batch_of_the_wrong_shape_is_refused_without_a_version(store: EmbeddingStore) -> None:
    bad = make_batch(np.array([1]), ["u"], np.ones((1, DIM + 1), np.float32), "m", [1], [1], "2013-04-01")
    with pytest.raises(LinksageError, match="does not fit the store's schema"):
        store.upsert(iter([bad]), "2013-04-01")
    assert store.at(None).version == 1


def test_history_lists_versions_rows_and_day_tags(store: EmbeddingStore) -> None:
    store.upsert(batches(OLD, seed=1), "2013-04-01")
    store.upsert(batches(NEW, seed=2), "2013-04-02")
    store.upsert(batches(NEW[:10], seed=3), "2013-04-02")  # a second write the same day moves its tag
    history = store.history()
    assert [h.version for h in history] == [1, 2, 3, 4]
    assert [h.rows for h in history] == [0, 100, 180, 180]
    assert [h.days for h in history] == [(), ("2013-04-01",), (), ("2013-04-02",)]
    assert all(h.timestamp for h in history)


def test_tag_day_points_a_day_at_the_newest_version(store: EmbeddingStore) -> None:
    store.upsert(batches(OLD, seed=1), "2013-04-01")
    store.tag_day("2013-04-05")
    assert store.history()[-1].days == ("2013-04-01", "2013-04-05")


def test_bad_day_is_refused(store: EmbeddingStore) -> None:
    with pytest.raises(LinksageError, match="ISO date"):
        store.upsert(batches(OLD, seed=1), "April 1st")
    assert store.at(None).version == 1  # refused before anything was written


def test_old_versions_stay_readable_and_restorable(store: EmbeddingStore) -> None:
    store.upsert(batches(OLD, seed=1), "2013-04-01")
    store.upsert(batches(NEW, seed=2), "2013-04-02")
    assert state(store.at(2).read()) == expected([(OLD, 1)])
    new = store.restore(2)
    assert new == 4 and store.version == 4
    assert state(store.read()) == expected([(OLD, 1)])
    assert state(store.at(3).read()) == expected([(OLD, 1), (NEW, 2)])  # nothing was lost
    with pytest.raises(LinksageError, match=r"no version 9; versions are \[1, 2, 3, 4\]"):
        store.restore(9)


def test_get_keys_and_embeddings(store: EmbeddingStore) -> None:
    store.upsert(batches(OLD, seed=1), "2013-04-01")
    rows = store.get([3, 7, 12345])
    assert sorted(rows["page_id"].to_pylist()) == [3, 7]
    assert store.get([]).num_rows == 0
    keys = store.keys()
    assert keys.column_names == ["page_id", "model_version", "content_fingerprint", "neighbour_fingerprint"]
    ids, emb = store.embeddings()
    assert emb.shape == (100, DIM) and emb.dtype == np.float32
    want = expected([(OLD, 1)])
    assert all(emb[i].tobytes() == want[int(p)][0] for i, p in enumerate(ids))
    streamed = sum(b.num_rows for b in store.scan(batch_size=16))
    assert streamed == 100


def test_embedding_matrix_of_a_sliced_column() -> None:
    values = pa.array(np.arange(12, dtype=np.float32))
    col = pa.FixedSizeListArray.from_arrays(values, 3).slice(1, 2)
    assert embedding_matrix(col, 3).tolist() == [[3, 4, 5], [6, 7, 8]]


def test_non_finite_embedding_is_refused(store: EmbeddingStore) -> None:
    emb = np.ones((2, DIM), np.float32)
    emb[1, 3] = np.nan
    bad = make_batch(np.array([4, 9]), ["a", "b"], emb, "m", [1, 2], [1, 2], "2013-04-01")
    with pytest.raises(LinksageError, match="embedding of page_id 9 is not finite"):
        store.upsert(iter([bad]), "2013-04-01")
    assert store.at(None).version == 1


def test_opening_an_unknown_version_is_refused(store: EmbeddingStore) -> None:
    with pytest.raises(LinksageError, match="cannot open version 99"):
        store.at(99)


def test_parallel_writers_still_make_one_version_with_every_row(store: EmbeddingStore) -> None:
    result = store.upsert(batches(OLD, seed=1, size=10), "2013-04-01", write_parallelism=3)
    assert (result.version, result.inserted) == (2, len(OLD))
    assert [v.version for v in store.history()] == [1, 2]
    assert state(store.read()) == expected([(OLD, 1)])


def test_make_batch_constant_columns(store: EmbeddingStore) -> None:
    batch = make_batch(
        np.array([1, 2]), ["a", "b"], np.eye(2, DIM, dtype=np.float32), "v1", np.zeros(2), np.ones(2), "2013-04-02"
    )
    assert batch.column("model_version").to_pylist() == ["v1", "v1"]
    assert batch.column("day").to_pylist() == [datetime.date(2013, 4, 2)] * 2
    assert batch.schema == store.read().schema
