"""The Matryoshka contrastive loss against a naive per-dim, per-row loop; the false-negative mask."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from train_reference import naive_false_negative_mask, naive_matryoshka_loss, naive_prefix_kl, naive_reverse_loss

from linksage.config import ConfigError, EvaluateConfig, TrainConfig
from linksage.evaluate.baselines import trained_variant
from linksage.loss import false_negative_mask, log_sampling_counts, matryoshka_contrastive_loss


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pos_pins = torch.tensor([3, 7, 3, 9, 11, 12])  # pin 3 twice: the same pin in two rows
    pos_pages = torch.tensor([0, 1, 2, 1, 4, 5])  # page 1 twice: rows 1 and 3 are each other's positives
    neg = torch.tensor([7, 20, 21, 20, 3])  # a repeat (20) and two of the batch's positives (7, 3)
    cand_pins = torch.cat([pos_pins, neg])
    targets = torch.randn(30, 24, generator=g, dtype=torch.float64)
    return pos_pins, pos_pages, cand_pins, targets[cand_pins]


def _loss_inputs(seed: int, use_mask: bool, use_log_q: bool) -> tuple[Any, ...]:
    """pages (6, 16), candidates, dims [4, 8, 16], weights, scales, and the mask and log_q when asked."""
    pos_pins, pos_pages, cand_pins, cands = _batch()
    g = torch.Generator().manual_seed(seed)
    pages = torch.randn(6, 16, generator=g, dtype=torch.float64, requires_grad=True)
    scales = torch.tensor([10.0, 14.0, 20.0], dtype=torch.float64, requires_grad=True)
    mask = false_negative_mask(pos_pins, pos_pages, cand_pins) if use_mask else None
    log_q = torch.rand(len(cand_pins), generator=g, dtype=torch.float64).log() if use_log_q else None
    return pages, cands, [4, 8, 16], [1.0, 0.5, 2.0], scales, mask, log_q


def _assert_same_values_and_grads(total: torch.Tensor, ref_total: torch.Tensor, wrt: list[torch.Tensor]) -> None:
    torch.testing.assert_close(total, ref_total)
    grads = torch.autograd.grad(total, wrt, retain_graph=True)
    ref_grads = torch.autograd.grad(ref_total, wrt)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_mask_matches_loop_reference() -> None:
    pos_pins, pos_pages, cand_pins, _ = _batch()
    got = false_negative_mask(pos_pins, pos_pages, cand_pins).numpy()
    want = naive_false_negative_mask(pos_pins.tolist(), pos_pages.tolist(), cand_pins.tolist())
    np.testing.assert_array_equal(got, want)
    assert not got[np.arange(6), np.arange(6)].any()  # a row's own positive is never masked
    assert got[0, 2] and got[2, 0]  # pin 3 is row 0's and row 2's positive
    assert got[1, 3] and got[3, 1]  # same page


def test_mask_with_candidate_pages_drops_the_rows_other_pins_anywhere() -> None:
    pos_pins, pos_pages, cand_pins, _ = _batch()
    # pins 20 and 21 (random columns 7-9) link to page 4 (row 4's page) and page 0 (row 0's page)
    pin_page = torch.full((30,), -1)
    pin_page[pos_pins] = pos_pages
    pin_page[20], pin_page[21] = 4, 0
    cand_pages = pin_page[cand_pins]
    got = false_negative_mask(pos_pins, pos_pages, cand_pins, cand_pages).numpy()
    want = naive_false_negative_mask(pos_pins.tolist(), pos_pages.tolist(), cand_pins.tolist(), cand_pages.tolist())
    np.testing.assert_array_equal(got, want)
    assert got[4, 7] and got[0, 8]  # another pin of the row's own page, outside the in-batch columns
    assert not false_negative_mask(pos_pins, pos_pages, cand_pins).numpy()[4, 7]  # unseen without the pages
    assert not got[np.arange(6), np.arange(6)].any()


def test_each_row_scores_each_distinct_pin_once() -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        pos_pins = torch.randint(0, 15, (8,), generator=g)
        pos_pages = torch.randint(0, 6, (8,), generator=g)
        cand = torch.cat([pos_pins, torch.randint(0, 15, (10,), generator=g)])
        mask = false_negative_mask(pos_pins, pos_pages, cand)
        for i in range(8):
            kept = cand[~mask[i]].tolist()
            assert len(kept) == len(set(kept))
            assert int(pos_pins[i]) in kept


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("use_log_q", [False, True])
def test_loss_equals_naive_per_dim_loop(use_mask: bool, use_log_q: bool) -> None:
    pages, cands, dims, weights, scales, mask, log_q = _loss_inputs(2, use_mask, use_log_q)

    total, per_dim = matryoshka_contrastive_loss(pages, cands, dims, weights, scales, mask, log_q)
    ref_total, ref_per_dim = naive_matryoshka_loss(pages, cands, dims, weights, scales, mask, log_q)
    torch.testing.assert_close(per_dim, ref_per_dim)
    _assert_same_values_and_grads(total, ref_total, [pages, scales])


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("use_log_q", [False, True])
def test_prefix_distillation_equals_the_naive_kl(use_mask: bool, use_log_q: bool) -> None:
    pages, cands, dims, weights, scales, mask, log_q = _loss_inputs(4, use_mask, use_log_q)

    total, per_dim = matryoshka_contrastive_loss(pages, cands, dims, weights, scales, mask, log_q, distill=0.7)
    ref_ce, ref_per_dim = naive_matryoshka_loss(pages, cands, dims, weights, scales, mask, log_q)
    ref_total = ref_ce + 0.7 * naive_prefix_kl(pages, cands, dims, scales, mask, log_q)
    torch.testing.assert_close(per_dim, ref_per_dim)  # the per-dim figures stay the cross-entropies
    assert float(total.detach()) > float(ref_ce.detach()) + 1e-6  # the prefixes here rank unlike the full dim
    _assert_same_values_and_grads(total, ref_total, [pages, scales])


def test_prefix_distillation_moves_only_the_prefixes() -> None:
    pages, cands, dims, weights, scales, _, _ = _loss_inputs(5, False, False)
    plain, _ = matryoshka_contrastive_loss(pages, cands, dims, weights, scales)
    distilled, _ = matryoshka_contrastive_loss(pages, cands, dims, weights, scales, distill=1.0)
    g_pages, g_scales = torch.autograd.grad(distilled - plain, [pages, scales])
    # the largest dim is the teacher, held fixed: its own coordinates and temperature get nothing
    assert torch.count_nonzero(g_pages[:, 8:]) == 0 and float(g_scales[2]) == 0.0
    assert torch.count_nonzero(g_pages[:, :8]) > 0 and float(g_scales[0]) != 0.0


def test_prefix_distillation_is_zero_when_the_prefixes_rank_like_the_full_dim() -> None:
    g = torch.Generator().manual_seed(6)
    pages, cands = torch.zeros(5, 16, dtype=torch.float64), torch.zeros(9, 16, dtype=torch.float64)
    pages[:, :4] = torch.randn(5, 4, generator=g, dtype=torch.float64)  # every prefix is the whole vector
    cands[:, :4] = torch.randn(9, 4, generator=g, dtype=torch.float64)
    scales = torch.full((3,), 12.0, dtype=torch.float64)
    plain, _ = matryoshka_contrastive_loss(pages, cands, [4, 8, 16], [1.0, 1.0, 1.0], scales)
    distilled, _ = matryoshka_contrastive_loss(pages, cands, [4, 8, 16], [1.0, 1.0, 1.0], scales, distill=3.0)
    torch.testing.assert_close(distilled, plain)


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("use_log_q", [False, True])
def test_reverse_loss_equals_the_naive_pin_to_page_loop(use_mask: bool, use_log_q: bool) -> None:
    pages, cands, dims, weights, scales, mask, log_q = _loss_inputs(7, use_mask, use_log_q)

    total, per_dim = matryoshka_contrastive_loss(
        pages, cands, dims, weights, scales, mask, log_q, distill=0.3, reverse=0.6
    )
    ref_ce, ref_per_dim = naive_matryoshka_loss(pages, cands, dims, weights, scales, mask, log_q)
    ref_total = (
        ref_ce
        + 0.3 * naive_prefix_kl(pages, cands, dims, scales, mask, log_q)
        + 0.6 * naive_reverse_loss(pages, cands, dims, weights, scales, mask)
    )
    torch.testing.assert_close(per_dim, ref_per_dim)  # the per-dim figures stay page-to-pin
    _assert_same_values_and_grads(total, ref_total, [pages, scales])


def test_reverse_loss_ignores_the_random_negatives() -> None:
    pages, cands, dims, weights, scales, mask, _ = _loss_inputs(8, True, False)
    base, _ = matryoshka_contrastive_loss(pages, cands, dims, weights, scales, mask)
    both, _ = matryoshka_contrastive_loss(pages, cands, dims, weights, scales, mask, reverse=1.0)
    other = cands.clone()
    other[6:] = -other[6:]  # move only the columns past the batch's positives
    base2, _ = matryoshka_contrastive_loss(pages, other, dims, weights, scales, mask)
    both2, _ = matryoshka_contrastive_loss(pages, other, dims, weights, scales, mask, reverse=1.0)
    assert float((both - base).detach()) > 0.0  # the reverse term adds a positive cross-entropy
    torch.testing.assert_close(both - base, both2 - base2)  # and reads only the in-batch block


def test_single_dim_is_plain_infonce() -> None:
    g = torch.Generator().manual_seed(3)
    pages, cands = torch.randn(5, 8, generator=g), torch.randn(9, 8, generator=g)
    total, per_dim = matryoshka_contrastive_loss(pages, cands, [8], [1.0], torch.tensor([5.0]))
    logits = 5.0 * torch.nn.functional.normalize(pages, dim=1) @ torch.nn.functional.normalize(cands, dim=1).T
    torch.testing.assert_close(total, torch.nn.functional.cross_entropy(logits, torch.arange(5)))
    assert per_dim.shape == (1,)


def test_log_sampling_counts() -> None:
    counts = torch.tensor([3.0, 1.0, 0.0, 0.0])
    got = log_sampling_counts(counts, n_pairs=4, batch=2, random_negatives=8)
    want = torch.log(torch.tensor([2 * 3 / 4 + 2, 2 * 1 / 4 + 2, 2.0, 2.0]))
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ((), "needs at least one dim"),
        ((16, 0, 32), "every dim must be positive, got 0"),
        ((16, 64, 32), "must be strictly increasing (each a prefix of the next), got 32 after 64"),
        ((16, 16), "got 16 after 16"),
    ],
)
def test_dims_are_validated_with_helpful_errors(dims: tuple[int, ...], message: str) -> None:
    pages = torch.randn(2, 64)
    with pytest.raises(ConfigError) as err:
        matryoshka_contrastive_loss(pages, pages, dims, [1.0] * len(dims), torch.ones(len(dims)))
    assert message in str(err.value)


def test_dims_beyond_the_embedding_are_refused() -> None:
    with pytest.raises(ValueError, match="dims up to 64 need that many columns; pages have 32"):
        matryoshka_contrastive_loss(torch.randn(2, 32), torch.randn(2, 64), [16, 64], [1.0, 1.0], torch.ones(2))


def test_single_dim_baselines_train_without_distillation_and_content_only_with_it() -> None:
    # a single-dim model has no prefix to distil into: the same model either way, so one baseline key
    train = TrainConfig(dims=(16, 32, 64, 128, 256), prefix_distillation=4.0)
    single = trained_variant("single_dim_64", train, EvaluateConfig(), target_dim=256)
    assert single.prefix_distillation == 0.0 and single.dims == (64,)
    assert trained_variant("content_only", train, EvaluateConfig(), target_dim=256).prefix_distillation == 4.0
