"""Config of the embed stage, the embedding store and its ANN indices (docs/store.md)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Literal

from linksage.config._load import ConfigError


@dataclass(frozen=True)
class IndexConfig:
    """ANN index over pages or pins: candidates from an approximate index, then exact re-ranking."""

    # auto: exact (flat) search below `exact_below` vectors, IVF-PQ at or above it.
    kind: Literal["auto", "ivfpq", "hnsw", "flat"] = "auto"
    exact_below: int = 50_000
    nlist: int = 0  # IVF lists; 0 = about sqrt(n), a power of two
    pq_m: int = 0  # PQ sub-quantisers of 4-bit fast-scan codes; 0 = dim / 4 (must divide the dim)
    nprobe: int = 16  # IVF lists scanned per query
    rerank: int = 10  # k * rerank candidates are re-ranked by their exact inner product
    train_per_list: int = 64  # IVF/PQ training sample = train_per_list * nlist vectors (at most all)
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("exact_below", "nlist", "pq_m"):
            if getattr(self, key) < 0:
                raise ConfigError(f"store.index.{key}: must be >= 0, got {getattr(self, key)}")
        for key in ("nprobe", "rerank", "train_per_list", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"store.index.{key}: must be positive, got {getattr(self, key)}")
        if self.nlist and self.nprobe > self.nlist:
            raise ConfigError(f"store.index.nprobe: must be <= store.index.nlist={self.nlist}, got {self.nprobe}")


@dataclass(frozen=True)
class StoreConfig:
    path: str = ""  # the Lance store; "" = <run-dir>/store (relative paths: against the working directory)
    build_index: bool = True  # the embed stage builds the pages' and pins' ANN indices after writing
    index: IndexConfig = field(default_factory=IndexConfig)


COMPILE_MODES = ("auto", "off", "default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune")


@dataclass(frozen=True)
class EmbedConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU
    batch_size: int = 0  # pages per forward pass; 0 = 16384 on CUDA, 4096 on CPU
    chunk_rows: int = 131_072  # pages per chunk streamed to the store: host memory ~ chunk_rows * dim * 8 bytes
    # torch.compile of the encoder: a torch.compile mode, "off", or "auto" = "default" on CUDA when at least
    # compile_min_pages pages are to be embedded (compiling costs tens of seconds once per process), else off
    compile: str = "auto"
    compile_min_pages: int = 2_000_000
    write_parallelism: int = 0  # parallel Lance file writers of a first fill; 0 = Lance's default
    day: str = ""  # ISO date recorded with the rows; "" = the date of the newest page's first_seen (else today)
    reembed_all: bool = False  # embed every page, even those whose model and inputs are unchanged
    threads: int = 0  # CPU threads for torch; 0 = leave torch's default

    def __post_init__(self) -> None:
        if self.batch_size < 0:
            raise ConfigError(f"embed.batch_size: must be >= 0 (0 = by device), got {self.batch_size}")
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"embed.compile: expected one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")
        for key in ("compile_min_pages", "write_parallelism"):
            if getattr(self, key) < 0:
                raise ConfigError(f"embed.{key}: must be >= 0, got {getattr(self, key)}")
        if self.chunk_rows <= 0:
            raise ConfigError(f"embed.chunk_rows: must be positive, got {self.chunk_rows}")
        if self.threads < 0:
            raise ConfigError(f"embed.threads: must be >= 0 (0 = torch's default), got {self.threads}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"embed.device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.day:
            try:
                datetime.date.fromisoformat(self.day)
            except ValueError as exc:
                raise ConfigError(f"embed.day: expected an ISO date like 2013-04-01, got {self.day!r}") from exc
