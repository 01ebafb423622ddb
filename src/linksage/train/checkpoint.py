"""Training checkpoints: everything an exact resume needs, written atomically.

Model, optimiser and schedule states, the CPU and CUDA RNG states (dropout), and the loop's own state
(step, early stopping, best weights, the weight average of train.ema_decay, log file positions). A
checkpoint carries a key (config and upstream artifacts); one with another key is ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from linksage import log
from linksage.rundir import atomic_path


def save_checkpoint(
    path: Path,
    key: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    loop_state: dict[str, Any],
) -> None:
    blob = {
        "key": key,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "loop": loop_state,
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load_checkpoint(
    path: Path,
    key: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
) -> dict[str, Any] | None:
    """Restore everything from ``path`` and return the loop state; None (nothing touched) without a match."""
    if not path.exists():
        return None
    blob = torch.load(path, map_location=device, weights_only=False)
    if blob.get("key") != key:
        log.event("[train] checkpoint is from another config or input; starting afresh", path=str(path))
        return None
    model.load_state_dict(blob["model"])
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["rng_cpu"].cpu())
    if blob["rng_cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(blob["rng_cuda"].cpu(), device)
    state: dict[str, Any] = blob["loop"]
    return state
