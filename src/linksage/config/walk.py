"""Config of the walk stage: Pixie random walks with restart along metapaths."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WalkConfig:
    metapaths: tuple[str, ...] = ("page-pin-page", "page-pin-board-pin-page", "page-domain-page")
    metapath_shares: tuple[float, ...] = (0.5, 0.3, 0.2)
    top_k: int = 20
    steps: int = 2_000  # base step budget per query page
    mean_walk_length: float = 4.0
    n_p: int = 20  # early stop once n_p pages have n_v visits
    n_v: int = 4
    boost: bool = True
    threads: int = 0  # 0 = all cores
    seed: int = 0
