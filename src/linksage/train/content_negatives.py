"""Content-mined hard negatives (``train.content_negatives``): the pins nearest each training page's own text.

For every training page, the ``train.content_negative_pool`` pins whose target vectors are nearest its own
text vector by cosine (the zero-shot ranking: one encoder for both), its own positive pins left out and,
for a time split, only pins created before the split date. Each step draws ``train.content_negatives`` of
them per positive, shared by the batch like the random and same-board negatives.

Why: among all pins, what outranks a page's posts is rarely a uniform random pin or a pin of the same
board; it is the pins whose titles read like the page's own text, most of them on other boards. These
negatives are those pins, so a model that can see the page's boards learns to set its posts apart from
them; a model that sees only the text cannot, which is the comparison the graph's gain is measured by.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from linksage import log
from linksage.evaluate.metrics import prefix_normalise, top_k

NO_PIN = -1  # a list slot with no pin (a page with fewer candidates than the pool size)
QUERY_CHUNK = 1024  # pages scored at a time: with top_k's pool chunks, a (1024 x 65,536) score block


@dataclass
class ContentNegatives:
    """Each training page's nearest pins, on the device."""

    page_row: Tensor  # (n_pages,) int64: the page's row in ``pins``, -1 = no list (not a training page)
    pins: Tensor  # (rows, M) int64 pin_idx, nearest first; NO_PIN past a page's candidates

    def draw(self, pages: Tensor, n_pins: int, gen: torch.Generator) -> Tensor:
        """One pin per entry of ``pages``, uniform over its page's list; a uniform random pin where the page
        has no list or the drawn slot is empty."""
        n = pages.numel()
        row = self.page_row.index_select(0, pages)
        col = torch.randint(self.pins.shape[1], (n,), device=pages.device, generator=gen)
        anywhere = torch.randint(n_pins, (n,), device=pages.device, generator=gen)
        got = self.pins[row.clamp_min(0), col]
        return torch.where((row >= 0) & (got >= 0), got, anywhere)


def nearest_pins(
    queries: np.ndarray,
    pins: np.ndarray | Tensor,
    k: int,
    exclude_indptr: np.ndarray,
    exclude_indices: np.ndarray,
    *,
    device: torch.device | None = None,
    query_chunk: int = QUERY_CHUNK,
) -> np.ndarray:
    """(q, k) int64: for each query row, the k rows of ``pins`` with the highest cosine, best first, never
    one of that query's excluded rows (CSR ``exclude_indptr`` (q + 1,), ``exclude_indices`` into ``pins``);
    NO_PIN where fewer than k rows are left. A zero query has no list (all NO_PIN).

    The exact search is the evaluate stage's ``top_k``, asked for as many extra rows as a query has
    exclusions at most, which are then dropped."""
    n_q = len(queries)
    out = np.full((n_q, k), NO_PIN, dtype=np.int64)
    if n_q == 0 or k == 0 or len(pins) == 0:
        return out
    device = device or (pins.device if isinstance(pins, Tensor) else torch.device("cpu"))
    pool = prefix_normalise(pins, pins.shape[1], torch.float32, device)  # once, on the device, for every chunk
    bar = log.progress(total=n_q, desc="content negatives", unit="page")
    for a in range(0, n_q, query_chunk):
        b = min(n_q, a + query_chunk)
        chunk = np.asarray(queries[a:b], dtype=np.float32)
        extra = int(np.diff(exclude_indptr[a : b + 1]).max())  # the chunk's most exclusions of one query
        rows, _ = top_k(chunk, pool, pool.shape[1], k + extra, device=str(device))
        drop = np.zeros(rows.shape, dtype=bool)
        lo, hi = int(exclude_indptr[a]), int(exclude_indptr[b])
        if hi > lo:  # each exclusion marks its query's columns that hold it
            owner = np.repeat(np.arange(b - a), np.diff(exclude_indptr[a : b + 1]))
            np.logical_or.at(drop, owner, rows[owner] == exclude_indices[lo:hi, None])
        drop[~np.any(chunk != 0, axis=1)] = True  # no text: no list
        order = np.argsort(drop, axis=1, kind="stable")[:, :k]  # the kept columns first, in score order
        picked = np.take_along_axis(rows, order, axis=1)
        picked[np.take_along_axis(drop, order, axis=1)] = NO_PIN
        out[a:b, : picked.shape[1]] = picked
        bar.update(b - a)
    bar.close()
    return out


def build_content_negatives(
    page_text: np.ndarray,
    pin_target: np.ndarray,
    train_pages: np.ndarray,
    own_page: np.ndarray,
    own_pin: np.ndarray,
    pool: int,
    device: torch.device,
    *,
    allowed_pins: np.ndarray | None = None,
    query_chunk: int = QUERY_CHUNK,
) -> ContentNegatives:
    """The lists of ``train_pages`` (sorted unique page_idx): their ``pool`` nearest pins among
    ``allowed_pins`` ((n_pins,) bool; None = all), leaving out each page's own pins (the pairs
    ``own_page[i] -> own_pin[i]``, e.g. every positive pair of the run)."""
    n_pages, n_pins = len(page_text), len(pin_target)
    pages = np.asarray(train_pages, dtype=np.int64)
    cand = np.arange(n_pins, dtype=np.int64) if allowed_pins is None else np.flatnonzero(allowed_pins)
    position = np.full(n_pins, -1, dtype=np.int64)  # a pin's row among the candidates
    position[cand] = np.arange(len(cand))
    own_page = np.asarray(own_page, dtype=np.int64)
    row = np.minimum(np.searchsorted(pages, own_page), max(len(pages) - 1, 0))
    col = position[np.asarray(own_pin, dtype=np.int64)]
    keep = (col >= 0) & (pages[row] == own_page) if len(pages) else np.zeros(len(own_page), dtype=bool)
    row, col = row[keep], col[keep]
    order = np.argsort(row, kind="stable")
    ex_indptr = np.zeros(len(pages) + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=len(pages)), out=ex_indptr[1:])
    pins = pin_target if allowed_pins is None else pin_target[cand]
    local = nearest_pins(page_text[pages], pins, pool, ex_indptr, col[order], device=device, query_chunk=query_chunk)
    table = np.where(local >= 0, cand[np.maximum(local, 0)], NO_PIN)
    page_row = np.full(n_pages, -1, dtype=np.int64)
    page_row[pages] = np.where((table >= 0).any(axis=1), np.arange(len(pages)), -1)
    return ContentNegatives(page_row=torch.from_numpy(page_row).to(device), pins=torch.from_numpy(table).to(device))
