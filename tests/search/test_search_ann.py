"""ANN index: exact re-ranking against a loop reference, recall against brute force, save/load, padding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from linksage.config import ConfigError
from linksage.config.store import IndexConfig
from linksage.errors import LinksageError
from linksage.search.ann import AnnIndex, default_nlist, normalise, pq_subquantisers, rerank_exact


def clustered(n: int, dim: int = 32, clusters: int = 40, seed: int = 0) -> np.ndarray:
    """Unit vectors around cluster centres, spread along a few directions per cluster (like real embeddings)."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.normal(size=(clusters, dim)))
    spread = rng.normal(size=(clusters, 4, dim)) / np.sqrt(dim)  # (C, 4, d) low-rank spread per cluster
    label = rng.integers(0, clusters, n)
    x = centres[label] + np.einsum("nr,nrd->nd", rng.normal(size=(n, 4)), spread[label])
    return normalise(x + 0.1 * rng.normal(size=(n, dim)) / np.sqrt(dim))


def brute_force(base: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    scores = normalise(q) @ base.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def test_rerank_exact_matches_a_loop_reference() -> None:
    rng = np.random.default_rng(0)
    vectors = normalise(rng.normal(size=(50, 8)))
    q = normalise(rng.normal(size=(3, 8)))
    rows = np.array([[4, 9, -1, 17, 2, 30], [-1, -1, 5, 6, 7, 8], [1, 2, 3, -1, -1, -1]])
    scores, top = rerank_exact(vectors, q, rows, k=4)
    for b in range(3):
        cands = [int(r) for r in rows[b] if r >= 0]
        ref = sorted(cands, key=lambda r: -float(vectors[r] @ q[b]))[:4]
        got = [int(r) for r in top[b] if r >= 0]
        assert got == ref
        assert np.allclose(scores[b, : len(ref)], [vectors[r] @ q[b] for r in ref], atol=1e-6)
    assert top[2].tolist()[3] == -1 and scores[2, 3] == -np.inf  # only three candidates: padded


def test_flat_index_is_exact_with_external_ids() -> None:
    base = clustered(800)
    ids = np.arange(800, dtype=np.int64) * 7 - 3000  # any int64, negatives included
    index = AnnIndex.build(base, ids, IndexConfig())  # auto: flat under exact_below
    assert index.params.kind == "flat"
    q = clustered(20, seed=1) * 3.0  # queries need not be unit length
    scores, found = index.search(q, 10)
    assert np.array_equal(found, ids[brute_force(base, q, 10)])
    assert np.all(np.diff(scores, axis=1) <= 1e-7)  # best first


@pytest.mark.parametrize("kind", ["ivfpq", "hnsw"])
def test_approximate_kinds_reach_high_recall_with_exact_scores(kind: str) -> None:
    base = clustered(6000, seed=2)
    q = clustered(50, seed=3)
    cfg = IndexConfig(kind=kind, nlist=32, nprobe=16, rerank=10, pq_m=16, hnsw_m=16, hnsw_ef_search=128)
    index = AnnIndex.build(base, np.arange(6000), cfg)
    scores, found = index.search(q, 20)
    assert recall(found, brute_force(base, q, 20)) >= 0.9
    exact = np.einsum("bkd,bd->bk", base[found], normalise(q))
    assert np.allclose(scores, exact, atol=1e-5)  # the returned scores are exact cosines


def test_more_probes_and_candidates_do_not_lower_recall() -> None:
    base, q = clustered(6000, seed=4), clustered(60, seed=5)
    index = AnnIndex.build(base, np.arange(6000), IndexConfig(kind="ivfpq", nlist=64, pq_m=16))
    truth = brute_force(base, q, 20)
    low = recall(index.search(q, 20, nprobe=1, rerank=1)[1], truth)
    high = recall(index.search(q, 20, nprobe=64, rerank=20)[1], truth)
    assert high >= low and high >= 0.95


def test_k_larger_than_the_set_is_padded() -> None:
    index = AnnIndex.build(clustered(5), np.arange(5), IndexConfig())
    scores, ids = index.search(clustered(1, seed=9), 8)
    assert sorted(ids[0, :5].tolist()) == [0, 1, 2, 3, 4]
    assert ids[0, 5:].tolist() == [-1, -1, -1] and np.all(np.isinf(scores[0, 5:]))


def test_empty_index_returns_only_padding() -> None:
    index = AnnIndex.build(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), IndexConfig())
    scores, ids = index.search(np.ones((2, 4), np.float32), 3)
    assert ids.tolist() == [[-1] * 3] * 2 and np.all(np.isinf(scores))


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_save_and_load_round_trip(tmp_path: Path, kind: str) -> None:
    base, q = clustered(3000, seed=6), clustered(10, seed=7)
    index = AnnIndex.build(base, np.arange(3000) + 10, IndexConfig(kind=kind, nlist=16))
    folder = index.save(tmp_path / "idx")
    loaded = AnnIndex.load(folder)
    assert isinstance(loaded.vectors, np.memmap)
    for a, b in zip(index.search(q, 15), loaded.search(q, 15), strict=True):
        assert np.array_equal(a, b)
    index.save(folder)  # overwriting keeps a complete folder, and no temporary leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(LinksageError, match="no ANN index at"):
        AnnIndex.load(tmp_path / "missing")
    index = AnnIndex.build(clustered(10), np.arange(10), IndexConfig())
    with pytest.raises(LinksageError, match="query dim 5 differs from the index's dim 32"):
        index.search(np.ones((1, 5), np.float32), 3)
    with pytest.raises(LinksageError, match="k must be positive"):
        index.search(np.ones((1, 32), np.float32), 0)
    with pytest.raises(LinksageError, match=r"store.index.pq_m: must divide the vectors' dim 32, got 5"):
        AnnIndex.build(clustered(2000), np.arange(2000), IndexConfig(kind="ivfpq", nlist=16, pq_m=5))


def test_index_config_validation() -> None:
    with pytest.raises(ConfigError, match=r"store.index.nprobe: must be <= store.index.nlist=8, got 16"):
        IndexConfig(nlist=8)
    with pytest.raises(ConfigError, match=r"store.index.rerank: must be positive, got 0"):
        IndexConfig(rerank=0)


def test_default_sizes() -> None:
    assert default_nlist(1_000_000) == 1024 and default_nlist(10) == 16
    assert pq_subquantisers(256) == 64 and pq_subquantisers(384) == 96 and pq_subquantisers(20) == 5
