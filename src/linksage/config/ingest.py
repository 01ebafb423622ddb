"""Config of the ingest stage: which adapter produces the input contract, and its options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from linksage.config._load import ConfigError


@dataclass(frozen=True)
class TablesSource:
    """Generic Parquet / CSV / JSONL files (or folders of them), one path per contract table.

    ``columns`` maps contract column names to the names in your files, per table, e.g.
    ``columns.pins = {pin_id = "item_id", text = "title"}``.
    """

    pins: str = ""
    links: str = ""
    boards: str = ""
    board_meta: str = ""
    pages: str = ""
    columns: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class RedditSource:
    """The shared Reddit links graph: post = pin, URL = page, subreddit = board, domain = link cluster."""

    posts: str = "../shared/data/reddit-top-2.5m/link_posts"
    subreddits: str = "../shared/data/reddit-top-2.5m/subreddits.parquet"
    blocked_domains: tuple[str, ...] = ()
    start: str = ""  # keep posts created at or after this ISO date ("" = no bound)
    end: str = ""  # keep posts created before this ISO date ("" = no bound)
    max_posts: int = 0  # 0 = all; otherwise the first N posts in time order (a slice for demos)


@dataclass(frozen=True)
class SyntheticSource:
    """A generated world with planted topics; any size, written in Parquet parts."""

    n_links: int = 20_000
    n_topics: int = 16
    pins_per_page: float = 2.5  # mean links per page (power-law)
    pins_per_board: float = 20.0
    embedding_dim: int = 64
    missing_content: float = 0.2  # share of pages with no crawled content
    content_noise: float = 0.5  # how weakly a page's own text reflects its topic
    near_duplicate_rate: float = 0.1  # share of pins that are near-copies of another pin
    part_rows: int = 1_000_000  # links per Parquet part (bounds memory)
    seed: int = 0


@dataclass(frozen=True)
class IngestConfig:
    source: Literal["synthetic", "reddit", "tables"] = "synthetic"
    tables: TablesSource = field(default_factory=TablesSource)
    reddit: RedditSource = field(default_factory=RedditSource)
    synthetic: SyntheticSource = field(default_factory=SyntheticSource)

    def __post_init__(self) -> None:
        if self.synthetic.n_links < 1:
            raise ConfigError(f"ingest.synthetic.n_links: must be positive, got {self.synthetic.n_links}")
