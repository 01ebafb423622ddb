"""train.content_dropout: which pages' text is hidden, that nothing else changes, and where it never applies."""

from __future__ import annotations

import dataclasses

import torch
from test_train_loop import _cfg, one_thread  # noqa: F401 (one_thread: the autouse fixture)
from train_world import encoder_for, planted_world, train_data

from linksage.config.evaluate import EvaluateConfig
from linksage.evaluate.baselines import trained_variant
from linksage.train.loop import Trainer

CPU = torch.device("cpu")


def _trainer(**kw: object) -> tuple[Trainer, torch.Tensor]:
    world = planted_world(n_pages=300, k=6)
    cfg = _cfg(steps=6, eval_every=0, checkpoint_every=0, dropout=0.0, **kw)
    data, _ = train_data(world, cfg)
    return Trainer(cfg, data, encoder_for(data, cfg), device=CPU), torch.arange(256)


def test_whole_text_rows_are_hidden_at_the_configured_rate_and_nothing_else_moves() -> None:
    trainer, pages = _trainer(content_dropout=0.25)
    inputs = trainer.data.features.gather(pages, torch.float32)
    hidden = trainer.hide_content(inputs, step=3)
    zero = (hidden.self_text == 0).all(dim=1)
    # a hidden page has its whole text vector zeroed; a kept page has it untouched, bit for bit
    assert torch.equal(hidden.self_text[~zero], inputs.self_text[~zero])
    assert (inputs.self_text[zero] != 0).any(dim=1).all()
    assert 0.15 < zero.float().mean().item() < 0.35  # 256 draws at p = 0.25
    for name in inputs._fields:
        if name != "self_text" and getattr(inputs, name) is not None:
            assert torch.equal(getattr(hidden, name), getattr(inputs, name)), name
    # the same step hides the same pages (a resumed run repeats it); another step hides others
    again = (trainer.hide_content(inputs, step=3).self_text == 0).all(dim=1)
    other = (trainer.hide_content(inputs, step=4).self_text == 0).all(dim=1)
    assert torch.equal(again, zero) and not torch.equal(other, zero)


def test_off_by_default_and_the_training_step_runs_with_it() -> None:
    plain, pages = _trainer()
    inputs = plain.data.features.gather(pages, torch.float32)
    assert plain.hide_content(inputs, step=0) is inputs
    trainer, _ = _trainer(content_dropout=0.5)
    row = trainer.train_step(0)
    assert torch.isfinite(row).all()


def test_the_content_only_baseline_never_hides_its_only_input() -> None:
    train = dataclasses.replace(_cfg(content_dropout=0.3), dims=(16, 32, 64, 128, 256))
    content = trained_variant("content_only", train, EvaluateConfig(), target_dim=256)
    assert content.content_dropout == 0.0 and content.neighbours == 0
    single = trained_variant("single_dim_64", train, EvaluateConfig(), target_dim=256)
    assert single.content_dropout == 0.3  # the other baselines train as the graph model does
