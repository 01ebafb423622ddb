"""Page sources: folders of HTML files and WARC files -> the pages table, bad input counted."""

from __future__ import annotations

import gzip
import io
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from linksage.content.sources import PAGES_SCHEMA, pages_from_html_dir, pages_from_warc, write_pages
from linksage.errors import InputError

ARTICLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "article-extraction-benchmark"
BODY = "<p>" + "The museum reopened its east wing with a show of early photography and maps. " * 8 + "</p>"


def html(title: str, head: str = "") -> bytes:
    page = f"<html lang='en'><head><title>{title}</title>{head}</head><body><article>{BODY}</article></body></html>"
    return page.encode()


def test_html_dir_urls_from_json_sidecar_canonical_and_missing(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.html").write_bytes(html("A"))
    (tmp_path / "sub" / "b.htm").write_bytes(html("B"))
    canonical = "<link rel='canonical' href='https://c.org/c'>"
    (tmp_path / "c.html.gz").write_bytes(
        gzip.compress(html("C", canonical).replace(b"<body>", b"<body><img src=p.jpg>"))
    )
    (tmp_path / "d.html").write_bytes(html("D"))  # no URL anywhere
    (tmp_path / "notes.txt").write_text("not a page")
    (tmp_path / "urls.json").write_text(json.dumps({"a.html": "https://a.org/a", "sub/b.htm": "https://b.org/b"}))
    pages = pages_from_html_dir(tmp_path)
    assert pages.table.schema == PAGES_SCHEMA
    rows = {r["url"]: r for r in pages.table.to_pylist()}
    assert set(rows) == {"https://a.org/a", "https://b.org/b", "https://c.org/c"}
    assert rows["https://b.org/b"]["title"] == "B"
    assert "east wing" in rows["https://c.org/c"]["body"]
    assert rows["https://c.org/c"]["images"][0]["url"] == "https://c.org/p.jpg"  # resolved against the canonical
    assert rows["https://a.org/a"]["fetched_at"] > 0
    assert pages.counts["files"] == 4 and pages.counts["pages"] == 3 and pages.counts["no_url"] == 1
    assert any(p.startswith("d.html: no_url") for p in pages.problems)


def test_html_dir_tsv_sidecar_and_bad_files_are_counted(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_bytes(html("A"))
    (tmp_path / "bin.html").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    (tmp_path / "broken.html.gz").write_bytes(b"\x1f\x8b\x08\x00 definitely not gzip")
    (tmp_path / "urls.tsv").write_text(
        "# file\turl\na.html\thttps://a.org/a\nbin.html\thttps://a.org/bin\nbroken.html.gz\thttps://a.org/x\n"
    )
    pages = pages_from_html_dir(tmp_path)
    assert pages.table.column("url").to_pylist() == ["https://a.org/a", "https://a.org/bin"]
    assert pages.counts["binary"] == 1
    assert pages.counts["unreadable"] == 1
    assert pages.table.to_pylist()[1]["body"] == ""


def test_bad_sidecars_name_the_file_and_row(tmp_path: Path) -> None:
    (tmp_path / "urls.tsv").write_text("a.html\thttps://a.org\njust-one-column\n")
    with pytest.raises(InputError, match=r"urls.tsv, row 1.*just-one-column"):
        pages_from_html_dir(tmp_path)
    (tmp_path / "urls.json").write_text("[1, 2]")
    with pytest.raises(InputError, match=r"urls\.json"):
        pages_from_html_dir(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        pages_from_html_dir(tmp_path / "missing")


def write_warc(path: Path, records: list[tuple[str, int, str, bytes]], *, gz: bool = True) -> None:
    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=gz)
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "linksage tests"}))
        for url, status, content_type, body in records:
            headers = StatusAndHeaders(f"{status} X", [("Content-Type", content_type)], protocol="HTTP/1.1")
            record = writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers)
            writer.write_record(record)
        writer.write_record(writer.create_warc_record("https://a.org/req", "request", payload=io.BytesIO(b"GET /")))


@pytest.mark.parametrize("gz", [True, False])
def test_warc_html_responses_become_pages(tmp_path: Path, gz: bool) -> None:
    path = tmp_path / ("crawl.warc.gz" if gz else "crawl.warc")
    write_warc(
        path,
        [
            ("https://a.org/one", 200, "text/html; charset=windows-1252", html("Café").decode().encode("cp1252")),
            ("https://a.org/two", 200, "application/xhtml+xml", html("Two")),
            ("https://a.org/img.png", 200, "image/png", b"\x89PNG"),
            ("https://a.org/gone", 404, "text/html", html("Not found")),
            ("https://a.org/bin", 200, "text/html", b"%PDF-1.7 binary"),
        ],
        gz=gz,
    )
    pages = pages_from_warc(path)
    rows = pages.table.to_pylist()
    assert [r["url"] for r in rows] == ["https://a.org/one", "https://a.org/two", "https://a.org/bin"]
    assert rows[0]["title"] == "Café"  # charset from the recorded HTTP header
    assert rows[0]["fetched_at"] > 1_600_000_000
    assert pages.counts["responses"] == 5
    assert pages.counts["not_html"] == 1 and pages.counts["not_ok"] == 1 and pages.counts["binary"] == 1


def test_damaged_warcs_keep_the_records_before_the_damage(tmp_path: Path) -> None:
    good = tmp_path / "good.warc"
    write_warc(good, [(f"https://a.org/{i}", 200, "text/html", html(f"P{i}")) for i in range(3)], gz=False)
    data = good.read_bytes()
    cut = data.index(b"https://a.org/2") - 200  # inside the third response record
    damaged = tmp_path / "folder"
    damaged.mkdir()
    (damaged / "cut.warc").write_bytes(data[:cut] + b"garbage that is not a WARC header\r\n\r\n")
    (damaged / "junk.warc.gz").write_bytes(b"not a warc at all")
    pages = pages_from_warc(damaged)
    assert pages.table.column("url").to_pylist()[:2] == ["https://a.org/0", "https://a.org/1"]
    assert pages.counts["files"] == 2
    assert pages.problems == ["junk.warc.gz record 0: no_http_headers"]
    with pytest.raises(InputError, match="no such WARC"):
        pages_from_warc(tmp_path / "nope.warc")


def test_shared_articles_folder_round_trips_through_parquet(tmp_path: Path) -> None:
    if not ARTICLES.exists():
        pytest.skip(f"shared article benchmark not found at {ARTICLES}")
    truth = json.loads((ARTICLES / "ground-truth.json").read_text())
    ids = sorted(truth)[:8]
    for i in ids:
        shutil.copy(ARTICLES / "html" / f"{i}.html.gz", tmp_path / f"{i}.html.gz")
    (tmp_path / "urls.json").write_text(json.dumps({f"{i}.html.gz": truth[i]["url"] for i in ids}))
    pages = pages_from_html_dir(tmp_path)
    assert pages.table.num_rows == 8
    assert all(pages.table.column("title").to_pylist())
    out = tmp_path / "pages.parquet"
    write_pages(pages, out)
    assert pq.read_table(out).equals(pages.table)
