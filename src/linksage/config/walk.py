"""Config of the walk stage: Pixie random walks with restart along metapaths (docs/walks.md)."""

from __future__ import annotations

from dataclasses import dataclass

from linksage.config._load import ConfigError
from linksage.walk.metapaths import MetapathError, parse_metapath


@dataclass(frozen=True)
class WalkConfig:
    metapaths: tuple[str, ...] = ("page-pin-page", "page-pin-board-pin-page", "page-domain-page")
    # Share of each query's step budget per metapath, in the order of `metapaths`; () = equal shares.
    # Relative weights: they are normalised to sum to 1.
    metapath_shares: tuple[float, ...] = ()
    merge_near_duplicates: bool = True  # at a pin, jump to a random member of its near-duplicate cluster
    top_k: int = 20
    steps: int = 2_000  # step budget (edge traversals) of a query page with one pin
    budget_degree_c: float = 5.0  # Pixie's C in budget = steps * d (C - ln d) / C, flat beyond d = e^(C-1)
    mean_walk_length: float = 4.0  # metapath traversals per walk (geometric, restart prob. 1 / this)
    n_p: int = 20  # early stop once n_p pages have n_v visits (0 = never stop early)
    n_v: int = 4
    boost: bool = True  # Pixie's multi-hit boosting across metapaths: (sum_m sqrt(visits_m))^2
    walkers: int = 64  # lock-step walkers per query (memory-level parallelism; part of the output's seed)
    threads: int = 0  # 0 = all cores
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.metapaths:
            raise ConfigError("walk.metapaths: at least one metapath is needed, got []")
        for i, text in enumerate(self.metapaths):
            try:
                parse_metapath(text)
            except MetapathError as exc:
                raise ConfigError(f"walk.metapaths[{i}]: {exc}") from exc
        if len(set(self.metapaths)) != len(self.metapaths):
            raise ConfigError(f"walk.metapaths: duplicate metapath in {list(self.metapaths)}")
        if self.metapath_shares:
            if len(self.metapath_shares) != len(self.metapaths):
                raise ConfigError(
                    f"walk.metapath_shares: {len(self.metapath_shares)} shares for {len(self.metapaths)} "
                    f"metapaths, got {list(self.metapath_shares)}"
                )
            for i, share in enumerate(self.metapath_shares):
                if not share > 0:
                    raise ConfigError(f"walk.metapath_shares[{i}]: must be > 0, got {share}")
        _positive("top_k", self.top_k)
        _positive("steps", self.steps)
        _positive("walkers", self.walkers)
        if not self.budget_degree_c > 1.0:
            raise ConfigError(f"walk.budget_degree_c: must be > 1, got {self.budget_degree_c}")
        if not self.mean_walk_length >= 1.0:
            raise ConfigError(f"walk.mean_walk_length: must be >= 1 (traversals per walk), got {self.mean_walk_length}")
        if self.n_p < 0:
            raise ConfigError(f"walk.n_p: must be >= 0 (0 = no early stopping), got {self.n_p}")
        _positive("n_v", self.n_v)
        if self.threads < 0:
            raise ConfigError(f"walk.threads: must be >= 0 (0 = all cores), got {self.threads}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"walk.seed: must be in [0, 2**63), got {self.seed}")

    def shares(self) -> tuple[float, ...]:
        """Budget share of each metapath, summing to 1."""
        raw = self.metapath_shares or (1.0,) * len(self.metapaths)
        total = sum(raw)
        return tuple(s / total for s in raw)


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"walk.{name}: must be >= 1, got {value}")
