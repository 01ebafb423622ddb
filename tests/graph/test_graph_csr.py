"""CSR build against a dict-of-lists reference; save and memory-map round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from linksage.graph.csr import csr_from_edges, csr_pair, csr_to_edges, load_csr, save_csr


def test_csr_matches_sorted_adjacency_lists() -> None:
    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, 50, 1_000), rng.integers(0, 70, 1_000)
    indptr, indices = csr_from_edges(src, dst, 60)
    assert indptr.dtype == np.int64 and indices.dtype == np.int32 and indptr.shape == (61,)
    for v in range(60):
        assert indices[indptr[v] : indptr[v + 1]].tolist() == sorted(dst[src == v].tolist())
    back_src, back_dst = csr_to_edges(indptr, indices)
    assert sorted(zip(back_src.tolist(), back_dst.tolist(), strict=True)) == sorted(
        zip(src.tolist(), dst.tolist(), strict=True)
    )


def test_pair_directions_are_transposes() -> None:
    a, b = np.array([0, 0, 2, 3]), np.array([1, 0, 1, 1])
    (ab_ptr, ab_idx), (ba_ptr, ba_idx) = csr_pair(a, b, 5, 2)
    assert ab_ptr.tolist() == [0, 2, 2, 3, 4, 4] and ab_idx.tolist() == [0, 1, 1, 1]
    assert ba_ptr.tolist() == [0, 1, 4] and ba_idx.tolist() == [0, 0, 2, 3]


def test_empty_and_bad_edges() -> None:
    indptr, indices = csr_from_edges(np.zeros(0), np.zeros(0), 3)
    assert indptr.tolist() == [0, 0, 0, 0] and len(indices) == 0
    with pytest.raises(ValueError, match=r"source index out of range \[0, 3\)"):
        csr_from_edges(np.array([3]), np.array([0]), 3)


def test_save_and_memory_map(tmp_path: Path) -> None:
    csr = csr_from_edges(np.array([0, 1, 1]), np.array([2, 0, 1]), 2)
    save_csr(tmp_path, "pin", "page", csr)
    assert (tmp_path / "pin__page.indptr.npy").exists() and (tmp_path / "pin__page.indices.npy").exists()
    indptr, indices = load_csr(tmp_path, "pin", "page")
    assert isinstance(indptr, np.memmap) and indptr.tolist() == [0, 1, 3] and indices.tolist() == [2, 0, 1]
