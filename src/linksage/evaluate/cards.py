"""Sampled query pages for the report: each page's top pins (exact search), its positives and neighbours."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from linksage.evaluate.embeddings import Embeddings, Evaluation
from linksage.evaluate.metrics import top_k
from linksage.evaluate.report import PageCard, PinHit


def sample_rows(n_queries: int, count: int, seed: int) -> np.ndarray:
    """``count`` distinct query rows, seeded, in ascending order."""
    count = min(count, n_queries)
    return np.sort(np.random.default_rng([seed, 3]).choice(n_queries, size=count, replace=False))


def build_cards(
    ev: Evaluation,
    emb: Embeddings,
    rows: np.ndarray,
    page_url: Callable[[int], str],
    pin_text: Callable[[int], str],
    neighbours: Callable[[int], Sequence[tuple[str, float]]],
    *,
    k: int = 10,
    device: str = "cpu",
    pool_chunk: int = 65_536,
) -> list[PageCard]:
    """One card per query row in ``rows``, scored with ``emb`` at its largest dim.

    ``page_url(row)`` and ``neighbours(row)`` take a query row; ``pin_text(pool_row)`` a pool row.
    """
    if len(rows) == 0:
        return []
    dim = emb.dims[-1]
    top_rows, top_scores = top_k(emb.pages[rows], emb.pins, dim, k, pool_chunk=pool_chunk, device=device)
    ranks = ev.main.ranks[dim]
    pos = ev.positives
    cards = []
    for i, row in enumerate(rows):
        lo, hi = pos.indptr[row], pos.indptr[row + 1]
        own = {
            int(p): (int(ranks.positive_rank[j]), float(ranks.positive_score[j]))
            for j, p in enumerate(pos.indices[lo:hi], lo)
        }
        hits = [
            PinHit(rank=str(r + 1), text=pin_text(int(p)), score=float(s), positive=int(p) in own)
            for r, (p, s) in enumerate(zip(top_rows[i], top_scores[i], strict=True))
        ]
        shown = {int(p) for p in top_rows[i]}
        missed = [
            PinHit(rank=_rank_label(rk, ranks.max_k), text=pin_text(p), score=sc, positive=True)
            for p, (rk, sc) in sorted(own.items(), key=lambda item: -item[1][1])
            if p not in shown
        ]
        tags = [name for name, mask in ev.slices.items() if mask[row]]
        baseline_ranks = {name: int(r.ranks[r.dims[-1]].first_rank[row]) for name, r in ev.baselines.items()}
        cards.append(
            PageCard(
                url=page_url(int(row)),
                tags=tags,
                degree=hi - lo,
                first_rank=int(ranks.first_rank[row]),
                neighbours=list(neighbours(int(row))),
                top_pins=hits,
                missed=missed,
                baseline_ranks=baseline_ranks,
            )
        )
    return cards


def _rank_label(rank: int, max_k: int) -> str:
    return f"> {max_k}" if rank > max_k else str(rank)
