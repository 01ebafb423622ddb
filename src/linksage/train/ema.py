"""An exponential moving average of a module's weights (``train.ema_decay``).

After each optimiser step the average moves towards the live weights: ``avg = d * avg + (1 - d) * w``,
with ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` earlier updates, so that the average never drags
the initial weights along: ``decay`` itself takes over after ``(10 decay - 1) / (1 - decay)`` updates
(890 for 0.99), until then the average spans about the last ninth of the run. Validation,
the best-weights copy and the saved model read the average; the optimiser keeps stepping the live
weights. Every floating-point parameter is averaged; buffers are left as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor


def decay_at(decay: float, updates: int) -> float:
    """The decay of the update after ``updates`` earlier ones (the warm-up above)."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class WeightAverage:
    """The averaged copies of ``module``'s floating-point parameters, in fp32 on their device."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight average's decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self._params = [p for p in module.parameters() if p.is_floating_point()]
        self.average = [p.detach().float().clone() for p in self._params]

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the live weights (after an optimiser step)."""
        live = [p.detach().float() for p in self._params]
        torch._foreach_lerp_(self.average, live, 1.0 - decay_at(self.decay, self.updates))
        self.updates += 1

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the module holds the averaged weights; the live ones come back after it."""
        live = [p.detach().clone() for p in self._params]
        _copy(self._params, self.average)
        try:
            yield
        finally:
            _copy(self._params, live)

    def copy_to_module(self) -> None:
        """Leave the averaged weights in the module for good (the end of a run without validation)."""
        _copy(self._params, self.average)

    def state(self) -> dict[str, object]:
        """What a checkpoint keeps: the average's own tensors (not copies), to be written at once."""
        return {"updates": self.updates, "average": list(self.average)}

    def load(self, state: dict[str, object]) -> None:
        average = state["average"]
        updates = state["updates"]
        if not isinstance(average, list) or len(average) != len(self.average) or not isinstance(updates, int):
            raise ValueError("the checkpoint's weight average does not match this model's parameters")
        for a, saved in zip(self.average, average, strict=True):
            if not isinstance(saved, Tensor) or saved.shape != a.shape:
                raise ValueError("the checkpoint's weight average does not match this model's parameters")
            a.copy_(saved)
        self.updates = updates


@torch.no_grad()
def _copy(dst: list[torch.nn.Parameter], src: list[Tensor]) -> None:
    for d, s in zip(dst, src, strict=True):
        d.copy_(s)
