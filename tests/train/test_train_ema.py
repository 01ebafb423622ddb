"""The weight average (train.ema_decay) against a loop-based reference, and its place in the training loop
(its exact resume is in test_train_loop)."""

from __future__ import annotations

import pytest
import torch
from test_train_loop import _cfg, one_thread  # noqa: F401 (one_thread: the autouse fixture)
from train_world import encoder_for, planted_world, train_data

from linksage.train.ema import WeightAverage, decay_at
from linksage.train.loop import Trainer

CPU = torch.device("cpu")


def test_the_average_follows_the_reference_recurrence() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    avg = WeightAverage(net, decay=0.5)  # the configured decay takes over from the 9th update on
    ref = [[float(x) for x in p.detach().flatten()] for p in net.parameters()]
    for n in range(25):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        avg.update()
        d = min(0.5, (1 + n) / (10 + n))
        for i, p in enumerate(net.parameters()):
            ref[i] = [d * r + (1 - d) * float(w) for r, w in zip(ref[i], p.detach().flatten(), strict=True)]
    for a, r in zip(avg.average, ref, strict=True):
        torch.testing.assert_close(a.flatten(), torch.tensor(r), atol=1e-5, rtol=1e-5)
    assert avg.updates == 25 and decay_at(0.5, 0) == pytest.approx(0.1) and decay_at(0.5, 8) == 0.5
    # the configured decay takes over after (10 d - 1) / (1 - d) updates, as docs/training.md says
    assert decay_at(0.99, 889) < 0.99 and decay_at(0.99, 890) == 0.99


def test_applied_swaps_in_the_average_and_always_restores_the_live_weights() -> None:
    net = torch.nn.Linear(3, 2)
    avg = WeightAverage(net, decay=0.5)
    with torch.no_grad():
        net.weight.add_(1.0)
    live = net.weight.detach().clone()
    avg.update()  # first update: decay 0.1, so the average moves most of the way
    with pytest.raises(RuntimeError), avg.applied():
        torch.testing.assert_close(net.weight.detach(), avg.average[0])
        assert not torch.equal(net.weight.detach(), live)
        raise RuntimeError("inside the block")
    assert torch.equal(net.weight.detach(), live)


def test_a_mismatched_checkpoint_average_is_refused() -> None:
    avg = WeightAverage(torch.nn.Linear(3, 2), decay=0.5)
    with pytest.raises(ValueError, match="does not match this model's parameters"):
        avg.load({"updates": 3, "average": [torch.zeros(2, 3)]})
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
        WeightAverage(torch.nn.Linear(3, 2), decay=1.0)


def _first_param(trainer: Trainer) -> torch.Tensor:
    return next(trainer.model.parameters()).detach().clone()


def test_validation_and_the_final_model_read_the_average() -> None:
    world = planted_world(n_pages=200, k=6)
    kw: dict[str, object] = dict(steps=12, eval_every=4, checkpoint_every=0, dropout=0.0)
    cfg, plain_cfg = _cfg(**kw, ema_decay=0.5), _cfg(**kw)
    data, _ = train_data(world, cfg)
    trainer = Trainer(cfg, data, encoder_for(data, cfg), device=CPU)
    plain = Trainer(plain_cfg, data, encoder_for(data, plain_cfg), device=CPU)
    average = trainer.average
    assert average is not None
    live: list[torch.Tensor] = []
    averaged: list[torch.Tensor] = []

    def keep(done: int) -> None:
        live.append(_first_param(trainer))
        averaged.append(average.average[0].clone())

    fit = trainer.fit(on_step=keep)
    plain_live: list[torch.Tensor] = []
    plain.fit(on_step=lambda done: plain_live.append(_first_param(plain)))
    # validations (at steps 4, 8, 12) swap the average in and the live weights back: the live weights stay
    # those of a run without the average, step for step
    for a, b in zip(live, plain_live, strict=True):
        torch.testing.assert_close(a, b)
    assert [h["step"] for h in fit.history] == [4, 8, 12] and fit.best_step in (4, 8, 12)
    # the model holds the average as it was at the best step, not that step's live weights
    assert torch.equal(_first_param(trainer), averaged[fit.best_step - 1])
    assert not torch.equal(_first_param(trainer), live[fit.best_step - 1])


def test_without_validation_the_run_ends_on_the_average() -> None:
    world = planted_world(n_pages=200, k=6)
    cfg = _cfg(steps=12, eval_every=0, checkpoint_every=0, dropout=0.0, ema_decay=0.5)
    data, _ = train_data(world, cfg)
    data.val = None
    trainer = Trainer(cfg, data, encoder_for(data, cfg), device=CPU)
    live: list[torch.Tensor] = []
    fit = trainer.fit(on_step=lambda done: live.append(_first_param(trainer)))
    assert fit.best_step == 0 and trainer.average is not None
    for p, a in zip(trainer.model.parameters(), trainer.average.average, strict=True):
        assert torch.equal(p.detach(), a)
    assert not torch.equal(_first_param(trainer), live[-1])
