"""Recall@k and MRR: the streamed exact search against a loop over every candidate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from evaluate_reference import loop_metrics

from linksage.errors import LinksageError
from linksage.evaluate.metrics import Positives, mean_metrics, per_query_metrics, rank_positives

KS = (1, 5, 10)


def _world(
    seed: int, n_q: int = 30, n_pool: int = 240, dim: int = 16
) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal((n_pool, dim))
    positives = [sorted(rng.choice(n_pool, size=rng.integers(1, 6), replace=False).tolist()) for _ in range(n_q)]
    # Queries near one of their positives, so that ranks spread over the whole range.
    queries = np.stack([pool[pos[0]] * rng.uniform(0, 1.5) + rng.standard_normal(dim) for pos in positives])
    return queries, pool, positives


@pytest.mark.parametrize(("seed", "kernel"), [(0, "numba"), (1, "numba"), (2, "torch"), (3, "torch")])
def test_matches_loop_reference_at_every_dim(seed: int, kernel: str) -> None:
    queries, pool, positives = _world(seed)
    dims = (4, 8, 16)
    ranks = rank_positives(queries, pool, Positives.from_lists(positives), dims, max_k=10, pool_chunk=50, kernel=kernel)
    for d in dims:
        fast = per_query_metrics(ranks[d], Positives.from_lists(positives), KS)
        slow = loop_metrics(queries, pool, positives, d, KS)
        for name in slow:
            np.testing.assert_allclose(fast[name], slow[name], rtol=0, atol=1e-12, err_msg=f"{name} at dim {d}")
    assert any(r.first_rank.max() > 10 for r in ranks.values())  # MRR beyond max_k was exercised


@pytest.mark.parametrize("kernel", ["numba", "torch"])
def test_ties_count_in_the_positives_favour(kernel: str) -> None:
    # Vectors with four +-1 entries: normalised entries are +-0.5, so every score is exact and ties are real.
    rng = np.random.default_rng(5)
    dim, n_pool = 8, 60

    def vectors(n: int) -> np.ndarray:
        out = np.zeros((n, dim))
        for row in out:
            idx = rng.choice(dim, 4, replace=False)
            row[idx] = rng.choice([-1.0, 1.0], 4)
        return out

    pool, queries = vectors(n_pool), vectors(20)
    pool[10:20] = pool[0]  # exact duplicates of a positive
    positives = [[0, 30] if i % 2 else [0] for i in range(20)]
    ranks = rank_positives(
        queries, pool, Positives.from_lists(positives), (dim,), max_k=20, pool_chunk=16, kernel=kernel
    )
    fast = per_query_metrics(ranks[dim], Positives.from_lists(positives), (1, 5, 20))
    slow = loop_metrics(queries, pool, positives, dim, (1, 5, 20))
    for name in slow:
        np.testing.assert_array_equal(fast[name], slow[name], err_msg=name)


def test_chunked_equals_full_in_float32() -> None:
    queries, pool, positives = _world(3, n_q=50, n_pool=500, dim=32)
    q32, p32 = queries.astype(np.float32), pool.astype(np.float32)
    pos = Positives.from_lists(positives)
    full = rank_positives(q32, p32, pos, (8, 32), max_k=20, query_batch=10_000, pool_chunk=10_000, kernel="torch")
    chunked = rank_positives(q32, p32, pos, (8, 32), max_k=20, query_batch=13, pool_chunk=71, kernel="numba")
    for d in (8, 32):
        np.testing.assert_array_equal(full[d].positive_rank, chunked[d].positive_rank)
        np.testing.assert_array_equal(full[d].first_rank, chunked[d].first_rank)
        np.testing.assert_allclose(full[d].positive_score, chunked[d].positive_score, atol=1e-6)


def test_memory_mapped_float16_pool(tmp_path: Path) -> None:
    queries, pool, positives = _world(4, dim=16)
    path = tmp_path / "pool.npy"
    np.save(path, pool.astype(np.float16))
    mapped = np.load(path, mmap_mode="r")
    pos = Positives.from_lists(positives)
    got = rank_positives(queries.astype(np.float32), mapped, pos, (16,), max_k=10, pool_chunk=64)[16]
    want = rank_positives(queries.astype(np.float32), pool.astype(np.float16).astype(np.float32), pos, (16,), max_k=10)
    np.testing.assert_array_equal(got.positive_rank, want[16].positive_rank)


def test_perfect_and_hopeless_queries() -> None:
    pool = np.eye(50)
    queries = np.eye(50)[:5]
    good = Positives.from_lists([[i] for i in range(5)])
    m = mean_metrics(per_query_metrics(rank_positives(queries, pool, good, (50,), max_k=10)[50], good, KS))
    assert m == {"recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0, "mrr": 1.0}
    # Query i's positive is the pin pointing the opposite way: every other pin (score 0) ranks above it.
    pool2 = np.vstack([np.eye(50), -np.eye(50)[:5]])
    bad = Positives.from_lists([[50 + i] for i in range(5)])
    ranks = rank_positives(queries, pool2, bad, (50,), max_k=10)[50]
    assert ranks.first_rank.tolist() == [55] * 5  # 54 candidates score higher (1 or 0 > -1)
    assert mean_metrics(per_query_metrics(ranks, bad, (10,)))["recall@10"] == 0.0


def test_positives_csr() -> None:
    pos = Positives.from_lists([[3, 1], [2], [0, 4, 5]])
    assert pos.query_of_pair().tolist() == [0, 0, 1, 2, 2, 2]
    assert pos.indptr.tolist() == [0, 2, 3, 6] and pos.counts.tolist() == [2, 1, 3] and pos.n_queries == 3


@pytest.mark.parametrize(
    ("positives", "dims", "message"),
    [
        ([[0], []], (4,), "query 1 has no positive in the pool"),
        ([[0], [99]], (4,), "positive pool row 99 is outside the pool of 10 rows"),
        ([[0], [1]], (5,), "dim 5 is outside 1..4"),
    ],
)
def test_bad_inputs_are_named(positives: list[list[int]], dims: tuple[int, ...], message: str) -> None:
    with pytest.raises(LinksageError, match=message):
        rank_positives(np.ones((2, 4)), np.ones((10, 4)), Positives.from_lists(positives), dims)


def test_recall_beyond_max_k_is_refused() -> None:
    pos = Positives.from_lists([[0]])
    ranks = rank_positives(np.ones((1, 4)), np.ones((10, 4)), pos, (4,), max_k=5)[4]
    with pytest.raises(LinksageError, match="recall@10 needs max_k >= 10"):
        per_query_metrics(ranks, pos, (10,))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_equals_cpu() -> None:
    queries, pool, positives = _world(6, n_q=200, n_pool=5000, dim=64)
    q32, p32 = queries.astype(np.float32), pool.astype(np.float32)
    pos = Positives.from_lists(positives)
    cpu = rank_positives(q32, p32, pos, (16, 64), max_k=100, device="cpu", pool_chunk=1000)
    gpu = rank_positives(q32, p32, pos, (16, 64), max_k=100, device="cuda", pool_chunk=1000)
    for d in (16, 64):
        # Different BLAS can flip exact near-ties; allow a handful of rank differences.
        assert (cpu[d].positive_rank != gpu[d].positive_rank).mean() < 0.01
        np.testing.assert_allclose(cpu[d].positive_score, gpu[d].positive_score, atol=1e-5)
