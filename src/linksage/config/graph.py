"""Config of the graph stage: cohesion filter, near-duplicate pin clusters, pruning (docs/walks.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from linksage.config._load import ConfigError


@dataclass(frozen=True)
class GraphConfig:
    cohesion_threshold: float = 0.0  # keep a pin-page link when its cohesion (given, else cosine) >= this
    near_duplicates: bool = True  # cluster near-duplicate pins by their content vectors
    near_duplicate_threshold: float = 0.9  # cosine between pins' content vectors
    # beyond exact_max distinct vectors: "cells" = every pair within k-means cells; "knn" = the k nearest
    # candidates from an IVF index (the method before the cells; fewer pairs, several times slower)
    near_duplicate_method: Literal["cells", "knn"] = "cells"
    near_duplicate_k: int = 16  # candidates per distinct vector of the flat index and knn (cells: a dense tile's)
    near_duplicate_exact_max: int = 10_000  # up to this many distinct vectors, an exact flat index; beyond, the method
    near_duplicate_nprobe: int = 1  # cells (or IVF lists) searched per vector
    near_duplicate_pca: int = 128  # candidates are searched in a PCA projection to this many dims (0 = none)
    hub_cap: int = 10_000  # a node with more edges of one type keeps a uniform sample of this many
    min_degree: int = 1  # nodes with fewer edges (all types together) are dropped
    seed: int = 0
    threads: int = 0  # threads of the near-duplicate search (faiss's and BLAS's, or the cells' pool); 0 = all cores

    def __post_init__(self) -> None:
        if not -1.0 <= self.cohesion_threshold <= 1.0:
            raise ConfigError(f"graph.cohesion_threshold: must be in [-1, 1], got {self.cohesion_threshold}")
        if not 0.0 < self.near_duplicate_threshold <= 1.0:
            raise ConfigError(f"graph.near_duplicate_threshold: must be in (0, 1], got {self.near_duplicate_threshold}")
        for name in ("near_duplicate_k", "near_duplicate_nprobe", "hub_cap", "min_degree"):
            if getattr(self, name) < 1:
                raise ConfigError(f"graph.{name}: must be >= 1, got {getattr(self, name)}")
        if self.near_duplicate_pca < 0:
            raise ConfigError(
                f"graph.near_duplicate_pca: must be >= 0 (0 = no projection), got {self.near_duplicate_pca}"
            )
        if self.near_duplicate_exact_max < 0:
            raise ConfigError(f"graph.near_duplicate_exact_max: must be >= 0, got {self.near_duplicate_exact_max}")
        if self.threads < 0:
            raise ConfigError(f"graph.threads: must be >= 0 (0 = all cores), got {self.threads}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"graph.seed: must be in [0, 2**63), got {self.seed}")
