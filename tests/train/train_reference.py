"""Slow, obviously-correct references for the training kernels: loops over dims, rows and pairs."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from linksage.model import PageInputs
from linksage.train.features import PageFeatures


def naive_matryoshka_loss(
    pages: Tensor,
    candidates: Tensor,
    dims: list[int],
    weights: list[float],
    scales: Tensor,
    mask: Tensor | None = None,
    log_q: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """For each dim: normalise both prefixes, then per row -log softmax of column i over unmasked columns."""
    per_dim = []
    for k, d in enumerate(dims):
        p = pages[:, :d] / pages[:, :d].norm(dim=1, keepdim=True)
        c = candidates[:, :d] / candidates[:, :d].norm(dim=1, keepdim=True)
        row_losses = []
        for i in range(p.shape[0]):
            terms = []
            for j in range(c.shape[0]):
                if mask is not None and bool(mask[i, j]):
                    continue
                logit = (p[i] * c[j]).sum() * scales[k]
                if log_q is not None:
                    logit = logit - log_q[j]
                terms.append(logit)
                if j == i:
                    positive = logit
            row_losses.append(torch.logsumexp(torch.stack(terms), 0) - positive)
        per_dim.append(torch.stack(row_losses).mean())
    losses = torch.stack(per_dim)
    return sum(w * x for w, x in zip(weights, losses, strict=True)), losses  # type: ignore[return-value]


def naive_reverse_loss(
    pages: Tensor, candidates: Tensor, dims: list[int], weights: list[float], scales: Tensor, mask: Tensor | None = None
) -> Tensor:
    """Sum over dims of weight times the mean over positive pins j < B of -log softmax of page j among the
    batch's pages (rows i with mask[i, j] dropped)."""
    B = pages.shape[0]
    total = pages.new_zeros(())
    for k, d in enumerate(dims):
        p = pages[:, :d] / pages[:, :d].norm(dim=1, keepdim=True)
        c = candidates[:, :d] / candidates[:, :d].norm(dim=1, keepdim=True)
        col_losses = []
        for j in range(B):
            terms = []
            for i in range(B):
                if mask is not None and bool(mask[i, j]):
                    continue
                logit = (p[i] * c[j]).sum() * scales[k]
                terms.append(logit)
                if i == j:
                    positive = logit
            col_losses.append(torch.logsumexp(torch.stack(terms), 0) - positive)
        total = total + weights[k] * torch.stack(col_losses).mean()
    return total


def naive_false_negative_mask(
    pos_pins: list[int], pos_pages: list[int], cand_pins: list[int], cand_pages: list[int] | None = None
) -> np.ndarray:
    B, C = len(pos_pins), len(cand_pins)
    mask = np.zeros((B, C), dtype=bool)
    for i in range(B):
        for j in range(C):
            if j == i:
                continue
            repeat = cand_pins[j] in cand_pins[:j]
            same_page = (j < B and pos_pages[j] == pos_pages[i]) or (
                cand_pages is not None and cand_pages[j] == pos_pages[i]
            )
            mask[i, j] = cand_pins[j] == pos_pins[i] or same_page or repeat
    return mask


def loop_recall_at_k(scores: np.ndarray, positives: dict[int, set[int]], k: int) -> float:
    """Per (query, positive) pair: a hit when fewer than k of the query's negatives score higher."""
    hits = total = 0
    for q, pos in positives.items():
        for p in pos:
            higher = sum(1 for j in range(scores.shape[1]) if j not in pos and scores[q, j] > scores[q, p])
            hits += higher < k
            total += 1
    return hits / total if total else math.nan


def loop_gather(f: PageFeatures, pages: list[int]) -> PageInputs:
    """One page at a time, in plain Python indexing."""
    rows = []
    for p in pages:
        nbr = [int(x) for x in f.neighbours[p]]
        nbr_text = torch.stack([f.text[max(n, 0)].float() for n in nbr]) if nbr else torch.zeros(0, f.text_dim)
        nbr_image = torch.stack([f.nbr_image[max(n, 0)].float() for n in nbr]) if nbr else torch.zeros(0, f.image_dim)
        rows.append(
            (
                f.text[p].float(),
                f.image[p].float(),
                f.image_mask[p],
                f.degree_bucket[p].long(),
                nbr_text,
                nbr_image,
                torch.tensor([n >= 0 for n in nbr], dtype=torch.bool),
                torch.tensor([bool(f.has_image[max(n, 0)]) for n in nbr], dtype=torch.bool),
                f.log_visits[p].float(),
            )
        )
    core = [torch.stack([r[i] for r in rows]) for i in range(9)]
    nbr_mean = None
    if f.page_mean is not None and f.nbr_mean_ok is not None:
        nbr_mean = torch.stack(
            [
                torch.stack(
                    [
                        f.page_mean[max(int(n), 0)].float() * bool(f.nbr_mean_ok[p, j])
                        for j, n in enumerate(f.neighbours[p])
                    ]
                )
                for p in pages
            ]
        )
    if f.boards is None or f.board_text is None or not f.board_slots:
        return PageInputs(*core, nbr_mean=nbr_mean)
    ids = [[int(b) for b in f.boards[p]] for p in pages]
    board_text = torch.stack([torch.stack([f.board_text[max(b, 0)].float() for b in row]) for row in ids])
    return PageInputs(
        *core,
        board_text=board_text,
        board_ids=torch.tensor(ids, dtype=torch.int64),
        board_mask=torch.tensor([[b >= 0 for b in row] for row in ids], dtype=torch.bool),
        board_mean=None if f.board_mean is None else torch.stack([_loop_board_mean(f, p) for p in pages]),
        nbr_mean=nbr_mean,
    )


def _loop_board_mean(f: PageFeatures, p: int) -> Tensor:
    """Page p's board-mean slots: its corrected row where it has one, else its board's row (zeros: none)."""
    assert f.board_mean is not None and f.board_mean_fixed is not None and f.board_mean_at is not None
    assert f.boards is not None
    rows = []
    for b, at in zip(f.boards[p].tolist(), f.board_mean_at[p].tolist(), strict=True):
        if at >= 0:
            rows.append(f.board_mean_fixed[at].float())
        elif b >= 0:
            rows.append(f.board_mean[b].float())
        else:
            rows.append(torch.zeros(f.board_mean.shape[1]))
    return torch.stack(rows)


def loop_page_boards(page_pins: list[list[int]], pin_boards: list[list[int]], slots: int) -> list[list[int]]:
    """Each page's boards over its pins, by pin count descending then board id, -1 padded."""
    out = []
    for pins in page_pins:
        counts: dict[int, int] = {}
        for q in pins:
            for b in pin_boards[q]:
                counts[b] = counts.get(b, 0) + 1
        ranked = sorted(counts, key=lambda b: (-counts[b], b))[:slots]
        out.append(ranked + [-1] * (slots - len(ranked)))
    return out


def loop_board_means(
    page_pins: list[list[int]],
    pin_boards: list[list[int]],
    boards: np.ndarray,
    targets: np.ndarray,
    eligible: np.ndarray,
) -> np.ndarray:
    """For each (page, slot): the float64 mean target over the slot board's eligible pins that are not the
    page's own, pin by pin; zeros for an empty slot or when no such pin is left."""
    n_pages, slots = boards.shape
    out = np.zeros((n_pages, slots, targets.shape[1]))
    for p in range(n_pages):
        for s in range(slots):
            b = int(boards[p, s])
            if b < 0:
                continue
            members = [
                q for q in range(len(pin_boards)) if b in pin_boards[q] and eligible[q] and q not in page_pins[p]
            ]
            if members:
                out[p, s] = np.mean([targets[q].astype(np.float64) for q in members], axis=0)
    return out


def loop_page_means(page_pins: list[list[int]], targets: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Each page's float64 mean target over its eligible pins, zeros for none, page by page."""
    out = np.zeros((len(page_pins), targets.shape[1]))
    for p, pins in enumerate(page_pins):
        kept = [targets[q].astype(np.float64) for q in pins if eligible[q]]
        if kept:
            out[p] = np.mean(kept, axis=0)
    return out


def loop_shares_a_pin(page_pins: list[list[int]], neighbours: np.ndarray) -> np.ndarray:
    """True where the neighbour is the page itself or links one of the page's pins."""
    return np.array(
        [
            [n >= 0 and (n == p or bool(set(page_pins[p]) & set(page_pins[n]))) for n in row]
            for p, row in enumerate(neighbours)
        ]
    )


def naive_prefix_kl(
    pages: Tensor,
    candidates: Tensor,
    dims: list[int],
    scales: Tensor,
    mask: Tensor | None = None,
    log_q: Tensor | None = None,
) -> Tensor:
    """Per row, over its unmasked columns: KL(softmax of the largest dim, held fixed || softmax of each
    smaller prefix), averaged over rows and summed over the prefixes."""

    def row_log_probs(d: int, k: int, i: int) -> Tensor:
        p = pages[i, :d] / pages[i, :d].norm()
        c = candidates[:, :d] / candidates[:, :d].norm(dim=1, keepdim=True)
        cols = [j for j in range(c.shape[0]) if mask is None or not bool(mask[i, j])]
        logits = torch.stack([(p * c[j]).sum() * scales[k] - (0 if log_q is None else log_q[j]) for j in cols])
        return torch.log_softmax(logits, 0)

    total = pages.new_zeros(())
    last = len(dims) - 1
    for k, d in enumerate(dims[:-1]):
        rows = []
        for i in range(pages.shape[0]):
            teacher = row_log_probs(dims[-1], last, i).detach()
            rows.append((teacher.exp() * (teacher - row_log_probs(d, k, i))).sum())
        total = total + torch.stack(rows).mean()
    return total
