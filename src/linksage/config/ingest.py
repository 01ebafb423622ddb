"""Config of the ingest stage: which adapter produces the input contract, and its options."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from linksage.config._load import ConfigError

# The contract's column names per input table (linksage.schema.INPUT_TABLES has their kinds; a test keeps
# the two in step). Kept here so that loading a config does not import pyarrow.
TABLE_COLUMNS = {
    "pins": ("pin_id", "text", "image_url", "embedding", "created_at"),
    "links": ("pin_id", "url", "cohesion"),
    "boards": ("board_id", "pin_id"),
    "board_meta": ("board_id", "text"),
    "pages": ("url", "title", "description", "body", "images", "fetched_at"),
}


@dataclass(frozen=True)
class TablesSource:
    """Generic Parquet / CSV / JSONL files (or folders of them), one path per contract table.

    ``columns`` maps contract column names to the names in your files, per table, e.g.
    ``columns.pins = {pin_id = "item_id", text = "title"}``. ``bad_urls = "skip"`` drops links whose
    URL cannot be canonicalised (counted in the manifest) instead of failing.
    """

    pins: str = ""
    links: str = ""
    boards: str = ""
    board_meta: str = ""
    pages: str = ""
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    bad_urls: Literal["error", "skip"] = "error"


@dataclass(frozen=True)
class RedditSource:
    """The shared Reddit links graph: post = pin, URL = page, subreddit = board, domain = link cluster.

    ``blocked_domains`` drops posts whose canonical host is one of these domains or a subdomain of
    one. Links whose URL cannot be canonicalised are skipped and counted.
    """

    posts: str = "../shared/data/reddit-top-2.5m/link_posts"
    subreddits: str = "../shared/data/reddit-top-2.5m/subreddits.parquet"
    blocked_domains: tuple[str, ...] = ()
    start: str = ""  # keep posts created at or after this ISO date or time, UTC ("" = no bound)
    end: str = ""  # keep posts created before this ISO date or time, UTC ("" = no bound)
    max_posts: int = 0  # 0 = all; otherwise the first N kept posts in time order (a slice for demos)


@dataclass(frozen=True)
class SyntheticSource:
    """A generated world with planted topics; any size, written in Parquet parts (see docs/ingest.md)."""

    n_links: int = 20_000
    n_topics: int = 16
    pins_per_page: float = 2.5  # mean links per page: one each, plus power-law extra
    pins_per_board: float = 20.0
    popularity_skew: float = 0.6  # power-law exponent s in (0, 1) of page, board and domain popularity
    embedding_dim: int = 64
    target_noise: float = 1.0  # norm of a pin's noise around its topic centroid (before normalising)
    # norm of a per-board direction added to the targets of the board's pins (0 = topic only): the pins
    # of a board share a theme that only the graph (the page's boards) reveals, as a subreddit does
    board_spread: float = 0.0
    text_noise: float = 0.3  # share of a pin's words drawn from the general vocabulary
    missing_content: float = 0.2  # share of pages with no crawled content (only the URL)
    content_noise: float = 0.5  # share of a page's words that are off-topic
    opaque_urls: float = 0.4  # share of pages whose URL slug is a random id, not title words
    near_duplicate_rate: float = 0.1  # share of pins (beyond each page's first) copying another pin
    link_noise: float = 0.05  # share of pins whose topic differs from their page's
    board_purity: float = 0.85  # share of pins saved to a board of their own topic
    domain_purity: float = 0.7  # share of pages on a domain of their own topic
    pages_per_domain: float = 30.0
    duplicate_links: float = 0.02  # share of pins linking twice to their page (URL variants)
    start: str = "2013-01-01"  # created_at spread over [start, end), UTC
    end: str = "2013-07-01"
    part_rows: int = 1_000_000  # links per Parquet part (bounds memory)
    seed: int = 0


@dataclass(frozen=True)
class IngestConfig:
    source: Literal["synthetic", "reddit", "tables"] = "synthetic"
    tables: TablesSource = field(default_factory=TablesSource)
    reddit: RedditSource = field(default_factory=RedditSource)
    synthetic: SyntheticSource = field(default_factory=SyntheticSource)
    batch_rows: int = 262_144  # rows per chunk read from input files (bounds memory)

    def __post_init__(self) -> None:
        if self.synthetic.n_links < 1:
            raise ConfigError(f"ingest.synthetic.n_links: must be positive, got {self.synthetic.n_links}")
        if self.batch_rows < 1:
            raise ConfigError(f"ingest.batch_rows: must be positive, got {self.batch_rows}")
        _check_synthetic(self.synthetic)
        _check_reddit(self.reddit)
        _check_tables(self.tables)


def parse_time(text: str, key: str) -> int:
    """Unix seconds of an ISO 8601 date or time (UTC unless it names a zone)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{key}: expected an ISO 8601 date like 2013-04-01, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _check_synthetic(s: SyntheticSource) -> None:
    key = "ingest.synthetic"
    shares = ["text_noise", "missing_content", "content_noise", "opaque_urls", "near_duplicate_rate"]
    shares += ["link_noise", "board_purity", "domain_purity", "duplicate_links"]
    for name in shares:
        value = getattr(s, name)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{key}.{name}: must be in [0, 1], got {value}")
    minimums = {"n_topics": 1, "embedding_dim": 2, "part_rows": 1000, "pins_per_page": 1.0, "pins_per_board": 1.0}
    minimums["pages_per_domain"] = 1.0
    for name, low in minimums.items():
        if getattr(s, name) < low:
            raise ConfigError(f"{key}.{name}: must be at least {low}, got {getattr(s, name)}")
    if not 0.0 < s.popularity_skew < 1.0:
        raise ConfigError(f"{key}.popularity_skew: must be in (0, 1), got {s.popularity_skew}")
    if s.target_noise < 0:
        raise ConfigError(f"{key}.target_noise: must not be negative, got {s.target_noise}")
    if s.board_spread < 0:
        raise ConfigError(f"{key}.board_spread: must not be negative, got {s.board_spread}")
    if parse_time(s.start, f"{key}.start") >= parse_time(s.end, f"{key}.end"):
        raise ConfigError(f"{key}.end: must be after start ({s.start!r}), got {s.end!r}")


_DOMAIN = re.compile(r"[a-z0-9_\-]+(\.[a-z0-9_\-]+)+")


def _check_reddit(r: RedditSource) -> None:
    key = "ingest.reddit"
    for i, domain in enumerate(r.blocked_domains):
        if not _DOMAIN.fullmatch(domain):
            raise ConfigError(
                f"{key}.blocked_domains[{i}]: expected a lowercase host like 'imgur.com' (no scheme, "
                f"no 'www.'), got {domain!r}"
            )
        if domain.startswith("www."):
            raise ConfigError(
                f"{key}.blocked_domains[{i}]: drop the 'www.' (canonical hosts have none), got {domain!r}"
            )
    start = parse_time(r.start, f"{key}.start") if r.start else None
    end = parse_time(r.end, f"{key}.end") if r.end else None
    if start is not None and end is not None and start >= end:
        raise ConfigError(f"{key}.end: must be after start ({r.start!r}), got {r.end!r}")
    if r.max_posts < 0:
        raise ConfigError(f"{key}.max_posts: must be 0 (all) or positive, got {r.max_posts}")


def _check_tables(t: TablesSource) -> None:
    for table, mapping in t.columns.items():
        if table not in TABLE_COLUMNS:
            raise ConfigError(f"ingest.tables.columns.{table}: unknown table (tables: {', '.join(TABLE_COLUMNS)})")
        for column in mapping:
            if column not in TABLE_COLUMNS[table]:
                raise ConfigError(
                    f"ingest.tables.columns.{table}.{column}: not a column of {table} "
                    f"(columns: {', '.join(TABLE_COLUMNS[table])})"
                )


__all__ = ["TABLE_COLUMNS", "IngestConfig", "RedditSource", "SyntheticSource", "TablesSource", "parse_time"]
