"""Exact batched Recall@K against a loop over pairs; chunked equals unchunked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_reference import loop_recall_at_k

from linksage.train.metrics import recall_at_k


@pytest.mark.parametrize("k", [1, 5, 30, 100])
def test_recall_matches_loop_reference(k: int) -> None:
    rng = np.random.default_rng(k)
    queries, pool = rng.normal(size=(23, 8)), rng.normal(size=(40, 8))
    pool[5] = pool[6]  # a tie
    positives = {q: set(rng.choice(40, rng.integers(1, 4), replace=False).tolist()) for q in range(0, 23, 2)}
    rows = [q for q, ps in positives.items() for _ in ps]
    cols = [p for ps in positives.values() for p in ps]
    want = loop_recall_at_k(queries @ pool.T, positives, k)
    args = (torch.tensor(queries), torch.tensor(pool), torch.tensor(rows), torch.tensor(cols), k)
    assert recall_at_k(*args) == pytest.approx(want)
    assert recall_at_k(*args, chunk=3) == pytest.approx(want)  # type: ignore[misc]


def test_recall_edge_cases() -> None:
    q, p = torch.eye(3), torch.eye(3)
    assert recall_at_k(q, p, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), k=1) == 1.0
    assert recall_at_k(q, p, torch.tensor([0]), torch.tensor([1]), k=1) == 0.0
    assert np.isnan(recall_at_k(q, p, torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)))
