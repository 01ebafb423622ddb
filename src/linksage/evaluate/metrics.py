"""Exact retrieval metrics: Recall@k and MRR of each query's positive pins among a candidate pool.

Definitions (also in docs/evaluation.md). At a Matryoshka dim ``d``, a query's score for a candidate is
the cosine of the two ``d``-prefixes (each re-normalised). For a query ``q`` with positives ``P_q``:

- ``rank(p) = 1 + #{c in pool, c != p : score(q, c) > score(q, p)}``: other positives count, and ties
  count in the positive's favour;
- ``recall@k(q) = #{p in P_q : rank(p) <= k} / |P_q|`` and Recall@k is its mean over queries;
- ``RR(q) = 1 / min_p rank(p)``, over the whole pool (no cut-off), and MRR is its mean over queries.

The search is exact and streamed: the pool is read in chunks (it may be a memory-mapped float16 array),
each chunk is prefix-normalised once and scored against every query batch with one torch matmul (CPU or
GPU); each block of scores is folded into the queries' running top-k (a numba heap kernel on CPU,
``torch.topk`` on GPU). Only the ``max_k`` best negative scores per query and a counter stay in memory,
so memory is ``O(n_queries * max_k + query_batch * pool_chunk)`` whatever the pool size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from linksage.errors import LinksageError
from linksage.evaluate._kernels import merge_block


@dataclass(frozen=True)
class Positives:
    """Positive pool rows of each query in CSR form: query ``i`` owns ``indices[indptr[i]:indptr[i + 1]]``."""

    indptr: np.ndarray  # int64 (n_queries + 1,)
    indices: np.ndarray  # int64 (nnz,) rows of the pool, unique within a query

    @classmethod
    def from_lists(cls, lists: Sequence[Sequence[int]]) -> Positives:
        counts = np.array([len(x) for x in lists], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        flat = [int(v) for x in lists for v in x]
        return cls(indptr, np.asarray(flat, dtype=np.int64))

    @property
    def n_queries(self) -> int:
        return len(self.indptr) - 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    def query_of_pair(self) -> np.ndarray:
        """Query index of every positive, aligned with ``indices``."""
        return np.repeat(np.arange(self.n_queries, dtype=np.int64), self.counts)


@dataclass(frozen=True)
class Ranks:
    """Ranks of the positives of every query at one dim."""

    positive_rank: np.ndarray  # int64 (nnz,) aligned with Positives.indices; max_k + 1 means "beyond max_k"
    positive_score: np.ndarray  # float32 (nnz,) cosine of each positive
    first_rank: np.ndarray  # int64 (n_queries,) exact rank of the best positive over the whole pool
    max_k: int


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextmanager
def _exact_matmul() -> Iterator[None]:
    # Training code may enable TF32 (10-bit mantissa); evaluation needs full fp32 scores.
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def prefix_normalise(x: np.ndarray | torch.Tensor, dim: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The first ``dim`` coordinates of each row, L2-normalised (zero rows stay zero)."""
    t = torch.from_numpy(np.array(x[:, :dim])) if isinstance(x, np.ndarray) else x[:, :dim]
    t = t.to(device=device, dtype=dtype)
    return torch.nn.functional.normalize(t, dim=1)


def _check_inputs(queries: np.ndarray, pool: np.ndarray, positives: Positives, dims: Sequence[int]) -> None:
    if queries.ndim != 2 or pool.ndim != 2:
        raise LinksageError(f"queries and pool must be 2-D, got shapes {queries.shape} and {pool.shape}")
    if positives.n_queries != len(queries):
        raise LinksageError(f"positives cover {positives.n_queries} queries, but there are {len(queries)} queries")
    if len(positives.indices) and (positives.indices.min() < 0 or positives.indices.max() >= len(pool)):
        bad = int(positives.indices[(positives.indices < 0) | (positives.indices >= len(pool))][0])
        raise LinksageError(f"positive pool row {bad} is outside the pool of {len(pool)} rows")
    if np.any(positives.counts == 0):
        q = int(np.flatnonzero(positives.counts == 0)[0])
        raise LinksageError(f"query {q} has no positive in the pool; drop such queries before evaluating")
    width = min(queries.shape[1], pool.shape[1])  # pins may be wider: prefixes are compared
    for d in dims:
        if not 0 < d <= width:
            raise LinksageError(
                f"dim {d} is outside 1..{width} (queries {queries.shape[1]}, pool {pool.shape[1]} wide)"
            )


def rank_positives(
    queries: np.ndarray,
    pool: np.ndarray,
    positives: Positives,
    dims: Sequence[int],
    *,
    max_k: int = 100,
    query_batch: int = 1024,
    pool_chunk: int = 65_536,
    device: str = "cpu",
    progress_desc: str | None = None,
    kernel: str = "auto",
) -> dict[int, Ranks]:
    """Exact ranks of every query's positives among the pool, at each Matryoshka dim (prefix).

    ``queries`` (n_q, D) and ``pool`` (n_pool, D') may be float16/32/64 and memory-mapped, and of different
    widths (each dim is a prefix of both); scores are in float64 when either input is float64, else float32.
    ``kernel`` picks how each block of scores joins the running top-k: ``numba`` (CPU: one pass, a heap
    per query), ``torch`` (top-k on the device), or ``auto`` (numba on CPU, torch elsewhere).
    """
    _check_inputs(queries, pool, positives, dims)
    dev = resolve_device(device)
    use_numba = kernel == "numba" or (kernel == "auto" and dev.type == "cpu")
    if use_numba and dev.type != "cpu":
        raise LinksageError(f"the numba kernel runs on CPU only, not on {dev}")
    dtype = torch.float64 if np.float64 in (queries.dtype, pool.dtype) else torch.float32
    n_q, nnz = len(queries), len(positives.indices)
    pair_query = positives.query_of_pair()
    by_col = np.argsort(positives.indices, kind="stable")  # pairs in pool order, to find a chunk's pairs
    sorted_cols = positives.indices[by_col]

    q_norm = {d: prefix_normalise(queries, d, dtype, dev) for d in dims}
    pq = torch.as_tensor(pair_query, device=dev)
    pc = torch.as_tensor(positives.indices, device=dev)
    best_first = {}  # an estimate of each query's best positive score, for the exact MRR count
    for d in dims:
        pos_vec = prefix_normalise(pool[positives.indices], d, dtype, dev) if nnz else torch.zeros(0, d)
        s = (q_norm[d][pq] * pos_vec).sum(1)
        best = torch.full((n_q,), -torch.inf, dtype=dtype, device=dev)
        best_first[d] = best.scatter_reduce(0, pq, s, reduce="amax")
    top_neg = {d: torch.full((n_q, max_k), -torch.inf, dtype=dtype, device=dev) for d in dims}
    above_first = {d: torch.zeros(n_q, dtype=torch.int64, device=dev) for d in dims}
    pos_score = {d: torch.zeros(nnz, dtype=dtype, device=dev) for d in dims}

    starts = range(0, len(pool), pool_chunk)
    if progress_desc is not None:
        from linksage.log import progress

        starts = progress(starts, desc=progress_desc, unit="chunk")
    with _exact_matmul(), torch.no_grad():
        for c0 in starts:
            c1 = min(c0 + pool_chunk, len(pool))
            lo, hi = np.searchsorted(sorted_cols, [c0, c1])
            chunk_pairs = torch.as_tensor(by_col[lo:hi], device=dev)
            raw = torch.from_numpy(np.array(pool[c0:c1])).to(dev)  # read and move each chunk once
            for d in dims:
                p_chunk = prefix_normalise(raw, d, dtype, dev)  # (C, d)
                for q0 in range(0, n_q, query_batch):
                    q1 = min(q0 + query_batch, n_q)
                    scores = q_norm[d][q0:q1] @ p_chunk.T  # (B, C)
                    ids = chunk_pairs[(pq[chunk_pairs] >= q0) & (pq[chunk_pairs] < q1)]
                    rows, cols = pq[ids] - q0, pc[ids] - c0
                    pos_score[d][ids] = scores[rows, cols]
                    scores[rows, cols] = -torch.inf  # positives are not negatives
                    if use_numba:  # shares memory with the CPU tensors: updates them in place
                        merge_block(
                            scores.numpy(), top_neg[d][q0:q1].numpy(), best_first[d][q0:q1].numpy(),
                            above_first[d][q0:q1].numpy(),
                        )  # fmt: skip
                        continue
                    above_first[d][q0:q1] += (scores > best_first[d][q0:q1, None]).sum(1)
                    k = min(max_k, c1 - c0)
                    chunk_top = torch.topk(scores, k, dim=1, sorted=False).values
                    merged = torch.cat([top_neg[d][q0:q1], chunk_top], dim=1)
                    top_neg[d][q0:q1] = torch.topk(merged, max_k, dim=1, sorted=False).values
    return {
        d: _finish_ranks(top_neg[d], pos_score[d], above_first[d], pair_query, n_q, max_k, query_batch) for d in dims
    }


def _finish_ranks(
    top_neg: torch.Tensor,
    pos_score: torch.Tensor,
    above_first: torch.Tensor,
    pair_query: np.ndarray,
    n_q: int,
    max_k: int,
    query_batch: int,
) -> Ranks:
    """Turn the best negative scores and the positives' scores into ranks."""
    ascending = torch.sort(top_neg, dim=1).values  # (n_q, max_k)
    neg_above = torch.zeros(len(pair_query), dtype=torch.int64, device=top_neg.device)
    pq = torch.as_tensor(pair_query, device=top_neg.device)
    for q0 in range(0, n_q, query_batch):  # bounded memory: (pairs of a batch, max_k)
        lo, hi = np.searchsorted(pair_query, [q0, min(q0 + query_batch, n_q)])
        seq = ascending[pq[lo:hi]]
        not_above = torch.searchsorted(seq, pos_score[lo:hi, None].contiguous(), right=True)[:, 0]
        neg_above[lo:hi] = max_k - not_above
    neg_above_np = neg_above.cpu().numpy()
    score = pos_score.cpu().numpy()
    pos_above = _positives_above(pair_query, score)
    beyond = neg_above_np >= max_k  # all max_k kept negatives beat it: rank > max_k
    rank = np.where(beyond, max_k + 1, np.minimum(1 + neg_above_np + pos_above, max_k + 1))

    first = np.full(n_q, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, pair_query, rank)
    exact_beyond = np.maximum(1 + above_first.cpu().numpy(), max_k + 1)
    first = np.where(first > max_k, exact_beyond, first)
    return Ranks(
        positive_rank=rank.astype(np.int64), positive_score=score.astype(np.float32), first_rank=first, max_k=max_k
    )


def _positives_above(pair_query: np.ndarray, score: np.ndarray) -> np.ndarray:
    """For each positive, how many positives of the same query score strictly higher."""
    n = len(score)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((-score, pair_query))  # by query, then score descending
    q, s = pair_query[order], score[order]
    pos = np.arange(n)
    new_query = np.r_[True, q[1:] != q[:-1]]
    new_value = new_query | np.r_[True, s[1:] != s[:-1]]
    group_start = np.maximum.accumulate(np.where(new_query, pos, 0))
    run_start = np.maximum.accumulate(np.where(new_value, pos, 0))
    out = np.empty(n, dtype=np.int64)
    out[order] = run_start - group_start
    return out


def per_query_metrics(ranks: Ranks, positives: Positives, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """``{"recall@k": (n_q,), ..., "mrr": (n_q,)}``: each query's recall at each k and reciprocal rank."""
    out: dict[str, np.ndarray] = {}
    counts = positives.counts
    for k in ks:
        if k > ranks.max_k:
            raise LinksageError(f"recall@{k} needs max_k >= {k}, ranks were computed with max_k={ranks.max_k}")
        hits = np.bincount(positives.query_of_pair(), weights=ranks.positive_rank <= k, minlength=len(counts))
        out[f"recall@{k}"] = hits / counts
    out["mrr"] = 1.0 / ranks.first_rank
    return out


def mean_metrics(per_query: dict[str, np.ndarray], mask: np.ndarray | None = None) -> dict[str, float]:
    """Means over all queries, or over those where ``mask`` is true (NaN when the mask is empty)."""
    out = {}
    for name, values in per_query.items():
        chosen = values if mask is None else values[mask]
        out[name] = float(chosen.mean()) if len(chosen) else float("nan")
    return out


def top_k(
    queries: np.ndarray,
    pool: np.ndarray | torch.Tensor,  # a tensor already on ``device`` is read in place
    dim: int,
    k: int,
    *,
    pool_chunk: int = 65_536,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` pool rows of each query at ``dim``: (rows (n_q, k) int64, cosines (n_q, k)), best first."""
    dev = resolve_device(device)
    k = min(k, len(pool))
    q = prefix_normalise(queries, dim, torch.float32, dev)
    best_s = torch.full((len(q), k), -torch.inf, device=dev)
    best_i = torch.zeros((len(q), k), dtype=torch.int64, device=dev)
    with _exact_matmul(), torch.no_grad():
        for c0 in range(0, len(pool), pool_chunk):
            p = prefix_normalise(pool[c0 : c0 + pool_chunk], dim, torch.float32, dev)
            s, i = torch.topk(q @ p.T, min(k, len(p)), dim=1)
            merged_s = torch.cat([best_s, s], dim=1)
            merged_i = torch.cat([best_i, i + c0], dim=1)
            best_s, pos = torch.topk(merged_s, k, dim=1)
            best_i = torch.gather(merged_i, 1, pos)
    return best_i.cpu().numpy(), best_s.cpu().numpy()
