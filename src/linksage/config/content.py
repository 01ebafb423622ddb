"""Config of the content stage: page text/image vectors and the pins' target vectors (docs/encoders.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from linksage.config._load import ConfigError, added_later
from linksage.config.train import parse_date


@dataclass(frozen=True)
class ContentConfig:
    text_encoder: Literal["minilm", "hashing", "path"] = "minilm"
    text_model_path: str = ""  # a sentence-transformers model folder, with text_encoder = "path"
    # auto: fp16 on CUDA, fp32 on CPU; int8 (CPU only) is faster but not exact (docs/encoders.md)
    text_precision: Literal["auto", "fp32", "fp16", "bf16", "int8"] = "auto"
    hashing_dim: int = 384
    image_encoder: Literal["efficientnet", "none", "precomputed"] = "efficientnet"
    image_vectors: str = ""  # precomputed: Parquet file/folder with columns url (string), vector (list<float>)
    image_table: str = ""  # image bytes at hand: Parquet file/folder with columns url (string), bytes (binary)
    image_dir: str = ""  # local images: a relative image URL, or host/path of an http(s) one, is a file here
    max_images_per_page: int = 4  # M: per-image tokens kept per page (largest by area)
    max_image_bytes: int = 16 * 1024 * 1024  # larger image files are skipped unread
    max_image_pixels: int = 50_000_000  # decompression-bomb cap (width * height, checked before decoding)
    pin_target_image: bool = False  # computed targets: [text, image] when some pin has an image (changes D_target)
    # board-aware targets (docs/encoders.md): each pin's target plus this weight times its boards' mean
    # target (a graph-aware stand-in for PinSage's); 0 = the pin's own. Only pins created before
    # pin_target_boards_before (ISO date; "" = all, random splits only) enter the means: under a time split
    # it must be on or before train.split_date. added_later: at their defaults, earlier runs stay up to date
    pin_target_boards: float = added_later(0.0)
    pin_target_boards_before: str = added_later("")
    # each board's mean less the mean of every eligible pin's target (what all boards share)
    pin_target_boards_centred: bool = added_later(False)
    batch_size: int = 256  # texts per batch on CPU
    gpu_batch_size: int = 2048  # texts per batch on CUDA
    image_batch_size: int = 64
    chunk_rows: int = 65_536  # rows read, encoded and written at a time (bounds memory)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cache: bool = True
    cache_dir: str = ""  # "" = <run dir's parent>/.cache/linksage, shared by the run dirs beside it

    def __post_init__(self) -> None:
        if self.text_encoder == "path" and not self.text_model_path:
            raise ConfigError("content.text_model_path: required with text_encoder = 'path', got ''")
        if self.image_encoder == "precomputed" and not self.image_vectors:
            raise ConfigError("content.image_vectors: required with image_encoder = 'precomputed', got ''")
        for key in ("hashing_dim", "batch_size", "gpu_batch_size", "image_batch_size", "chunk_rows"):
            if getattr(self, key) < 1:
                raise ConfigError(f"content.{key}: must be positive, got {getattr(self, key)}")
        for key in ("max_image_bytes", "max_image_pixels"):
            if getattr(self, key) < 1:
                raise ConfigError(f"content.{key}: must be positive, got {getattr(self, key)}")
        if not (self.pin_target_boards >= 0 and self.pin_target_boards < float("inf")):
            raise ConfigError(f"content.pin_target_boards: must be a finite weight >= 0, got {self.pin_target_boards}")
        if self.pin_target_boards_centred and not self.pin_target_boards:
            raise ConfigError("content.pin_target_boards_centred: needs content.pin_target_boards > 0, got 0.0")
        if self.pin_target_boards_before and not self.pin_target_boards:
            raise ConfigError(
                f"content.pin_target_boards_before: needs content.pin_target_boards > 0, got 0.0 "
                f"(with {self.pin_target_boards_before!r}, which would only force the content stage to run again)"
            )
        if self.pin_target_boards_before:
            parse_date("pin_target_boards_before", self.pin_target_boards_before, section="content")
        if self.max_images_per_page < 0:
            raise ConfigError(f"content.max_images_per_page: must be >= 0, got {self.max_images_per_page}")
