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
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

BATCH = 8_192  # query vectors per faiss call
METHODS = ("cells", "knn")
ROWS = 8_192  # rows per task when projecting and assigning; candidate pairs per task when scoring
TILE = 1 << 22  # entries of a Gram tile (16 MiB of float32)
CELL_SPLIT = 4  # a cell of more than this many times the mean cell size is split by k-means
SMALL_CELL = 0.25  # the vectors of a cell of less than this many times the mean size search a second cell
PAIRED_PROBES = 1  # other cells a vector that found a pair searches (2: +0.5 points of recall, +10% time)
PROBE_ROUNDS = 4  # rounds of second probes at most
SPLIT_DEPTH = 3  # levels of splitting at most
KMEANS_SAMPLE = 32  # k-means trains on at most this many sample points per centroid
KMEANS_ITER = 10


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
                pa, pb, search = _Cells(vectors, rep_rows, threshold, k, nprobe, pca_dim, seed, threads).pairs()
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
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # only numpy's BLAS is left at its default
        yield
        return
    with threadpool_limits(threads, user_api="blas"):
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


class _Cells:
    """Candidates within k-means cells over a PCA projection: all pairs of a cell by one Gram matrix.

    The projection ``y = P^T x`` is orthonormal (the top eigenvectors of a sample's covariance; no
    centring, which distances do not need), so a unit vector is ``x = P y + r`` with ``r`` orthogonal to
    the projection and ``|r| = rho = sqrt(1 - |y|^2)``, and ``cos(x_i, x_j) <= y_i . y_j + rho_i rho_j``
    (Cauchy-Schwarz on the residuals): a pair whose bound misses the threshold (less a little slack for
    float32 sums) cannot reach it. It is the "projection only shrinks distances" rule, made tighter.

    The work is many small matmuls (a cell's Gram matrix, a chunk of rows against the centroids): they
    run on a pool of ``threads`` Python threads with single-threaded BLAS, which on a shared machine is
    several times faster than multi-threaded BLAS on each (whose threads wait for the slowest), and
    each result depends on neither the thread count nor the order the tasks finish in.
    """

    def __init__(
        self, vectors: np.ndarray, rows: np.ndarray, threshold: float, k: int, nprobe: int, pca_dim: int, seed: int,
        threads: int,
    ) -> None:  # fmt: skip
        self.vectors, self.rows = vectors, rows
        # float16 rows are converted by a table, in numba (numpy's conversion is several times slower)
        self.words = vectors.view(np.uint16) if vectors.dtype == np.float16 and vectors.flags.c_contiguous else None
        self.threshold, self.k, self.nprobe = threshold, k, nprobe
        self.bound = 2.0 * (1.0 - threshold) + 1e-3  # squared distance: where the second probes look
        self.floor = threshold - 5e-4  # slack for float32 sums, as the knn path's 1e-3 on squared distances
        self.rng = np.random.default_rng(seed)
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.workers = threads or usable
        self.times: dict[str, float] = {}
        self.proj: np.ndarray | None = None
        n, d = len(rows), vectors.shape[1]
        self.dim = pca_dim if 0 < pca_dim < d else d
        self.nlist = int(np.clip(np.sqrt(n / 2), 1, 65_536))  # fewer, larger cells than 4 sqrt(n) IVF lists

    def pairs(self) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        with _single_threaded_blas() as single, ThreadPoolExecutor(self.workers if single else 1) as pool:
            self.map = pool.map
            return self._pairs()

    def _pairs(self) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        t = time.perf_counter()
        cell = self._project_and_assign()
        self.times["train_assign_s"] = time.perf_counter() - t
        t = time.perf_counter()
        members, centroids, split = self._leaves(cell)
        leaf_of = np.empty(len(self.rows), np.int64)
        for leaf, m in enumerate(members):
            leaf_of[m] = leaf
        empty = np.zeros(0, np.int64)
        first = self._jobs([(m, empty, True) for m in members])
        self.times["cells_s"] = time.perf_counter() - t
        t = time.perf_counter()
        # Second probes, in rounds: the vectors that found a pair (or lie in a small cell), then those
        # that found their first pair in the round before, each search their nearest other cells.
        n = len(self.rows)
        sizes = np.bincount(leaf_of, minlength=len(members))
        small = sizes[leaf_of] < SMALL_CELL * n / self.nlist
        wanted = np.where(_touched(n, first[0]) | small, max(PAIRED_PROBES, self.nprobe - 1), self.nprobe - 1)
        probed = np.zeros(n, np.bool_)
        edges, counts, probes, rounds = [first[0]], list(first[1:]), 0, 0
        while rounds < PROBE_ROUNDS and (wanted[~probed] > 0).any():
            wanted[probed] = 0
            probed |= wanted > 0
            extra_of, extra_leaf = self._second_probes(leaf_of, centroids, wanted)
            order = np.argsort(extra_leaf, kind="stable")
            extra_of, extra_leaf = extra_of[order], extra_leaf[order]
            bounds = np.searchsorted(extra_leaf, np.arange(len(members) + 1))
            found = self._jobs(
                [(members[c], extra_of[bounds[c] : bounds[c + 1]], False) for c in np.flatnonzero(np.diff(bounds))]
            )
            edges.append(found[0])
            counts = [c + f for c, f in zip(counts, found[1:], strict=True)]
            probes += len(extra_of)
            rounds += 1
            wanted = _touched(n, found[0]).astype(np.int64)
        self.times["second_probe_s"] = time.perf_counter() - t
        a, b = np.concatenate([e[0] for e in edges]), np.concatenate([e[1] for e in edges])
        a, b = np.minimum(a, b), np.maximum(a, b)
        key = np.unique(a * len(self.rows) + b)  # a pair found from both of its cells counts once
        sizes = np.array([len(m) for m in members])
        pca = f"pca{self.dim}," if self.dim < self.vectors.shape[1] else ""
        stats = {
            "index": f"{pca}cells{self.nlist},nprobe{self.nprobe}",
            "candidate_pairs": counts[0],
            "cells": len(members),
            "largest_cell": int(sizes.max()),
            "split_cells": split,
            "second_probes": probes,
            "probe_rounds": rounds,
            "dense_tiles": counts[1],
            "dense_pairs": counts[2],
            **{name: round(s, 3) for name, s in self.times.items()},
            "search_s": round(self.times["cells_s"] + self.times["second_probe_s"], 3),  # all but the training
        }
        return key // len(self.rows), key % len(self.rows), stats

    def _unit_rows(self, idx: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``idx`` of the distinct vectors in float32, L2-normalised, and their inverse norms."""
        if self.words is not None:
            out, inv = _gather_unit(self.words, self.rows[idx], _HALF_TO_FLOAT)
            return out, inv
        x = np.asarray(self.vectors[self.rows[idx]], dtype=np.float32)
        inv = 1.0 / np.maximum(np.sqrt(np.einsum("ij,ij->i", x, x)), 1e-12, dtype=np.float32)
        return x * inv[:, None], inv

    def _project(self, x: np.ndarray) -> np.ndarray:
        return x @ self.proj if self.proj is not None else x

    def _project_and_assign(self) -> np.ndarray:
        """PCA and k-means on a sample, then every distinct vector projected and given its nearest cell."""
        n = len(self.rows)
        size = min(n, max(KMEANS_SAMPLE * self.nlist, 4 * self.vectors.shape[1]))
        sample, _ = self._unit_rows(np.sort(self.rng.choice(n, size, replace=False)))
        if self.dim < self.vectors.shape[1]:
            centred = sample - sample.mean(axis=0)
            _, eig = np.linalg.eigh((centred.T @ centred).astype(np.float64))  # ascending eigenvalues
            self.proj = np.ascontiguousarray(eig[:, ::-1][:, : self.dim], dtype=np.float32)
        centroids = _kmeans(self._project(sample), self.nlist, self.rng, self.map)
        self.nlist = len(centroids)
        half = 0.5 * np.einsum("ij,ij->i", centroids, centroids)
        self.y = np.empty((n, self.dim), np.float32)

        def chunk(lo: int) -> np.ndarray:
            x, _ = self._unit_rows(slice(lo, lo + ROWS))
            y = self.y[lo : lo + ROWS] = self._project(x)
            return _nearest_rows(y, centroids, half)

        cell = np.concatenate(list(self.map(chunk, range(0, n, ROWS))))
        # |residual| of each unit vector off the projection's span: cos(i, j) <= y_i . y_j + rho_i rho_j
        self.rho = np.sqrt(np.maximum(1.0 - np.einsum("ij,ij->i", self.y, self.y), 0.0))
        self.centroids = centroids
        return cell

    def _leaves(self, cell: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, int]:
        """The cells' members (ascending), cells over ``CELL_SPLIT`` times the mean size split by k-means."""
        order = np.argsort(cell, kind="stable")
        bounds = np.searchsorted(cell[order], np.arange(self.nlist + 1))
        mean = max(1.0, len(self.rows) / self.nlist)
        cell_max = CELL_SPLIT * mean
        stack = [(order[bounds[c] : bounds[c + 1]], self.centroids[c], 0) for c in range(self.nlist)][::-1]
        members, centroids, split = [], [], 0
        while stack:
            m, centre, depth = stack.pop()
            if len(m) == 0:
                continue
            if len(m) > cell_max and depth < SPLIT_DEPTH:
                sub_k = int(np.ceil(len(m) / mean))
                ym = self.y[m]
                size = min(len(m), KMEANS_SAMPLE * sub_k)
                sample = ym if size == len(m) else ym[np.sort(self.rng.choice(len(m), size, replace=False))]
                sub = _kmeans(sample, sub_k, self.rng, self.map)
                near = _nearest(ym, sub, self.map)
                if np.bincount(near).max() <= 0.9 * len(m):  # else k-means could not split it: one cell
                    split += 1
                    stack.extend((m[near == j], sub[j], depth + 1) for j in range(len(sub) - 1, -1, -1))
                    continue
            members.append(m)
            centroids.append(centre)
        return members, np.asarray(centroids, np.float32), split

    def _second_probes(
        self, leaf_of: np.ndarray, centroids: np.ndarray, wanted: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(vector, other cell) pairs to search: for each vector, the ``wanted`` cells whose boundary with
        its own is nearest, where that is within reach of the threshold.

        The distance from ``y`` to the hyperplane between centres ``c`` (its own) and ``c'`` is
        ``(s - s') / |c - c'|`` with ``s = y . c - |c|^2 / 2``; a neighbour of ``y`` within the threshold
        that lies nearer ``c'`` needs that distance within ``sqrt(bound)``.
        """
        who = np.flatnonzero(wanted)
        if len(who) == 0 or len(centroids) < 2:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        half = 0.5 * np.einsum("ij,ij->i", centroids, centroids)
        d2 = 2 * half[:, None] + 2 * half[None, :] - 2 * (centroids @ centroids.T)
        inv_gap = (1.0 / np.sqrt(np.maximum(d2, 1e-12))).astype(np.float32)  # 1 / |c - c'|
        most = min(int(wanted.max()), len(centroids) - 1)
        step = max(1, TILE // len(centroids))

        def chunk(lo: int) -> np.ndarray:
            v = who[lo : lo + step]
            out = np.full((len(v), most), -1, np.int64)
            s = self.y[v] @ centroids.T
            _nearest_boundaries(s, half, leaf_of[v], inv_gap, wanted[v], np.sqrt(self.bound), out)
            return out

        near = np.concatenate(list(self.map(chunk, range(0, len(who), step))))
        ok = near >= 0
        return np.repeat(who, ok.sum(axis=1)), near[ok]

    def _jobs(
        self, jobs: list[tuple[np.ndarray, np.ndarray, bool]]
    ) -> tuple[tuple[np.ndarray, np.ndarray], int, int, int]:
        """Edges (pairs of distinct-vector indices) from cell jobs; candidates, dense tiles, dense pairs."""
        results = list(self.map(self._job, jobs))
        cand_a = np.concatenate([np.zeros(0, np.int64)] + [r[0] for r in results])
        cand_b = np.concatenate([np.zeros(0, np.int64)] + [r[1] for r in results])

        def score(lo: int) -> np.ndarray:
            xa, _ = self._unit_rows(cand_a[lo : lo + ROWS])
            xb, _ = self._unit_rows(cand_b[lo : lo + ROWS])
            return np.einsum("ij,ij->i", xa, xb) >= self.threshold

        keep = np.concatenate([np.zeros(0, np.bool_), *self.map(score, range(0, len(cand_a), ROWS))])
        edge_a = np.concatenate([cand_a[keep]] + [r[2] for r in results])
        edge_b = np.concatenate([cand_b[keep]] + [r[3] for r in results])
        return (edge_a, edge_b), sum(r[4] for r in results), sum(r[5] for r in results), sum(r[6] for r in results)

    def _job(self, job: tuple[np.ndarray, np.ndarray, bool]) -> tuple[Any, ...]:
        """One cell: candidates among its own vectors ``d_idx`` (if ``within``) and of ``e_idx`` against them.

        Returns the candidates (to score), the edges of dense tiles, and counts: candidates, dense tiles,
        pairs in dense tiles.
        """
        d_idx, e_idx, within = job
        q = np.concatenate([d_idx, e_idx]) if len(e_idx) else d_idx
        nd = len(d_idx)
        yq, rho = self.y[q], self.rho[q]
        step = max(64, TILE // max(nd, 1))
        # Rows r0:r1 against columns r0:nd: three or more tiles skip most of the lower triangle.
        diag_step = max(64, min(step, -(-nd // 3)))
        tiles = [(r0, min(nd, r0 + diag_step), r0, True) for r0 in range(0, nd, diag_step)] if within else []
        tiles += [(r0, min(len(q), r0 + step), 0, False) for r0 in range(nd, len(q), step)]
        parent: np.ndarray | None = None
        xq: np.ndarray | None = None
        cand_r, cand_c, edge_r, edge_c = [], [], [], []
        candidates = dense_tiles = dense_pairs = 0
        for r0, r1, c0, diag in tiles:
            g = yq[r0:r1] @ yq[c0:nd].T
            cap = self.k * (r1 - r0)
            out_r, out_c = np.empty(cap, np.int64), np.empty(cap, np.int64)
            count = _tile_candidates(g, rho[r0:r1], rho[c0:nd], r0, c0, diag, self.floor, out_r, out_c)
            candidates += count
            if count <= cap:
                cand_r.append(out_r[:count])
                cand_c.append(out_c[:count])
                continue
            # Dense: exact cosines by one matmul; keep only the pairs that join two of the cell's components.
            if xq is None:
                xq = self._unit_rows(q)[0]
            if parent is None:
                parent = np.arange(len(q))
            exact = xq[r0:r1] @ xq[c0:nd].T
            out_r, out_c = np.empty(len(q), np.int64), np.empty(len(q), np.int64)
            found, kept = _tile_forest(exact, r0, c0, diag, self.threshold, parent, out_r, out_c)
            dense_tiles += 1
            dense_pairs += found
            edge_r.append(out_r[:kept])
            edge_c.append(out_c[:kept])
        empty = [np.zeros(0, np.int64)]
        r, c = np.concatenate(empty + cand_r), np.concatenate(empty + cand_c)
        if xq is not None or 4 * len(r) > len(q):  # cheaper to score here than to gather rows for each pair
            if xq is None:
                xq = self._unit_rows(q)[0]
            hit = _pair_dots(xq, r, c) >= self.threshold
            edge_r.append(r[hit])
            edge_c.append(c[hit])
            r, c = r[:0], c[:0]
        er, ec = np.concatenate(empty + edge_r), np.concatenate(empty + edge_c)
        return q[r], q[c], q[er], q[ec], candidates, dense_tiles, dense_pairs


def _touched(n: int, edges: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Whether each of ``n`` vectors is an end of one of ``edges``."""
    out = np.zeros(n, np.bool_)
    out[edges[0]] = out[edges[1]] = True
    return out


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[bool]:
    """numpy's BLAS on one thread inside (yields True), or as it is where threadpoolctl is missing (False)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    with threadpool_limits(1, user_api="blas"):
        yield True


def _nearest_rows(y: np.ndarray, centroids: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (Euclidean) of each row: ``argmax(y . c - |c|^2 / 2)``."""
    return _argmax_less(y @ centroids.T, half)


def _nearest(y: np.ndarray, centroids: np.ndarray, map_: Any = map) -> np.ndarray:
    """``_nearest_rows`` in chunks of ``ROWS`` rows, through ``map_``."""
    half = 0.5 * np.einsum("ij,ij->i", centroids, centroids)
    parts = map_(lambda lo: _nearest_rows(y[lo : lo + ROWS], centroids, half), range(0, len(y), ROWS))
    return np.concatenate([np.zeros(0, np.int64), *parts])


def _kmeans(y: np.ndarray, k: int, rng: np.random.Generator, map_: Any = map) -> np.ndarray:
    """Lloyd's k-means from ``k`` distinct sample points; an emptied centroid restarts at a random point."""
    k = min(k, len(y))
    centroids = y[np.sort(rng.choice(len(y), k, replace=False))].copy()
    for _ in range(KMEANS_ITER):
        near = _nearest(y, centroids, map_)
        counts = np.bincount(near, minlength=k)
        full = np.flatnonzero(counts)
        starts = (np.cumsum(counts) - counts)[full]
        sums = np.add.reduceat(y[np.argsort(near, kind="stable")], starts, axis=0)
        centroids[full] = sums / counts[full, None]
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            centroids[empty] = y[rng.choice(len(y), len(empty), replace=False)]
    return centroids


_HALF_TO_FLOAT = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)  # float16 bits -> value


@njit(cache=True, nogil=True)
def _gather_unit(words: np.ndarray, idx: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``idx`` of float16 ``words`` (as uint16) in float32, L2-normalised, and their inverse norms."""
    d = words.shape[1]
    out = np.empty((len(idx), d), np.float32)
    inv = np.empty(len(idx), np.float32)
    for i in range(len(idx)):
        total = 0.0
        for j in range(d):
            v = table[words[idx[i], j]]
            out[i, j] = v
            total += v * v
        r = np.float32(1.0 / max(np.sqrt(total), 1e-12))
        inv[i] = r
        for j in range(d):
            out[i, j] *= r
    return out, inv


@njit(cache=True, nogil=True)
def _argmax_less(s: np.ndarray, half: np.ndarray) -> np.ndarray:
    """``argmax(s - half, axis=1)`` in one pass (the first of equal maxima)."""
    out = np.empty(s.shape[0], np.int64)
    for i in range(s.shape[0]):
        best, arg = -np.inf, 0
        for j in range(s.shape[1]):
            v = s[i, j] - half[j]
            if v > best:
                best, arg = v, j
        out[i] = arg
    return out


@njit(cache=True, nogil=True)
def _nearest_boundaries(
    s: np.ndarray, half: np.ndarray, own: np.ndarray, inv_gap: np.ndarray, wanted: np.ndarray, reach: float,
    out: np.ndarray,
) -> None:  # fmt: skip
    """For each row, the ``wanted`` cells (at most ``out.shape[1]``) whose boundary with ``own`` is nearest.

    ``s`` holds the row's inner products with the centres; the distance to the boundary with cell ``j``
    is ``((s_own - half_own) - (s_j - half_j)) / |c_own - c_j|``. Cells beyond ``reach`` are left out;
    ``out`` (filled with -1) gets the cells, nearest boundary first.
    """
    most = out.shape[1]
    best = np.empty(most, np.float64)
    for i in range(s.shape[0]):
        o = own[i]
        k = min(wanted[i], most)
        if k == 0:
            continue
        best[:] = np.inf
        top = s[i, o] - half[o]
        for j in range(s.shape[1]):
            if j == o:
                continue
            dist = max(top - (s[i, j] - half[j]), 0.0) * inv_gap[o, j]
            if dist > reach or dist >= best[k - 1]:
                continue
            p = k - 1
            while p > 0 and best[p - 1] > dist:
                best[p] = best[p - 1]
                out[i, p] = out[i, p - 1]
                p -= 1
            best[p] = dist
            out[i, p] = j


@njit(cache=True, nogil=True)
def _tile_candidates(
    g: np.ndarray, rho_rows: np.ndarray, rho_cols: np.ndarray, row0: int, col0: int, diag: bool, floor: float,
    out_r: np.ndarray, out_c: np.ndarray,
) -> int:  # fmt: skip
    """Entries of a Gram tile whose cosine bound ``g + rho_r rho_c`` reaches ``floor``: how many, and the first
    ``len(out_r)`` of them.

    Row ``r`` is vector ``row0 + r`` of the cell's list, column ``c`` vector ``col0 + c``; with ``diag``
    (rows and columns from the same list) only pairs with column > row count.
    """
    cap = len(out_r)
    count = 0
    for r in range(g.shape[0]):
        rr = rho_rows[r]
        start = max(0, row0 + r + 1 - col0) if diag else 0
        for c in range(start, g.shape[1]):
            if g[r, c] + rr * rho_cols[c] >= floor:
                if count < cap:
                    out_r[count] = row0 + r
                    out_c[count] = col0 + c
                count += 1
    return count


@njit(cache=True, nogil=True)
def _pair_dots(x: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``x[r[i]] . x[c[i]]`` for each i."""
    out = np.empty(len(r), np.float32)
    for i in range(len(r)):
        a, b = x[r[i]], x[c[i]]
        total = np.float32(0.0)
        for j in range(x.shape[1]):
            total += a[j] * b[j]
        out[i] = total
    return out


@njit(cache=True, nogil=True)
def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True, nogil=True)
def _tile_forest(
    exact: np.ndarray, row0: int, col0: int, diag: bool, threshold: float, parent: np.ndarray, out_r: np.ndarray,
    out_c: np.ndarray,
) -> tuple[int, int]:  # fmt: skip
    """Pairs of a tile of exact cosines >= threshold: how many, and those that join two components of ``parent``.

    ``parent`` is a union-find forest over the cell's list, carried from tile to tile; the joining pairs
    are written to ``out_r``/``out_c`` (at most one per vector of the list, over all tiles).
    """
    found = 0
    kept = 0
    for r in range(exact.shape[0]):
        start = max(0, row0 + r + 1 - col0) if diag else 0
        for c in range(start, exact.shape[1]):
            if exact[r, c] >= threshold:
                found += 1
                i = _find(parent, row0 + r)
                j = _find(parent, col0 + c)
                if i != j:
                    parent[max(i, j)] = min(i, j)
                    out_r[kept] = row0 + r
                    out_c[kept] = col0 + c
                    kept += 1
    return found, kept


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
