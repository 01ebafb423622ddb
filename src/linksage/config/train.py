"""Config of the train stage: the LinkSage transformer and its Matryoshka contrastive loss."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainConfig:
    dims: tuple[int, ...] = (16, 32, 64, 128, 256)
    d_model: int = 256
    layers: int = 4
    heads: int = 8
    neighbours: int = 20
    batch_size: int = 1024
    steps: int = 2_000
    lr: float = 1e-3
    device: str = "auto"
    seed: int = 0
