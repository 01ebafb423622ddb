"""Config of the evaluate stage: the retrieval pool, the metrics, the baselines, the slices and the report."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from linksage.config._load import ConfigError

BASELINES = ("zero_shot", "content_only")  # plus "single_dim_<d>" for any d
SLICES = ("opaque", "degree", "new_pages", "unseen_domains")
_SINGLE_DIM = re.compile(r"^single_dim_([1-9][0-9]*)$")


def single_dim_of(name: str) -> int | None:
    """``"single_dim_64"`` -> 64; None for other baseline names."""
    match = _SINGLE_DIM.match(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class EvaluateConfig:
    split: Literal["test", "validation"] = "test"  # which pages of train/split.npy are the queries
    max_queries: int = 0  # 0 = every page of the split; else a seeded random sample of this many
    pool_size: int = 2_000_000  # all pins when there are at most this many; else this many random pins + positives
    ks: tuple[int, ...] = (10, 50, 100)
    # "zero_shot": page text vs pin targets (only when both are in one space); "content_only": the train
    # stage's model with no neighbours; "single_dim_<d>": a model trained for dim d alone.
    baselines: tuple[str, ...] = ("zero_shot", "content_only", "single_dim_64", "single_dim_256")
    baseline_steps: int = 0  # training steps of each trained baseline; 0 = train.steps
    slices: tuple[str, ...] = SLICES
    degree_buckets: tuple[int, ...] = (1, 2, 4, 8)  # lower bounds of the page-degree buckets
    negatives_per_query: int = 200  # random pool pins per query for the negative-score histogram
    kurtosis_pairs: int = 200_000  # random page pairs for the pairwise-cosine distribution
    report_pages: int = 24  # sampled query pages shown in the HTML report
    report_top_k: int = 10  # pins listed per shown page
    report_neighbours: int = 8  # neighbour pages listed per shown page
    query_batch: int = 1024  # queries per matmul
    pool_chunk: int = 65_536  # pool rows per matmul (memory: query_batch * pool_chunk * 4 bytes)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks) or list(self.ks) != sorted(set(self.ks)):
            raise ConfigError(f"evaluate.ks: must be positive, increasing and unique, got {list(self.ks)}")
        for name in self.baselines:
            if name not in BASELINES and single_dim_of(name) is None:
                raise ConfigError(
                    f"evaluate.baselines: unknown baseline {name!r} (known: {', '.join(BASELINES)}, single_dim_<d>)"
                )
        for name in self.slices:
            if name not in SLICES:
                raise ConfigError(f"evaluate.slices: unknown slice {name!r} (known: {', '.join(SLICES)})")
        buckets = list(self.degree_buckets)
        if not buckets or buckets[0] < 1 or buckets != sorted(set(buckets)):
            raise ConfigError(f"evaluate.degree_buckets: must start at >= 1 and increase, got {buckets}")
        positive = {
            "max_queries": (self.max_queries, 0),
            "pool_size": (self.pool_size, 1),
            "baseline_steps": (self.baseline_steps, 0),
            "negatives_per_query": (self.negatives_per_query, 1),
            "kurtosis_pairs": (self.kurtosis_pairs, 2),
            "report_pages": (self.report_pages, 0),
            "report_top_k": (self.report_top_k, 1),
            "report_neighbours": (self.report_neighbours, 0),
            "query_batch": (self.query_batch, 1),
            "pool_chunk": (self.pool_chunk, 1),
        }
        for key, (value, low) in positive.items():
            if value < low:
                raise ConfigError(f"evaluate.{key}: must be >= {low}, got {value}")
        if not (self.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", self.device)):
            raise ConfigError(f"evaluate.device: must be auto, cpu, cuda or cuda:N, got {self.device!r}")
