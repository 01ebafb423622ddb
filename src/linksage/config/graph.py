"""Config of the graph stage: cohesion filter, near-duplicate pin clusters, pruning."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GraphConfig:
    cohesion_threshold: float = 0.0
    near_duplicate_threshold: float = 0.9  # cosine between pins' content vectors
    hub_cap: int = 10_000  # a node with more edges of one type keeps a uniform sample of this many
    min_degree: int = 1
