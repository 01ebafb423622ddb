"""Near-duplicate clusters against an all-pairs reference (the reference only: the code uses an index)."""

from __future__ import annotations

import numpy as np
from graph_world import unit
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from linksage.graph.near_duplicates import near_duplicate_clusters


def planted(seed: int, n_random: int, groups: list[int], dim: int = 32) -> np.ndarray:
    """Random unit vectors plus groups of near-copies (cosine > 0.97 within a group), shuffled."""
    rng = np.random.default_rng(seed)
    parts = [rng.normal(size=(n_random, dim))]
    for size in groups:
        centre = rng.normal(size=dim)
        centre /= np.linalg.norm(centre)
        parts.append(centre + rng.normal(scale=0.02, size=(size, dim)))
    x = np.concatenate(parts)
    return unit(x[rng.permutation(len(x))])


def reference_partition(x: np.ndarray, threshold: float) -> set[frozenset[int]]:
    """All pairs: components of the cosine >= threshold graph, clusters of two or more."""
    y = x.astype(np.float32)
    norms = np.linalg.norm(y, axis=1)
    ok = norms > 1e-6
    y[ok] /= norms[ok, None]
    sim = y @ y.T
    a, b = np.nonzero((sim >= threshold) & ok[:, None] & ok[None, :])
    _, labels = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(len(x), len(x))), directed=False)
    groups: dict[int, set[int]] = {}
    for i, c in enumerate(labels):
        groups.setdefault(int(c), set()).add(i)
    return {frozenset(g) for g in groups.values() if len(g) >= 2}


def partition(pin_cluster: np.ndarray) -> set[frozenset[int]]:
    return {frozenset(np.flatnonzero(pin_cluster == c).tolist()) for c in range(pin_cluster.max() + 1)}


def test_flat_index_matches_all_pairs() -> None:
    x = planted(0, 300, [2, 3, 5, 8])
    x[7] = x[8]  # an exact duplicate
    x[11] = 0.0  # a pin without a vector never clusters
    result = near_duplicate_clusters(x, 0.9, k=16)
    assert result.stats["index"] == "flat"
    assert partition(result.pin_cluster) == reference_partition(x, 0.9)
    assert result.pin_cluster[11] == -1
    assert result.n_clusters == len(reference_partition(x, 0.9)) >= 4


def test_ivf_index_finds_the_planted_groups() -> None:
    x = planted(1, 3_000, [2, 4, 6, 10, 3])
    result = near_duplicate_clusters(x, 0.9, k=16, exact_max=0, nprobe=8)
    assert result.stats["index"].startswith("ivf")
    assert partition(result.pin_cluster) == reference_partition(x, 0.9)


def test_cluster_ids_follow_smallest_member_and_singletons_have_none() -> None:
    x = unit(np.array([[1, 0, 0], [0, 1, 0], [1, 0.01, 0], [0, 1, 0.01], [0, 0, 1]], np.float32))
    result = near_duplicate_clusters(x, 0.95)
    assert result.pin_cluster.tolist() == [0, 1, 0, 1, -1]
    assert result.stats["pins_in_clusters"] == 4 and result.stats["largest_cluster"] == 2
