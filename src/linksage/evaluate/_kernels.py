"""CPU kernel of the exact search: merge a block of scores into each query's running top-k, in one pass.

torch.topk re-selects over the whole block; here each row keeps a min-heap of its k best scores and a
score enters only when it beats the heap's root, which after the first block is rare. The same pass
counts the scores above each row's best-positive score (for the exact MRR). Parallel over rows.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _sift_down(heap: np.ndarray, value: float) -> None:
    """Replace the root of a min-heap with ``value`` and restore the heap order."""
    n = heap.shape[0]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and heap[child + 1] < heap[child]:
            child += 1
        if heap[child] >= value:
            break
        heap[i] = heap[child]
        i = child
    heap[i] = value


@njit(cache=True, parallel=True)
def merge_block(scores: np.ndarray, heaps: np.ndarray, threshold: np.ndarray, above: np.ndarray) -> None:
    """scores (B, C); heaps (B, k) min-heaps, updated in place; above[r] += #{c : scores[r, c] > threshold[r]}."""
    for r in prange(scores.shape[0]):
        heap = heaps[r]
        root = heap[0]
        t = threshold[r]
        count = 0
        for c in range(scores.shape[1]):
            v = scores[r, c]
            if v > t:
                count += 1
            if v > root:
                _sift_down(heap, v)
                root = heap[0]
        above[r] += count
