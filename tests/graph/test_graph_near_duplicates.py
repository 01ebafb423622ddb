"""Near-duplicate clusters against an all-pairs reference (the reference only: the code uses an index)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from graph_world import unit
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from linksage.graph import near_duplicate_cells
from linksage.graph.near_duplicates import near_duplicate_clusters


def planted(
    seed: int, n_random: int, groups: list[int], dim: int = 32, noise: tuple[float, float] = (0.02, 0.02)
) -> np.ndarray:
    """Random unit vectors plus groups of near-copies, shuffled (float16).

    Each group's copies are its centre plus Gaussian noise of a scale drawn from ``noise`` per group (per
    dimension): 0.02 gives cosines > 0.97 within a group; 0.04-0.075 spreads them over both sides of 0.9.
    """
    rng = np.random.default_rng(seed)
    parts = [rng.normal(size=(n_random, dim))]
    for size in groups:
        centre = rng.normal(size=dim)
        centre /= np.linalg.norm(centre)
        scale = noise[0] if noise[0] == noise[1] else rng.uniform(*noise)
        parts.append(centre + rng.normal(scale=scale, size=(size, dim)))
    x = np.concatenate(parts)
    return unit(x[rng.permutation(len(x))])


def reference_pairs(x: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (a < b) of rows with a vector at cosine >= threshold, by one dense matrix."""
    y = x.astype(np.float32)
    norms = np.linalg.norm(y, axis=1)
    ok = norms > 1e-6
    y[ok] /= norms[ok, None]
    sim = y @ y.T
    return np.nonzero(np.triu((sim >= threshold) & ok[:, None] & ok[None, :], 1))


def reference_partition(x: np.ndarray, threshold: float) -> set[frozenset[int]]:
    """All pairs: components of the cosine >= threshold graph, clusters of two or more."""
    return partition(reference_labels(x, threshold))


def reference_labels(x: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster ids of the all-pairs components (two or more pins), numbered by smallest pin; -1 otherwise."""
    a, b = reference_pairs(x, threshold)
    _, labels = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(len(x), len(x))), directed=False)
    sizes = np.bincount(labels)
    out, ids = np.full(len(x), -1, np.int32), {}
    for i, c in enumerate(labels):
        if sizes[c] >= 2:
            out[i] = ids.setdefault(int(c), len(ids))
    return out


def partition(pin_cluster: np.ndarray) -> set[frozenset[int]]:
    return {frozenset(np.flatnonzero(pin_cluster == c).tolist()) for c in range(pin_cluster.max() + 1)}


def near_duplicate_pairs(x: np.ndarray, threshold: float, **opts: Any) -> tuple[np.ndarray, np.ndarray, dict]:
    """The edges of the near-duplicate graph (row indices) and the stats."""
    result = near_duplicate_clusters(x, threshold, keep_edges=True, **opts)
    assert result.edges is not None
    return result.edges[0], result.edges[1], result.stats


def pair_set(a: np.ndarray, b: np.ndarray) -> set[tuple[int, int]]:
    return {(int(min(i, j)), int(max(i, j))) for i, j in zip(a, b, strict=True) if i != j}


def cosines(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    y = x.astype(np.float32)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return np.einsum("ij,ij->i", y[a], y[b])


def test_flat_index_matches_all_pairs() -> None:
    x = planted(0, 300, [2, 3, 5, 8])
    x[7] = x[8]  # an exact duplicate
    x[11] = 0.0  # a pin without a vector never clusters
    result = near_duplicate_clusters(x, 0.9, k=16)
    assert result.stats["index"] == "flat"
    assert partition(result.pin_cluster) == reference_partition(x, 0.9)
    assert result.pin_cluster[11] == -1
    assert result.n_clusters == len(reference_partition(x, 0.9)) >= 4


@pytest.mark.parametrize("method", ["cells", "knn"])
def test_ivf_index_finds_the_planted_groups(method: str) -> None:
    x = planted(1, 3_000, [2, 4, 6, 10, 3])
    result = near_duplicate_clusters(x, 0.9, k=16, exact_max=0, nprobe=8, method=method)
    assert result.stats["index"].startswith("ivf" if method == "knn" else "cells") and result.stats["method"] == method
    assert partition(result.pin_cluster) == reference_partition(x, 0.9)


@pytest.mark.parametrize("exact_max", [10_000, 0])  # the flat index; the cells (faiss's IVF needs 16+ vectors)
def test_cluster_ids_follow_smallest_member_and_singletons_have_none(exact_max: int) -> None:
    x = unit(np.array([[1, 0, 0], [0, 1, 0], [1, 0.01, 0], [0, 1, 0.01], [0, 0, 1]], np.float32))
    result = near_duplicate_clusters(x, 0.95, exact_max=exact_max)
    assert result.pin_cluster.tolist() == [0, 1, 0, 1, -1]
    assert result.stats["pins_in_clusters"] == 4 and result.stats["largest_cluster"] == 2


def test_cells_labels_equal_the_reference_for_groups_inside_cells() -> None:
    # Very tight groups (cosines > 0.999) of three or more, far from each other: each lies within a cell,
    # or the part of it in one cell finds the rest by a second probe, so the default settings give the
    # reference's clusters, numbered the same. (An isolated pair split by a cell boundary, or a group over
    # three cells whose second probes all pick the same neighbour, would be missed.)
    x = planted(2, 4_000, [3, 3, 4, 5, 7, 9, 12, 16, 3, 4], noise=(0.005, 0.005))
    x[100] = x[200]  # identical vectors: grouped before any search
    result = near_duplicate_clusters(x, 0.9, exact_max=0)
    assert result.stats["method"] == "cells" and result.stats["cells"] > 16
    assert result.pin_cluster.tolist() == reference_labels(x, 0.9).tolist()
    a, b, _ = near_duplicate_pairs(x, 0.9, exact_max=0)
    assert pair_set(a, b) == pair_set(*reference_pairs(x, 0.9))


@pytest.mark.parametrize(("dim", "pca_dim"), [(32, 128), (64, 16)])  # no projection; a projection to 16 dims
def test_cells_probing_every_reachable_cell_find_exactly_the_all_pairs(dim: int, pca_dim: int) -> None:
    # Copies whose cosines straddle the threshold. A vector searches every other cell whose boundary with
    # its own is within reach of the threshold: for cells that are not split that misses no pair, and
    # the candidates' bound in the projection (y_i . y_j + rho_i rho_j) drops none.
    noise = (0.04, 0.075) if dim == 32 else (0.03, 0.055)
    x = planted(3, 3_000, [2, 3, 4, 5, 6, 8, 2, 3, 4, 5, 2, 2], dim=dim, noise=noise)
    truth = pair_set(*reference_pairs(x, 0.9))
    opts = {"exact_max": 0, "nprobe": 10_000, "pca_dim": pca_dim}
    a, b, stats = near_duplicate_pairs(x, 0.9, **opts)
    assert stats["split_cells"] == 0 and stats["dense_tiles"] == 0 and stats["second_probes"] > len(x)
    assert stats["index"].startswith("cells" if pca_dim >= dim else f"pca{pca_dim},cells")
    assert len(truth) > 40 and pair_set(a, b) == truth
    labels = near_duplicate_clusters(x, 0.9, **opts).pin_cluster
    assert labels.tolist() == reference_labels(x, 0.9).tolist()


@pytest.mark.parametrize(("nprobe", "recall"), [(1, 0.85), (2, 0.92)])
def test_cells_recall_and_no_false_pairs(nprobe: int, recall: float) -> None:
    # The same kind of data, one cell per vector (plus a second for the vectors that found a pair) or two:
    # no pair below the threshold, and most reference pairs. The rest straddle cell boundaries: isolated
    # pairs among uniform vectors in 32 dimensions are the hard case (on embedding-like data at scale,
    # benchmarks/near_duplicates.py measures about 0.99 of the pairs of a sample).
    x = planted(4, 6_000, [2] * 40 + [3] * 20 + [5] * 10 + [9] * 4, noise=(0.03, 0.075))
    truth = pair_set(*reference_pairs(x, 0.9))
    a, b, stats = near_duplicate_pairs(x, 0.9, exact_max=0, nprobe=nprobe)
    found = pair_set(a, b)
    assert stats["candidate_pairs"] >= len(found) > 0
    assert cosines(x, a[a != b], b[a != b]).min() >= 0.9 - 1e-6
    assert len(truth) > 200 and found <= truth and len(found) >= recall * len(truth)


def test_cells_one_giant_group_of_near_identical_vectors() -> None:
    # 2,500 vectors all within cosine 0.9 of each other (3.1 M pairs), over many cells: the dense tiles keep
    # only edges that join components (memory and edges stay linear), the second probes join the cells.
    x = planted(5, 2_500, [2_500, 3, 4])
    result = near_duplicate_clusters(x, 0.9, exact_max=0)
    assert partition(result.pin_cluster) == reference_partition(x, 0.9)
    assert result.stats["largest_cluster"] == 2_500
    assert result.stats["dense_pairs"] > 100_000 and result.stats["pairs"] < 5 * len(x)


def test_cells_oversized_cells_are_split(monkeypatch: pytest.MonkeyPatch) -> None:
    # Split every cell over 1.5 times the mean size by a second k-means level: the same clusters.
    monkeypatch.setattr(near_duplicate_cells, "CELL_SPLIT", 1.5)
    x = planted(6, 4_000, [600, 3, 4, 5, 8], noise=(0.005, 0.005))
    result = near_duplicate_clusters(x, 0.9, exact_max=0)
    assert result.stats["split_cells"] > 0
    assert partition(result.pin_cluster) == reference_partition(x, 0.9)


def test_cells_is_deterministic_and_does_not_depend_on_threads() -> None:
    x = planted(7, 5_000, [2, 3, 40, 5, 8], noise=(0.02, 0.06))
    runs = [near_duplicate_clusters(x, 0.9, exact_max=0, seed=3, threads=t) for t in (2, 2, 1)]
    for run in runs[1:]:
        assert np.array_equal(run.pin_cluster, runs[0].pin_cluster)
        assert {k: v for k, v in run.stats.items() if not k.endswith("_s")} == {
            k: v for k, v in runs[0].stats.items() if not k.endswith("_s")
        }


def test_cells_float32_input_gives_the_float16_result() -> None:
    # float16 rows are converted by a table in numba, float32 rows by numpy: the same clusters.
    x = planted(8, 3_000, [3, 4, 5, 8])
    half = near_duplicate_clusters(x, 0.9, exact_max=0)
    full = near_duplicate_clusters(x.astype(np.float32), 0.9, exact_max=0)
    assert np.array_equal(half.pin_cluster, full.pin_cluster) and half.n_clusters >= 4


def test_cells_read_a_memory_mapped_file(tmp_path: Path) -> None:
    # The graph stage passes content/pin_text.npy memory-mapped, read-only.
    x = planted(9, 3_000, [3, 4, 5])
    np.save(tmp_path / "pin_text.npy", x)
    mapped = near_duplicate_clusters(np.load(tmp_path / "pin_text.npy", mmap_mode="r"), 0.9, exact_max=0)
    assert np.array_equal(mapped.pin_cluster, near_duplicate_clusters(x, 0.9, exact_max=0).pin_cluster)
    assert partition(mapped.pin_cluster) == reference_partition(x, 0.9)


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="method"):
        near_duplicate_clusters(planted(9, 10, [2]), 0.9, method="lsh")
