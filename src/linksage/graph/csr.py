"""CSR arrays of one edge type and direction: build from edge lists (checked index columns of the ingest
tables), save as ``.npy``, memory-map back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from numba import njit

from linksage.errors import InputError
from linksage.graph.schema import csr_stem

CSR = tuple[np.ndarray, np.ndarray]  # (indptr int64 (n_src + 1,), indices int32 (nnz,))


def index_column(table: pa.Table, column: str, n: int, path: Path, null: int | None = None) -> np.ndarray:
    """An ingest table's index column as int64, checked to lie in [0, n); nulls become ``null`` (or are an
    error). A bad row is an ``InputError`` naming the file, row, column and value."""
    col = table.column(column)
    if col.null_count:
        if null is None:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError("null index", file=path, row=row, column=column)
        col = col.fill_null(null)
    values = col.to_numpy(zero_copy_only=False).astype(np.int64)
    bad = (values >= n) | ((values < 0) if null is None else (values < null))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"index out of range [0, {n})", file=path, row=row, column=column, value=int(values[row]))
    return values


def csr_from_edges(src: np.ndarray, dst: np.ndarray, n_src: int) -> CSR:
    """CSR of edges ``src[i] -> dst[i]``; each row's neighbours sorted ascending (deterministic layout)."""
    src = np.ascontiguousarray(src, dtype=np.int64)
    dst = np.ascontiguousarray(dst, dtype=np.int64)
    if src.shape != dst.shape or src.ndim != 1:
        raise ValueError(f"src and dst must be 1-d and of equal length, got {src.shape} and {dst.shape}")
    if src.size and (src.min() < 0 or src.max() >= n_src):
        raise ValueError(f"source index out of range [0, {n_src}): {int(src.min())}..{int(src.max())}")
    if dst.size and dst.min() < 0:
        raise ValueError(f"negative destination index {int(dst.min())}")
    n_dst = int(dst.max()) + 1 if dst.size else 0
    indptr = np.zeros(n_src + 1, np.int64)
    indices = np.empty(src.shape[0], np.int32)
    _radix_csr(src, dst, n_dst, indptr, indices)
    return indptr, indices


@njit(cache=True)
def _radix_csr(src: np.ndarray, dst: np.ndarray, n_dst: int, indptr: np.ndarray, indices: np.ndarray) -> None:
    """Two stable counting sorts (by destination, then by source): O(edges + nodes), rows sorted."""
    n = src.shape[0]
    by_dst = np.zeros(n_dst + 1, np.int64)
    for i in range(n):
        by_dst[dst[i] + 1] += 1
    for j in range(n_dst):
        by_dst[j + 1] += by_dst[j]
    order = np.empty(n, np.int64)
    for i in range(n):
        order[by_dst[dst[i]]] = i
        by_dst[dst[i]] += 1
    for i in range(n):
        indptr[src[i] + 1] += 1
    for j in range(indptr.shape[0] - 1):
        indptr[j + 1] += indptr[j]
    fill = indptr[:-1].copy()
    for e in order:
        row = src[e]
        indices[fill[row]] = dst[e]
        fill[row] += 1


def csr_pair(a: np.ndarray, b: np.ndarray, n_a: int, n_b: int) -> tuple[CSR, CSR]:
    """Both directions of the undirected edges ``(a[i], b[i])``: (a -> b, b -> a)."""
    return csr_from_edges(a, b, n_a), csr_from_edges(b, a, n_b)


def csr_to_edges(indptr: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge lists (src int64, dst int64) of a CSR, in row order."""
    src = np.repeat(np.arange(indptr.shape[0] - 1, dtype=np.int64), np.diff(indptr))
    return src, np.asarray(indices, dtype=np.int64)


def csr_first(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """(n_src,) int64: each row's first neighbour, -1 for a row without one."""
    indptr = np.asarray(indptr)
    out = np.full(len(indptr) - 1, -1, dtype=np.int64)
    has = np.diff(indptr) > 0
    out[has] = np.asarray(indices)[indptr[:-1][has]]
    return out


def save_csr(folder: Path, src: str, dst: str, csr: CSR) -> None:
    indptr, indices = csr
    np.save(folder / f"{csr_stem(src, dst)}.indptr.npy", np.ascontiguousarray(indptr, dtype=np.int64))
    np.save(folder / f"{csr_stem(src, dst)}.indices.npy", np.ascontiguousarray(indices, dtype=np.int32))


def load_csr(folder: Path, src: str, dst: str) -> CSR:
    """Memory-map one CSR written by ``save_csr``."""
    stem = folder / csr_stem(src, dst)
    return np.load(f"{stem}.indptr.npy", mmap_mode="r"), np.load(f"{stem}.indices.npy", mmap_mode="r")
