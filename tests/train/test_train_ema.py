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
    avg = WeightAverage(net, decay=0.9)
    ref = [[float(x) for x in p.detach().flatten()] for p in net.parameters()]
    for n in range(25):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        avg.update()
        d = min(0.9, (1 + n) / (10 + n))
        for i, p in enumerate(net.parameters()):
            ref[i] = [d * r + (1 - d) * float(w) for r, w in zip(ref[i], p.detach().flatten(), strict=True)]
    for a, r in zip(avg.average, ref, strict=True):
        torch.testing.assert_close(a.flatten(), torch.tensor(r), atol=1e-5, rtol=1e-5)
    assert avg.updates == 25 and decay_at(0.9, 0) == pytest.approx(0.1) and decay_at(0.9, 1000) == 0.9
    # the configured decay takes over after (10 d - 1) / (1 - d) updates, as docs/training.md says
    assert decay_at(0.99, 889) < 0.99 and decay_at(0.99, 891) == 0.99


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


def test_validation_and_the_final_model_read_the_average() -> None:
    world = planted_world(n_pages=200, k=6)
    cfg = _cfg(steps=12, eval_every=0, checkpoint_every=0, dropout=0.0, ema_decay=0.8)
    data, _ = train_data(world, cfg)
    seen: list[torch.Tensor] = []
    trainer = Trainer(cfg, data, encoder_for(data, cfg), device=CPU)
    plain_cfg = _cfg(steps=12, eval_every=0, checkpoint_every=0, dropout=0.0)
    plain = Trainer(plain_cfg, data, encoder_for(data, plain_cfg), device=CPU)
    trainer.fit(on_step=lambda done: seen.append(next(trainer.model.parameters()).detach().clone()))
    plain.fit()
    assert trainer.average is not None
    first = next(trainer.model.parameters()).detach()
    # the run ends (end-of-run validation) on the average, not on the live weights of the last step
    torch.testing.assert_close(first, trainer.average.average[0])
    assert not torch.equal(first, seen[-1])
    # the live weights themselves are those of a run without the average: same steps, same batches
    torch.testing.assert_close(seen[-1], next(plain.model.parameters()).detach())
