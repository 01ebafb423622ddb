"""The Reddit adapter: post = pin, URL = page, subreddit = board, domain = link cluster.

Reads ``posts`` (a file or folder with columns post_id, subreddit, title, url, created_utc: the
shared ``reddit-top-2.5m/link_posts`` or any later day in the same shape) and ``subreddits``
(subreddit, description: the board text). Filters, each counted in the manifest: the time range
``[start, end)``, URLs beyond repair (skipped), blocked domains (a host equal to or under a blocked
domain), and ``max_posts`` (the first N remaining posts in time order).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from linksage.config.ingest import RedditSource, parse_time
from linksage.ingest.tables import Chunk, ContractInput
from linksage.ingest.urls import HOST_PATTERN, BadUrls, canonicalise_array
from linksage.ingest.validate import Loc, coerce, to_id, to_str, to_time
from linksage.schema import data_files, read_table

POST_COLUMNS = ["post_id", "subreddit", "title", "url", "created_utc"]


@dataclass
class Filtered:
    """What the adapter dropped on purpose, and why."""

    counts: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def reddit_input(src: RedditSource, batch_rows: int) -> tuple[ContractInput, Filtered]:
    """The contract tables of the kept posts (URLs already canonical), and the filter counts."""
    files = [str(f) for f in data_files(src.posts)]
    posts = pl.concat([_read_posts(f, k) for k, f in enumerate(files)])
    filtered = Filtered()
    counts = filtered.counts
    counts["posts_read"] = posts.height

    if src.start:
        start = parse_time(src.start, "ingest.reddit.start")
        counts["posts_before_start"] = int((posts["created_utc"] < start).sum())
        posts = posts.filter(pl.col("created_utc") >= start)
    if src.end:
        end = parse_time(src.end, "ingest.reddit.end")
        counts["posts_after_end"] = int((posts["created_utc"] >= end).sum())
        posts = posts.filter(pl.col("created_utc") < end)
    posts = posts.sort(["created_utc", "file", "row"])

    urls, reasons = canonicalise_array(posts["url"].to_arrow())
    bad = BadUrls()
    failed = reasons.is_valid().to_numpy(zero_copy_only=False)
    for raw, reason in zip(
        posts["url"].filter(pl.Series(failed)).to_list(), reasons.filter(pa.array(failed)).to_pylist(), strict=True
    ):
        bad.add(raw, reason)
    counts["posts_bad_url"] = bad.count
    filtered.metrics.update(bad.as_metrics())
    posts = posts.with_columns(url=pl.Series(urls)).filter(~pl.Series(failed))

    if src.blocked_domains:
        host = posts["url"].str.extract(HOST_PATTERN, 1)
        blocked = host.is_in(list(src.blocked_domains))
        for domain in src.blocked_domains:
            blocked = blocked | host.str.ends_with("." + domain)
        counts["posts_blocked_domain"] = int(blocked.sum())
        top = host.filter(blocked).value_counts(sort=True).head(20)
        filtered.metrics["blocked_top_hosts"] = dict(
            zip(top[top.columns[0]].to_list(), top["count"].to_list(), strict=True)
        )
        posts = posts.filter(~blocked)
    if src.max_posts and posts.height > src.max_posts:
        counts["posts_beyond_max_posts"] = posts.height - src.max_posts
        posts = posts.head(src.max_posts)
    counts["posts_kept"] = posts.height
    if posts.height:
        times = posts["created_utc"].to_numpy()
        filtered.metrics["kept_created_utc_range"] = [int(times.min()), int(times.max())]

    subreddits = _board_meta(src, posts["subreddit"].unique())
    chunks = list(_chunks(posts, files, batch_rows))
    inp = ContractInput(
        pins=(c for name, c in chunks if name == "pins"),
        links=(c for name, c in chunks if name == "links"),
        boards=(c for name, c in chunks if name == "boards"),
        board_meta=subreddits,
        sources={"pins": src.posts, "links": src.posts, "boards": src.posts, "board_meta": src.subreddits},
        sizes={"pins": posts.height, "links": posts.height, "boards": posts.height},
        urls_canonical=True,
    )
    return inp, filtered


def _read_posts(file: str, k: int) -> pl.DataFrame:
    table = read_table(file, POST_COLUMNS)
    loc = Loc(file)
    cols = {
        "post_id": to_id(table["post_id"].combine_chunks(), "post_id", loc),
        "subreddit": to_id(table["subreddit"].combine_chunks(), "subreddit", loc),
        "title": to_str(table["title"].combine_chunks(), "title", loc),
        "url": to_str(table["url"].combine_chunks(), "url", loc),
        "created_utc": to_time(table["created_utc"].combine_chunks(), "created_utc", loc),
    }
    for name in ("post_id", "subreddit", "created_utc"):
        if cols[name].null_count:
            i = int(np.flatnonzero(cols[name].is_null().to_numpy(zero_copy_only=False))[0])
            raise loc.error(f"missing value in required column {name!r}", i, column=name)
    df = pl.from_arrow(pa.table(cols))
    assert isinstance(df, pl.DataFrame)
    return df.with_columns(file=pl.lit(k, pl.Int32), row=pl.int_range(pl.len(), dtype=pl.Int64))


def _chunks(posts: pl.DataFrame, files: list[str], batch_rows: int) -> Iterator[tuple[str, Chunk]]:
    """Chunks of pins, links and boards, each from one file (so messages name the right file)."""
    for (k,), part in posts.group_by(["file"], maintain_order=True):
        for start in range(0, part.height, batch_rows):
            rows = part.slice(start, batch_rows)
            loc = Loc(files[int(k)], rows=rows["row"].to_numpy())  # type: ignore[call-overload]
            pins = pa.table(
                {
                    "pin_id": rows["post_id"].to_arrow(),
                    "text": rows["title"].to_arrow(),
                    "created_at": rows["created_utc"].to_arrow(),
                }
            )
            links = pa.table({"pin_id": rows["post_id"].to_arrow(), "url": rows["url"].to_arrow()})
            boards = pa.table({"board_id": rows["subreddit"].to_arrow(), "pin_id": rows["post_id"].to_arrow()})
            yield "pins", Chunk(coerce("pins", pins, loc), loc)
            yield "links", Chunk(coerce("links", links, loc), loc)
            yield "boards", Chunk(coerce("boards", boards, loc), loc)


def _board_meta(src: RedditSource, used: pl.Series) -> list[Chunk]:
    """Descriptions of the subreddits that kept posts use (others would be boards without pins)."""
    if not src.subreddits:
        return []
    chunks = []
    for file in data_files(src.subreddits):
        table = read_table(file, ["subreddit", "description"])
        loc = Loc(str(file))
        ids = to_id(table["subreddit"].combine_chunks(), "subreddit", loc)
        keep = pl.Series(ids).is_in(used.implode()).to_numpy()
        rows = np.flatnonzero(keep)
        meta = pa.table({"board_id": ids, "text": table["description"].combine_chunks()}).filter(pa.array(keep))
        sub = loc.subset(rows)
        chunks.append(Chunk(coerce("board_meta", meta, sub), sub))
    return chunks
