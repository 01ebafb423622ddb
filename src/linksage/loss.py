"""Matryoshka softmax contrastive loss of pages against their positive pins' targets, as plain functions.

Candidates for a batch of B (page, positive pin) pairs are the B positive pins (in-batch negatives for
the other rows) followed by R random pins shared by the batch. Row i's positive is column i.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from linksage.config.train import check_dims


def false_negative_mask(
    pos_pins: Tensor, pos_pages: Tensor, cand_pins: Tensor, cand_pages: Tensor | None = None
) -> Tensor:
    """(B, C) bool, True = drop this candidate from row i's softmax.

    Drops, except at row i's own positive column i: any other column holding row i's positive pin,
    in-batch columns of the same page (another positive of row i), and every repeat of a pin already
    seen at an earlier column, so each row scores each distinct pin once. With ``cand_pages`` (C,), the
    page each candidate pin links to (-1 = none), also every other column whose pin links to row i's page.
    """
    B = pos_pins.shape[0]
    same_pin = cand_pins[None, :] == pos_pins[:, None]  # (B, C)
    same_page = torch.zeros_like(same_pin)
    same_page[:, :B] = pos_pages[None, :] == pos_pages[:, None]  # (B, B)
    if cand_pages is not None:  # e.g. a same-board negative that is another of the page's own pins
        same_page |= cand_pages[None, :] == pos_pages[:, None]
    order = torch.sort(cand_pins, stable=True).indices  # (C,)
    sorted_pins = cand_pins[order]
    repeat_sorted = torch.zeros_like(cand_pins, dtype=torch.bool)
    repeat_sorted[1:] = sorted_pins[1:] == sorted_pins[:-1]
    repeat = torch.zeros_like(repeat_sorted).scatter(0, order, repeat_sorted)  # (C,) not the first occurrence
    mask = same_pin | same_page | repeat[None, :]
    own = torch.arange(B, device=mask.device)
    mask[own, own] = False
    return mask


def matryoshka_contrastive_loss(
    pages: Tensor,
    candidates: Tensor,
    dims: Sequence[int],
    weights: Sequence[float],
    logit_scales: Tensor,
    mask: Tensor | None = None,
    log_q: Tensor | None = None,
    distill: float = 0.0,
    reverse: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Weighted sum over dims d of the softmax cross-entropy of row i against column i.

    pages (B, >= dims[-1]) raw embeddings; candidates (C, >= dims[-1]) targets, C >= B; prefixes of
    both are L2-normalised per dim. logit_scales (n_dims,) = 1 / temperature; mask (B, C) True = drop;
    log_q (C,) log expected count of each candidate in the sample (subtracted: the logQ correction).
    ``distill`` > 0 adds ``distill`` times the KL divergence from the largest dim's softmax over the
    candidates (held fixed: no gradient) to each smaller prefix's, averaged over rows and summed over
    the prefixes, so that a prefix learns the full embedding's ranking of all candidates, not only
    where the positive is. ``reverse`` > 0 adds, at that weight and with the same dim weights, the other
    direction: each positive pin (column i < B) against the batch's B pages, a softmax over the rows of
    the in-batch block of the same logits (masked alike; a column's log_q is constant down the column,
    so it cancels).
    Returns the total and the per-dim (page-to-pin) cross-entropies (n_dims,).

    One pass over the feature axis: each dim's dot products and norms extend the previous dim's, so
    all dims together cost one full-size matmul (a per-dim loop costs sum(dims) / max(dims) of them).
    """
    check_dims(tuple(dims))
    if pages.shape[1] < dims[-1] or candidates.shape[1] < dims[-1]:
        raise ValueError(
            f"dims up to {dims[-1]} need that many columns; pages have {pages.shape[1]}, "
            f"candidates {candidates.shape[1]}"
        )
    if len(weights) != len(dims) or logit_scales.shape != (len(dims),):
        raise ValueError(f"need one weight and one logit scale per dim {list(dims)}")
    distill = distill if len(dims) > 1 else 0.0  # one dim: no prefix to distil into
    B = pages.shape[0]
    labels = torch.arange(B, device=pages.device)
    dots = pages.new_zeros(B, candidates.shape[0])  # (B, C) running prefix dot products
    page_sq = pages.new_zeros(B)
    cand_sq = candidates.new_zeros(candidates.shape[0])
    per_dim = []
    log_probs = []  # (B, C) per dim, kept only for the distillation
    reverse_per_dim = []  # pin-to-page cross-entropies, only when asked
    lo = 0
    for k, hi in enumerate(dims):
        p, c = pages[:, lo:hi], candidates[:, lo:hi]  # (B, hi-lo), (C, hi-lo)
        dots = dots + p @ c.T
        page_sq = page_sq + p.square().sum(1)
        cand_sq = cand_sq + c.square().sum(1)
        cos = dots * torch.rsqrt(page_sq.clamp_min(1e-12))[:, None] * torch.rsqrt(cand_sq.clamp_min(1e-12))[None, :]
        logits = _logits(cos, logit_scales[k], mask, log_q)  # (B, C)
        log_p = F.log_softmax(logits, dim=1)
        per_dim.append(F.nll_loss(log_p, labels))
        if distill:
            log_probs.append(log_p)
        if reverse:
            # column j of the in-batch block scores pin j against every page of the batch
            reverse_per_dim.append(F.cross_entropy(logits[:, :B].T, labels))
        lo = hi
    losses = torch.stack(per_dim)  # (n_dims,)
    w = torch.tensor(weights, dtype=losses.dtype, device=losses.device)
    total = (w * losses).sum()
    if distill:
        total = total + distill * _prefix_kl(log_probs)
    if reverse:
        total = total + reverse * (w * torch.stack(reverse_per_dim)).sum()
    return total, losses


def _prefix_kl(log_probs: list[Tensor]) -> Tensor:
    """Sum over the prefixes of the mean over rows of KL(teacher || prefix), the teacher being the last
    dim's (B, C) log-probabilities with no gradient."""
    teacher = log_probs[-1].detach()
    p_t = teacher.exp()
    total = teacher.new_zeros(())
    for student in log_probs[:-1]:
        total = total + (p_t * (teacher - student)).sum(1).mean()
    return total


_DROPPED = -1e9


def _logits(cos: Tensor, scale: Tensor, mask: Tensor | None, log_q: Tensor | None) -> Tensor:
    logits = cos * scale
    if log_q is not None:
        logits = logits - log_q[None, :]
    if mask is not None:
        # a large finite negative, not -inf: a dropped candidate's probability is exactly 0 in fp32, and the
        # distillation's 0 * log p stays 0 (with a finite gradient)
        logits = logits.masked_fill(mask, _DROPPED)
    return logits


def log_sampling_counts(pin_counts: Tensor, n_pairs: int, batch: int, random_negatives: int) -> Tensor:
    """(n_pins,) log expected occurrences of each pin among one step's candidates.

    In-batch candidates are pins drawn in proportion to their training pairs; random ones uniformly.
    """
    n_pins = pin_counts.shape[0]
    expected = batch * pin_counts.double() / n_pairs + random_negatives / n_pins
    return expected.clamp_min(1e-30).log().float()
