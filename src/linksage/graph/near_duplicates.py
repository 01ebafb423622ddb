"""Near-duplicate pin clusters: pins whose content vectors have cosine >= threshold, joined transitively.

Never all pairs:

1. identical vectors are grouped first, by a 64-bit hash of their float16 bytes;
2. up to ``exact_max`` distinct vectors, each asks an exact faiss ``IndexFlatIP`` for ``k`` candidate
   neighbours, in batches. Beyond, the candidates come from a PCA projection to ``pca_dim``
   dimensions (``0`` = none), by one of two methods:

   - ``method="cells"`` (the default): ``sqrt(n / 2)`` k-means cells (about ``sqrt(2 n)`` vectors each;
     a cell of more than ``CELL_SPLIT`` times the mean is split again by k-means, so the work stays near
     ``n sqrt(n)`` inner products on skewed data), and every pair within a cell, by one Gram matrix per
     cell (in tiles), is a candidate: no cap of ``k`` per vector. Then a second probe: each vector
     that found a pair in its cell (or lies in a cell of less than ``SMALL_CELL`` times the mean size),
     and every vector when ``nprobe > 1``, also searches the ``max(1, nprobe - 1)`` (or ``nprobe - 1``)
     other cells whose boundary with its own is nearest, where that boundary is within reach of the
     threshold: this joins groups that straddle cells;
   - ``method="knn"`` (the implementation before the cells, kept as the baseline): an IVF index with
     ``4 sqrt(n)`` lists, ``nprobe`` searched, that each vector asks for its ``k`` nearest candidates;
3. candidates whose projection already rules out the threshold are dropped (a projection only shrinks
   distances; the cells method bounds the cosine by ``y_i . y_j + rho_i rho_j``, ``rho`` being the
   length of a unit vector's residual off the projection), the others are scored by their exact cosine
   in the full dimension.

Kept pairs are edges of a graph whose connected components of two or more pins are the clusters.
Pins that duplicate nothing (and pins with no vector) get no cluster: -1. Cluster ids are numbered in
the order of their smallest pin index.

In a dense tile of a cell (more than ``k`` candidates per vector on average, as in a large group of
near-identical vectors), the cells method scores the tile by one full-dimension matmul instead and
keeps only the pairs that join two components of what the cell found so far (a spanning forest): the
clusters are the same, the edges and the memory stay linear in the cell's size. ``stats["pairs"]``
counts the edges kept, ``stats["dense_pairs"]`` the pairs found in dense tiles.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from linksage.graph.near_duplicate_cells import CellPairs, blas_threads

BATCH = 8_192  # query vectors per faiss call
METHODS = ("cells", "knn")


@dataclass(frozen=True)
class NearDuplicates:
    pin_cluster: np.ndarray  # int32 (n_pins,), -1 = no cluster
    n_clusters: int
    stats: dict[str, Any] = field(default_factory=dict)
    # With keep_edges: the graph's edges as row indices (a, b). Every row with a vector is joined to the
    # first row with the same bytes (itself included); near-duplicate pairs join such first rows, a < b.
    edges: tuple[np.ndarray, np.ndarray] | None = None


def near_duplicate_clusters(
    vectors: np.ndarray,
    threshold: float,
    *,
    k: int = 16,
    nprobe: int = 1,
    exact_max: int = 10_000,
    pca_dim: int = 128,
    seed: int = 0,
    threads: int = 0,
    method: str = "cells",
    keep_edges: bool = False,
) -> NearDuplicates:
    """Cluster the rows of ``vectors`` (n, d) whose pairwise cosine reaches ``threshold``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if method not in METHODS:
        raise ValueError(f"method: one of {METHODS}, got {method!r}")
    t0 = time.perf_counter()
    n = vectors.shape[0]
    present, hashes = _present_and_hashes(vectors)
    # Identical vectors: one representative each (the first row with those bytes).
    rep_of, reps = _group_identical(hashes)
    rep_rows = present[reps]  # row index in `vectors` of each distinct vector
    a_parts = [present]
    b_parts = [rep_rows[rep_of]]
    search: dict[str, Any] = {"index": "none", "candidate_pairs": 0, "search_s": 0.0}
    if len(reps) > 1 and vectors.shape[1] > 0:
        with _threads(threads):
            if len(reps) <= exact_max or method == "knn":
                pa, pb, search = _knn_pairs(vectors, rep_rows, threshold, k, nprobe, exact_max, pca_dim, seed)
                search["method"] = "knn"
            else:
                pa, pb, search = CellPairs(vectors, rep_rows, threshold, k, nprobe, pca_dim, seed, threads).pairs()
                search["method"] = "cells"
        a_parts.append(rep_rows[pa])
        b_parts.append(rep_rows[pb])
    a, b = np.concatenate(a_parts), np.concatenate(b_parts)
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    pin_cluster = _clusters_from_labels(labels)
    sizes = np.bincount(pin_cluster[pin_cluster >= 0]) if n else np.zeros(0, np.int64)
    stats = {
        "pins_with_vector": len(present),
        "distinct_vectors": len(reps),
        **search,
        "pairs": int((a != b).sum()),
        "clusters": len(sizes),
        "pins_in_clusters": int(sizes.sum()),
        "largest_cluster": int(sizes.max()) if len(sizes) else 0,
        "mean_cluster_size": round(float(sizes.mean()), 3) if len(sizes) else 0.0,
        "total_s": round(time.perf_counter() - t0, 3),
    }
    edges = (a, b) if keep_edges else None
    return NearDuplicates(pin_cluster=pin_cluster, n_clusters=len(sizes), stats=stats, edges=edges)


@contextlib.contextmanager
def _threads(threads: int) -> Iterator[None]:
    """faiss's OpenMP threads and numpy's BLAS threads (0 = leave them as they are)."""
    if not threads:
        yield
        return
    import faiss

    faiss.omp_set_num_threads(threads)
    with blas_threads(threads):  # without threadpoolctl, numpy's BLAS is left at its default
        yield


def _knn_pairs(
    vectors: np.ndarray, rep_rows: np.ndarray, threshold: float, k: int, nprobe: int, exact_max: int, pca_dim: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:  # fmt: skip
    """Each distinct vector's ``k`` nearest candidates from a faiss index (flat or IVF): pairs ``i < j`` of reps."""
    index: _FlatSearch | _IvfSearch
    if len(rep_rows) <= exact_max:
        index = _FlatSearch(vectors, rep_rows)
    else:
        index = _IvfSearch(vectors, rep_rows, nprobe, pca_dim, seed)
    t = time.perf_counter()
    candidates = 0
    a_parts, b_parts = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    kk = min(k + 1, len(rep_rows))
    for lo in range(0, len(rep_rows), BATCH):
        queries = _unit(vectors[rep_rows[lo : lo + BATCH]])
        dist, nbrs = index.search(lo, queries, kk)
        rows = np.repeat(np.arange(lo, lo + len(queries)), kk)
        dist, nbrs = dist.ravel(), nbrs.ravel()
        # Each unordered pair once, and only pairs whose index score does not rule out the threshold.
        cand = (nbrs > rows) & index.may_reach(dist, threshold)
        rows, nbrs = rows[cand], nbrs[cand]
        candidates += len(rows)
        sims = np.einsum("ij,ij->i", queries[rows - lo], _unit(vectors[rep_rows[nbrs]]))
        hit = sims >= threshold
        a_parts.append(rows[hit])
        b_parts.append(nbrs[hit])
    stats = {"index": index.kind, "candidate_pairs": candidates, "search_s": round(time.perf_counter() - t, 3)}
    return np.concatenate(a_parts), np.concatenate(b_parts), stats


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows in float32, L2-normalised (the input is meant to be normalised already; float16 is not exact)."""
    x = np.asarray(x, dtype=np.float32)
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))


def _present_and_hashes(vectors: np.ndarray, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the rows that are not all zeros, and a 64-bit hash of each such row's float16 bytes."""
    idx_parts, hash_parts = [], []
    for lo in range(0, vectors.shape[0], chunk):
        words = np.ascontiguousarray(vectors[lo : lo + chunk], dtype=np.float16).view(np.uint16)
        hashes, nonzero = _row_hashes(words.reshape(len(words), -1))
        idx_parts.append(np.flatnonzero(nonzero) + lo)
        hash_parts.append(hashes[nonzero])
    if not idx_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    return np.concatenate(idx_parts), np.concatenate(hash_parts)


@njit(cache=True)
def _row_hashes(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FNV-1a over each row's 16-bit words, finished by splitmix64; and whether the row has a non-zero word.

    Two different rows collide with probability about 2**-64: such a pair would be taken as identical.
    """
    n, d = words.shape
    hashes = np.empty(n, np.uint64)
    nonzero = np.zeros(n, np.bool_)
    prime = np.uint64(0x100000001B3)
    for i in range(n):
        h = np.uint64(0xCBF29CE484222325)
        for j in range(d):
            w = words[i, j]
            if w & np.uint16(0x7FFF):  # +0 and -0 are both zero
                nonzero[i] = True
            h = (h ^ np.uint64(w)) * prime
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        hashes[i] = h ^ (h >> np.uint64(31))
    return hashes, nonzero


def _group_identical(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group of each row, first row of each group) for rows with equal hashes; groups ordered by first row."""
    if len(hashes) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse], first[order]


class _FlatSearch:
    """Exact inner products (cosines) against every distinct vector, by BLAS."""

    kind = "flat"

    def __init__(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        import faiss

        self.index = faiss.IndexFlatIP(vectors.shape[1])
        for lo in range(0, len(rows), BATCH * 8):
            self.index.add(_unit(vectors[rows[lo : lo + BATCH * 8]]))

    def search(self, lo: int, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        dist, nbrs = self.index.search(queries, k)
        return dist, nbrs

    @staticmethod
    def may_reach(cosine: np.ndarray, threshold: float) -> np.ndarray:
        return cosine >= threshold - 1e-3  # float16 inputs: a little slack before the exact check


class _IvfSearch:
    """IVF over a PCA projection: ``4 sqrt(n)`` lists, each vector's lists computed once for add and search.

    The queries are the indexed vectors themselves, so the coarse assignment made when adding is reused
    when searching (``nprobe`` nearest lists), which halves the coarse quantizer's cost.
    """

    def __init__(self, vectors: np.ndarray, rows: np.ndarray, nprobe: int, pca_dim: int, seed: int) -> None:
        import faiss

        d = vectors.shape[1]
        self.dim = pca_dim if 0 < pca_dim < d else d
        # More lists would make the coarse quantizer, not the list scans, the main cost.
        nlist = int(np.clip(4 * np.sqrt(len(rows)), 16, 65_536))
        sample = _unit(
            vectors[
                rows[np.sort(np.random.default_rng(seed).choice(len(rows), min(len(rows), 10 * nlist), replace=False))]
            ]
        )
        self.pca = faiss.PCAMatrix(d, self.dim) if self.dim < d else None
        if self.pca is not None:
            self.pca.train(sample)
        # After a projection, nearness is Euclidean: inner products of projected unit vectors are not cosines.
        self.ivf: Any = faiss.IndexIVFFlat(faiss.IndexFlatL2(self.dim), self.dim, nlist, faiss.METRIC_L2)
        self.ivf.cp.seed = seed
        self.ivf.cp.niter = 10
        self.ivf.cp.min_points_per_centroid = 8  # 10 sample points per list are enough for bucketing
        self.ivf.nprobe = nprobe
        self.ivf.train(self._project(sample))
        self.lists = np.empty((len(rows), nprobe), np.int64)
        for lo in range(0, len(rows), BATCH * 8):
            y = self._project(_unit(vectors[rows[lo : lo + BATCH * 8]]))
            _, assign = self.ivf.quantizer.search(y, nprobe)
            self.lists[lo : lo + len(y)] = assign
            first = np.ascontiguousarray(assign[:, 0])  # a name keeps it alive: swig_ptr holds no reference
            self.ivf.add_core(len(y), faiss.swig_ptr(y), None, faiss.swig_ptr(first))
        self.kind = f"pca{self.dim},ivf{nlist},nprobe{nprobe}" if self.pca is not None else f"ivf{nlist},nprobe{nprobe}"

    def _project(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.pca.apply(x) if self.pca is not None else x, dtype=np.float32)

    def search(self, lo: int, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        lists = np.ascontiguousarray(self.lists[lo : lo + len(queries)])
        coarse = np.zeros(lists.shape, np.float32)
        dist, nbrs = self.ivf.search_preassigned(self._project(queries), k, lists, coarse)
        return dist, nbrs

    @staticmethod
    def may_reach(sq_dist: np.ndarray, threshold: float) -> np.ndarray:
        # A projection only shrinks distances, and unit vectors at cosine >= t are within squared
        # distance 2 (1 - t): a candidate farther than that in the projection cannot reach t.
        return sq_dist <= 2.0 * (1.0 - threshold) + 1e-3


def _clusters_from_labels(labels: np.ndarray) -> np.ndarray:
    """Component labels -> cluster ids for components of size >= 2 (by smallest member), -1 otherwise."""
    n = len(labels)
    if n == 0:
        return np.zeros(0, np.int32)
    sizes = np.bincount(labels)
    _, first = np.unique(labels, return_index=True)  # first[c] = smallest pin of component c
    multi = sizes >= 2
    cid = np.full(len(sizes), -1, np.int64)
    order = np.argsort(first[multi], kind="stable")
    cid[np.flatnonzero(multi)[order]] = np.arange(int(multi.sum()))
    return cid[labels].astype(np.int32)
