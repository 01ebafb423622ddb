"""Config of the content stage: page text/image vectors and the pins' target vectors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ContentConfig:
    text_encoder: Literal["minilm", "hashing", "path"] = "minilm"
    text_model_path: str = ""  # a sentence-transformers model folder, with text_encoder = "path"
    hashing_dim: int = 384
    image_encoder: Literal["efficientnet", "none", "precomputed"] = "efficientnet"
    max_images_per_page: int = 4
    batch_size: int = 256
    device: str = "auto"  # auto | cpu | cuda
