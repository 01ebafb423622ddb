"""Slices on tiny hand-made cases."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from linksage.evaluate.slices import degree_masks, new_pages_mask, opaque_mask, unseen_domains_mask, words


def test_words_split_urls_and_titles() -> None:
    assert words("https://www.ex.com/BestPizza-recipes_2013/index.html") == {"best", "pizza", "recipes"}
    assert words("The 7 Most Bizarre Phenomena on Camera!") == {"bizarre", "phenomena", "camera"}
    assert words("") == set()


def test_opaque_when_no_word_is_shared() -> None:
    urls = [
        "http://cracked.com/article_2036_the-7-most-bizarre-phenomena.html",
        "http://500px.com/photo/31588433",
        "http://example.com/p/123",
        "http://news.com/cats-and-dogs",
    ]
    texts = [
        ["The 7 Most Bizarre Natural Phenomena"],  # shares "bizarre", "phenomena"
        ["Nice winter fox portrait"],  # nothing in common: opaque
        [],  # no pin text at all: opaque
        ["about dogs", "unrelated title"],  # one of several pins is enough
    ]
    assert opaque_mask(urls, texts).tolist() == [False, True, True, False]


def test_stop_words_do_not_make_a_page_readable() -> None:
    assert opaque_mask(["http://site.com/the-and-for/index.html"], [["the and for index page"]]).tolist() == [True]


def test_degree_buckets() -> None:
    masks = degree_masks(np.array([1, 2, 3, 4, 7, 8, 100]), (1, 2, 4, 8))
    assert list(masks) == ["degree 1", "degree 2-3", "degree 4-7", "degree 8+"]
    assert masks["degree 1"].tolist() == [True, False, False, False, False, False, False]
    assert masks["degree 2-3"].tolist() == [False, True, True, False, False, False, False]
    assert masks["degree 4-7"].tolist() == [False, False, False, True, True, False, False]
    assert masks["degree 8+"].tolist() == [False, False, False, False, False, True, True]
    assert sum(m.astype(int) for m in masks.values()).tolist() == [1] * 7  # a partition


def test_new_pages_and_unseen_domains() -> None:
    train_seen = np.array([10.0, 20.0, np.nan])
    assert new_pages_mask(np.array([5.0, 20.0, 21.0, np.nan]), train_seen).tolist() == [False, False, True, False]
    with pytest.raises(ValueError, match="no training page has a first_seen"):
        new_pages_mask(np.array([1.0]), np.array([np.nan]))
    assert unseen_domains_mask(np.array([3, 1, 7]), np.array([1, 2, 3, 3])).tolist() == [False, False, True]


@pytest.mark.shared
def test_opaque_share_on_reddit_pages() -> None:
    """On real Reddit pages first linked in April 2013, about a third of URLs share no word with their titles."""
    part = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "reddit-top-2.5m" / "link_posts"
    if not part.exists():
        pytest.skip(f"{part} is absent (the shared Reddit data lives beside the repository)")
    start = datetime.datetime(2013, 4, 1, tzinfo=datetime.UTC).timestamp()
    table = pq.read_table(part / "part-1.parquet", columns=["url", "title", "domain", "created_utc"])
    table = table.filter(pc.greater_equal(table["created_utc"], start))
    media = ("imgur.com", "youtube.com", "youtu.be", "reddit.com", "qkme.me", "quickmeme.com", "flickr.com")
    keep = [not any(d == m or d.endswith("." + m) for m in media) for d in table["domain"].to_pylist()]
    table = table.filter(pa.array(keep)).slice(0, 3000)
    titles: dict[str, list[str]] = {}
    for url, title in zip(table["url"].to_pylist(), table["title"].to_pylist(), strict=True):
        titles.setdefault(url, []).append(title)
    share = opaque_mask(list(titles), list(titles.values())).mean()
    assert 0.25 < share < 0.5, share
