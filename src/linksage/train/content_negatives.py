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

NO_PIN = -1  # a list slot with no pin (a page with fewer candidates than the pool size)
# score-block budget in elements: (pages of a chunk) x (candidate pins); 256 MiB of float32 on a CPU
CPU_BLOCK = 1 << 26
CUDA_BLOCK = 1 << 28


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
    queries: Tensor,
    pins: Tensor,
    k: int,
    exclude_indptr: np.ndarray,
    exclude_indices: np.ndarray,
    *,
    block: int | None = None,
) -> Tensor:
    """(q, k) int64: for each query row, the k rows of ``pins`` with the highest cosine, best first, never
    one of that query's excluded rows (CSR ``exclude_indptr`` (q + 1,), ``exclude_indices`` into ``pins``);
    NO_PIN where fewer than k rows are left. A zero query has no list (all NO_PIN)."""
    n_q, n_p = queries.shape[0], pins.shape[0]
    out = torch.full((n_q, k), NO_PIN, dtype=torch.int64)
    k_eff = min(k, n_p)
    if n_q == 0 or k_eff == 0:
        return out
    device = pins.device
    budget = block or (CUDA_BLOCK if device.type == "cuda" else CPU_BLOCK)
    chunk = max(1, budget // n_p)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    p = torch.nn.functional.normalize(pins.to(device, torch.float32), dim=1).to(dtype)
    bar = log.progress(total=n_q, desc="content negatives", unit="page")
    for a in range(0, n_q, chunk):
        b = min(n_q, a + chunk)
        q = queries[a:b].to(device, torch.float32)
        norm = q.norm(dim=1)
        scores = (torch.nn.functional.normalize(q, dim=1).to(dtype) @ p.T).float()  # (c, n_p)
        lo, hi = int(exclude_indptr[a]), int(exclude_indptr[b])
        if hi > lo:
            rows = np.repeat(np.arange(b - a), np.diff(exclude_indptr[a : b + 1]))
            scores[torch.from_numpy(rows).to(device), torch.from_numpy(exclude_indices[lo:hi]).to(device)] = -torch.inf
        top = torch.topk(scores, k_eff, dim=1)
        idx = torch.where(torch.isfinite(top.values) & (norm[:, None] > 0), top.indices, NO_PIN)
        out[a:b, :k_eff] = idx.cpu()
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
    block: int | None = None,
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
    queries = torch.from_numpy(np.asarray(page_text[pages], dtype=np.float32))
    pins = torch.from_numpy(np.asarray(pin_target[cand], dtype=np.float32)).to(device)
    local = nearest_pins(queries, pins, pool, ex_indptr, col[order], block=block)
    table = torch.where(local >= 0, torch.from_numpy(cand)[local.clamp_min(0)], NO_PIN)
    has_list = (table >= 0).any(dim=1)
    page_row = torch.full((n_pages,), -1, dtype=torch.int64)
    page_row[torch.from_numpy(pages)] = torch.where(has_list, torch.arange(len(pages)), -1)
    return ContentNegatives(page_row=page_row.to(device), pins=table.to(device))
