"""Near-duplicate candidates within k-means cells: every pair of a cell, by one Gram matrix per cell.

The ``method="cells"`` path of ``linksage.graph.near_duplicates`` (read its docstring first): a PCA
projection, ``sqrt(n / 2)`` k-means cells (oversized cells split again), all pairs within a cell
pre-filtered by a bound on their full-dimension cosine and then scored exactly, second probes into the
nearest other cells for groups that straddle a boundary, and a spanning forest for dense tiles.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numba import njit

ROWS = 8_192  # rows per task when projecting and assigning; candidate pairs per task when scoring
TILE = 1 << 22  # entries of a Gram tile (16 MiB of float32)
CELL_SPLIT = 4  # a cell of more than this many times the mean cell size is split by k-means
SMALL_CELL = 0.25  # the vectors of a cell of less than this many times the mean size search a second cell
PAIRED_PROBES = 1  # other cells a vector that found a pair searches (2: +0.5 points of recall, +10% time)
PROBE_ROUNDS = 4  # rounds of second probes at most
SPLIT_DEPTH = 3  # levels of splitting at most
KMEANS_SAMPLE = 32  # k-means trains on at most this many sample points per centroid
KMEANS_ITER = 10


class CellPairs:
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
        with blas_threads(1) as single, ThreadPoolExecutor(self.workers if single else 1) as pool:
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
def blas_threads(threads: int) -> Iterator[bool]:
    """numpy's BLAS on ``threads`` threads inside (yields True), or as it is where threadpoolctl is missing (False)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    with threadpool_limits(threads, user_api="blas"):
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
