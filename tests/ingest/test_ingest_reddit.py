"""The Reddit adapter: mapping, filters (time range, bad URLs, blocked domains, max_posts) and their counts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from linksage.cli import main
from linksage.config import load_config
from linksage.ingest.reddit import reddit_input
from linksage.ingest.stage import external_files

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "reddit-top-2.5m"
DAY = 86_400
T0 = 1_364_774_400  # 2013-04-01


def _posts(rows: list[tuple[str, str, str, str, int]]) -> pa.Table:
    post_id, subreddit, title, url, created = zip(*rows, strict=True)
    return pa.table(
        {
            "post_id": list(post_id),
            "subreddit": list(subreddit),
            "title": list(title),
            "url": list(url),
            "domain": ["ignored"] * len(rows),
            "created_utc": pa.array(created, pa.int64()),
            "score": pa.array([1] * len(rows), pa.int64()),
        }
    )


@pytest.fixture
def reddit_dir(tmp_path: Path) -> Path:
    posts = tmp_path / "link_posts"
    posts.mkdir()
    pq.write_table(
        _posts(
            [
                ("a1", "science", "Old news", "http://news.example/old", T0 - 10 * DAY),
                ("a2", "science", "New study", "http://www.news.example/study?utm_source=rss", T0 + DAY),
                ("a3", "pics", "My cat", "http://i.imgur.com/cat.jpg", T0 + 2 * DAY),
            ]
        ),
        posts / "part-0.parquet",
    )
    pq.write_table(
        _posts(
            [
                ("b1", "science", "Same study", "https://news.example/study/", T0 + 3 * DAY),
                ("b2", "pics", "Broken", "http://[stone](http://i.imgur.com/x.jpg)", T0 + 4 * DAY),
                ("b3", "videos", "Clip", "https://youtube.com/watch?v=1", T0 + 5 * DAY),
                ("b4", "books", "A review", "http://books.example/review", T0 + 6 * DAY),
                ("b5", "books", "Later", "http://books.example/later", T0 + 40 * DAY),
            ]
        ),
        posts / "part-1.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "subreddit": ["science", "pics", "books", "unused"],
                "subscribers": [3, 2, 1, 0],
                "description": ["/r/science: Science", "/r/pics: Pictures", "/r/books: Books", "/r/unused: x"],
            }
        ),
        tmp_path / "subreddits.parquet",
    )
    return tmp_path


def _config(root: Path, **reddit: object) -> Path:
    lines = ["[ingest]", 'source = "reddit"', "[ingest.reddit]"]
    lines += [f'posts = "{root / "link_posts"}"', f'subreddits = "{root / "subreddits.parquet"}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in reddit.items()]
    path = root / "reddit.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_posts_become_pins_pages_boards(reddit_dir: Path) -> None:
    cfg = _config(reddit_dir, blocked_domains=["imgur.com", "youtube.com"], start="2013-04-01", end="2013-05-01")
    run_dir = reddit_dir / "run"
    assert main(["--quiet", "run", "ingest", "--config", str(cfg), "--run-dir", str(run_dir)]) == 0
    out = run_dir / "ingest"
    pins = pq.read_table(out / "pins.parquet").to_pylist()
    assert [(p["pin_id"], p["text"], p["created_at"]) for p in pins] == [
        ("a2", "New study", T0 + DAY),
        ("b1", "Same study", T0 + 3 * DAY),
        ("b4", "A review", T0 + 6 * DAY),
    ]
    pages = pq.read_table(out / "pages.parquet").to_pylist()
    assert [p["url"] for p in pages] == ["https://news.example/study", "https://books.example/review"]
    assert pages[0]["first_seen"] == T0 + DAY
    assert pq.read_table(out / "domains.parquet")["domain"].to_pylist() == ["news.example", "books.example"]
    boards = pq.read_table(out / "boards.parquet").to_pylist()
    assert [(b["board_id"], b["text"]) for b in boards] == [
        ("science", "/r/science: Science"),
        ("books", "/r/books: Books"),
    ]
    assert pq.read_table(out / "board_pins.parquet").to_pylist() == [
        {"board_idx": 0, "pin_idx": 0},
        {"board_idx": 0, "pin_idx": 1},
        {"board_idx": 1, "pin_idx": 2},
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["posts_read"] == 8
    assert counts["posts_before_start"] == 1 and counts["posts_after_end"] == 1
    assert counts["bad_urls_skipped"] == 1  # the markdown-mangled URL: reported, counted, not fatal
    assert counts["posts_blocked_domain"] == 2  # i.imgur.com is under imgur.com
    assert counts["pins"] == 3 and counts["pages"] == 2 and counts["boards"] == 2 and counts["domains"] == 2
    assert manifest["metrics"]["blocked_top_hosts"] == {"i.imgur.com": 1, "youtube.com": 1}
    assert next(iter(manifest["metrics"]["bad_url_reasons"])).startswith("invalid host")


def test_max_posts_keeps_the_first_in_time_order(reddit_dir: Path) -> None:
    cfg = load_config(_config(reddit_dir, max_posts=2))
    inp, filtered = reddit_input(cfg.ingest.reddit, 1000)
    pins = [chunk.table for chunk in inp.pins]
    assert [pid for t in pins for pid in t["pin_id"].to_pylist()] == ["a1", "a2"]
    assert filtered.counts["posts_beyond_max_posts"] == 5  # 8 read, 1 bad URL, 2 kept


def test_error_rows_point_into_the_original_files(reddit_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = reddit_dir / "link_posts" / "part-2.parquet"
    pq.write_table(
        _posts([("c1", "books", "x", "http://x.example/", T0), ("a2", "books", "dup", "http://y.example/", T0 + DAY)]),
        extra,
    )
    cfg = _config(reddit_dir)
    code = main(["--quiet", "run", "ingest", "--config", str(cfg), "--run-dir", str(reddit_dir / "run")])
    err = capsys.readouterr().err
    assert code == 2
    first = reddit_dir / "link_posts" / "part-0.parquet"
    # time order interleaves the files; the message still names the file and row of each post
    assert f"{extra}, row 1, column 'pin_id': duplicate pin_id (first seen at {first}, row 1)" in err


def test_external_files_are_every_file_read(reddit_dir: Path) -> None:
    cfg = load_config(_config(reddit_dir))
    names = [p.name for p in external_files(cfg)]
    assert names == ["part-0.parquet", "part-1.parquet", "subreddits.parquet"]


@pytest.mark.shared
def test_shared_reddit_slice(tmp_path: Path) -> None:
    if not SHARED.exists():
        pytest.skip(f"shared Reddit data not found at {SHARED}")
    repo = Path(__file__).resolve().parents[2]
    overrides = ["ingest.reddit.start='2013-05-25'", "ingest.reddit.max_posts=3000"]
    # the demo's own end date may lie before this start: only its block list is wanted here
    cfg = load_config(repo / "configs" / "demo-reddit.toml", [*overrides, "ingest.reddit.end=''"])
    cfg = load_config(  # the demo's block list, with the data located from this file
        None,
        [
            "ingest.source='reddit'",
            f"ingest.reddit.posts='{SHARED / 'link_posts'}'",
            f"ingest.reddit.subreddits='{SHARED / 'subreddits.parquet'}'",
            f"ingest.reddit.blocked_domains={json.dumps(list(cfg.ingest.reddit.blocked_domains))}",
            *overrides,
        ],
    )
    inp, filtered = reddit_input(cfg.ingest.reddit, 100_000)
    assert filtered.counts["posts_read"] == 1_338_470
    assert filtered.counts["posts_kept"] == 3000
    hosts = [u.split("/")[2] for chunk in inp.links for u in chunk.table["url"].to_pylist()]
    blocked = ("imgur.com", "youtube.com", "reddit.com")
    assert not any(h in blocked or h.endswith(tuple("." + d for d in blocked)) for h in hosts)
