"""Exact, batched Recall@K of pages' positive pins among a pool (validation and early stopping)."""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def recall_at_k(
    queries: Tensor, pool: Tensor, pair_row: Tensor, pair_col: Tensor, k: int = 100, chunk: int | None = None
) -> float:
    """Share of (query, positive) pairs whose positive outranks all but fewer than k of the query's negatives.

    queries (P, d) and pool (Q, d) are compared by dot product (pass L2-normalised rows for cosine);
    pair (pair_row[j], pair_col[j]) says pool item pair_col[j] is a positive of query pair_row[j]. A
    query's other positives are not counted as negatives. Exact: the k-th best negative of each query
    is found with top-k over its full score row, ``chunk`` queries at a time (default: score blocks of at
    most 256 MiB).
    """
    if pair_row.numel() == 0:
        return float("nan")
    order = torch.argsort(pair_row, stable=True)
    rows, cols = pair_row[order], pair_col[order]  # pairs grouped by query
    Q = pool.shape[0]
    chunk = chunk or max(1, min(4096, (1 << 26) // max(Q, 1)))
    hits = torch.zeros((), dtype=torch.long, device=queries.device)
    for lo in range(0, queries.shape[0], chunk):
        hi = min(lo + chunk, queries.shape[0])
        a, b = torch.searchsorted(rows, torch.tensor([lo, hi], device=rows.device)).tolist()
        if a == b:
            continue
        r, c = rows[a:b] - lo, cols[a:b]
        scores = queries[lo:hi].float() @ pool.float().T  # (b, Q)
        pos = scores[r, c]  # (n,)
        scores[r, c] = float("-inf")  # positives are not negatives
        kth = scores.topk(min(k, Q), dim=1).values[:, -1]  # (b,): k-th best negative, -inf if fewer than k
        hits += (pos >= kth[r]).sum()
    return float(hits.item()) / pair_row.numel()
