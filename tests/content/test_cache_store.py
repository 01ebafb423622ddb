"""The content cache: round trips, persistence across opens, merging, crash leftovers, scale."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from linksage.content import cache as cache_mod
from linksage.content.cache import VectorCache, bytes_keys, default_cache_root, text_keys
from linksage.errors import LinksageError


def unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_keys_are_content_hashes() -> None:
    k = text_keys(["a", "b", "a", ""])
    assert k.shape == (4, 2) and k.dtype == np.uint64
    assert (k[0] == k[2]).all() and not (k[0] == k[1]).all()
    np.testing.assert_array_equal(bytes_keys([b"a"]), text_keys(["a"]))
    assert text_keys([]).shape == (0, 2)


def test_put_get_round_trip_and_misses(tmp_path: Path) -> None:
    cache = VectorCache.open(tmp_path, "text:enc")
    keys = text_keys([f"t{i}" for i in range(100)])
    found, vecs = cache.get(keys)
    assert not found.any() and vecs.shape == (100, 0)  # no dim known before the first put
    v = unit(60, 8, 0)
    cache.put(keys[:60], v)
    found, got = cache.get(keys[::-1])
    np.testing.assert_array_equal(found, np.r_[np.zeros(40, bool), np.ones(60, bool)])
    np.testing.assert_allclose(got[40:], v[::-1], atol=1e-3)  # stored as float16
    assert not got[:40].any()
    assert len(cache) == 60


def test_survives_reopen_and_is_shared_by_namespace(tmp_path: Path) -> None:
    keys = text_keys(["x", "y"])
    VectorCache.open(tmp_path, "text:enc").put(keys, unit(2, 4, 1))
    again = VectorCache.open(tmp_path, "text:enc")
    assert again.dim == 4 and again.get(keys)[0].all()
    other = VectorCache.open(tmp_path, "text:other")
    assert not other.get(keys)[0].any()
    with pytest.raises(LinksageError, match="6 dims, the cache holds 4"):
        again.put(text_keys(["z"]), unit(1, 6, 2))


def test_many_shards_are_merged_on_open_keeping_every_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_mod, "MERGE_AT", 4)
    cache = VectorCache.open(tmp_path, "ns")
    all_keys, all_vecs = [], []
    for i in range(7):
        keys, vecs = text_keys([f"{i}-{j}" for j in range(10)] + ["dup"]), unit(11, 5, i)
        cache.put(keys, vecs)
        all_keys.append(keys)
        all_vecs.append(vecs)
    folder = cache.folder
    assert len(list(folder.glob("*.keys.npy"))) == 7
    merged = VectorCache.open(tmp_path, "ns")
    assert len(list(folder.glob("*.keys.npy"))) == 1 and len(list(folder.glob("*.vecs.npy"))) == 1
    keys = np.concatenate(all_keys)
    found, got = merged.get(keys)
    assert found.all() and len(merged) == 7 * 10 + 1
    np.testing.assert_allclose(got[:10], all_vecs[0][:10], atol=1e-3)
    np.testing.assert_allclose(got[-2], all_vecs[-1][-2], atol=1e-3)


def test_leftovers_of_a_killed_put_are_ignored(tmp_path: Path) -> None:
    cache = VectorCache.open(tmp_path, "ns")
    keys = text_keys(["kept", "lost"])
    cache.put(keys[:1], unit(1, 3, 0))
    folder = cache.folder
    # a put killed after its vectors and before its keys; a temp file killed mid-write; a torn keys file
    np.save(folder / "99999999999999999999-dead.vecs.npy", unit(1, 3, 1).astype(np.float16))
    (folder / ".00000000000000000001-x.keys.npy.abcd.tmp").write_bytes(b"\x93NUMPY garbage")
    (folder / "00000000000000000002-torn.keys.npy").write_bytes(b"\x93NUMPY")
    reopened = VectorCache.open(tmp_path, "ns")
    found, _ = reopened.get(keys)
    assert found.tolist() == [True, False]


def _writer(root: str, start: int) -> None:
    cache = VectorCache.open(root, "ns")
    for i in range(5):
        keys = text_keys([f"{start}-{i}-{j}" for j in range(20)])
        cache.put(keys, unit(20, 4, start + i))


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), s)) for s in (0, 100, 200)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    keys = text_keys([f"{s}-{i}-{j}" for s in (0, 100, 200) for i in range(5) for j in range(20)])
    assert VectorCache.open(tmp_path, "ns").get(keys)[0].all()


def test_batched_lookups_at_scale(tmp_path: Path) -> None:
    n = 300_000
    cache = VectorCache.open(tmp_path, "ns")
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**63, size=(n, 2), dtype=np.uint64)
    vecs = np.stack([np.arange(n) / n, np.ones(n)], axis=1).astype(np.float32)  # row number in column 0
    cache.put(keys[: n // 2], vecs[: n // 2])
    cache.put(keys[n // 2 :], vecs[n // 2 :])
    rows = rng.permutation(n)[:100_000]
    query = np.concatenate([keys[rows], rng.integers(0, 2**63, (1000, 2), np.uint64)])
    found, got = VectorCache.open(tmp_path, "ns").get(query)
    assert found[:100_000].all() and not found[100_000:].any()
    assert np.abs(got[:100_000, 0] - rows / n).max() < 1e-3  # each key got its own vector (float16)


def test_default_root_is_beside_the_run_dir(tmp_path: Path) -> None:
    assert default_cache_root(tmp_path / "runs" / "demo") == (tmp_path / "runs" / ".cache" / "linksage").resolve()


def test_a_merged_shard_keeps_its_sort_order_and_a_bad_order_file_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_mod, "MERGE_AT", 2)
    cache = VectorCache.open(tmp_path, "ns")
    keys = text_keys([f"k{i}" for i in range(300)])
    vecs = np.stack([np.arange(300) / 300, np.ones(300)], axis=1).astype(np.float32)  # row number in column 0
    for lo in range(0, 300, 100):
        cache.put(keys[lo : lo + 100], vecs[lo : lo + 100])
    VectorCache.open(tmp_path, "ns")  # merges the three shards into one, with its order file
    (order_path,) = cache.folder.glob("*.order.npy")
    (keys_path,) = cache.folder.glob("*.keys.npy")
    stored = np.load(keys_path)[np.load(order_path)]
    assert np.all(
        (stored[1:, 0] > stored[:-1, 0]) | ((stored[1:, 0] == stored[:-1, 0]) & (stored[1:, 1] > stored[:-1, 1]))
    )

    sorts: list[int] = []
    real_sort = cache_mod._sorted_segment

    def counting_sort(*args: object) -> object:
        sorts.append(1)
        return real_sort(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(cache_mod, "_sorted_segment", counting_sort)
    query = keys[np.random.default_rng(0).permutation(300)]
    found, got = VectorCache.open(tmp_path, "ns").get(query)
    assert found.all() and not sorts  # read in the stored order, not sorted again
    np.testing.assert_allclose(got, VectorCache.open(tmp_path, "ns").get(query)[1])
    want = vecs[[int(np.flatnonzero((keys == q).all(axis=1))[0]) for q in query]]
    np.testing.assert_allclose(got, want, atol=1e-3)

    np.save(order_path, np.zeros(300, np.int64))  # damaged: not a sorting permutation
    found, got = VectorCache.open(tmp_path, "ns").get(query)
    assert found.all() and sorts  # sorted again instead
    np.testing.assert_allclose(got, want, atol=1e-3)
