"""parse_html: metadata, main text, images and robustness against bad input."""

from __future__ import annotations

import gzip
import io
import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from linksage.content.parse import ImageRef, ParsedPage, image_size, parse_html, with_image_sizes

ARTICLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "article-extraction-benchmark"
URL = "https://news.example.com/section/story.html"
ARTICLE = " ".join(
    f"Paragraph {i} of the story explains how the city council voted on the new tram line and what it costs."
    for i in range(12)
)


def page(head: str = "", body: str = "", html_attrs: str = "lang='en'") -> str:
    return (
        f"<!doctype html><html {html_attrs}><head>{head}</head><body>"
        "<nav><a href='/'>Home</a> <a href='/about'>About</a></nav>"
        f"<article>{body}<p>{ARTICLE}</p></article><footer>Copyright 2024 Example News</footer></body></html>"
    )


def test_title_prefers_og_title_then_title_then_h1() -> None:
    both = page("<title>Site | Story</title><meta property='og:title' content='The Story'>")
    assert parse_html(both, URL).title == "The Story"
    assert parse_html(page("<title>  Site |\n Story </title>"), URL).title == "Site | Story"
    assert parse_html(page(body="<h1>Heading  only</h1>"), URL).title == "Heading only"
    assert parse_html(page(), URL).title == ""


def test_description_from_meta_then_open_graph() -> None:
    meta = "<meta name='description' content='Meta words'><meta property='og:description' content='OG words'>"
    assert parse_html(page(meta), URL).description == "Meta words"
    assert parse_html(page("<meta property='og:description' content='OG words'>"), URL).description == "OG words"


def test_main_text_keeps_the_article_and_drops_navigation_and_footer() -> None:
    parsed = parse_html(page("<title>T</title>"), URL)
    assert "city council voted on the new tram line" in parsed.main_text
    assert "Copyright 2024" not in parsed.main_text
    assert "About" not in parsed.main_text.split()


def test_language_from_html_lang_and_meta() -> None:
    assert parse_html(page(html_attrs="lang='pt-BR'"), URL).language == "pt"
    assert parse_html(page("<meta http-equiv='content-language' content='de'>", html_attrs=""), URL).language == "de"
    assert parse_html(page("<meta property='og:locale' content='fr_FR'>", html_attrs=""), URL).language == "fr"


def test_canonical_link_is_absolute_and_og_url_is_the_fallback() -> None:
    assert parse_html(page("<link rel='canonical' href='/c/story'>"), URL).canonical_url == (
        "https://news.example.com/c/story"
    )
    og = page("<meta property='og:url' content='https://news.example.com/og'>")
    assert parse_html(og, URL).canonical_url == "https://news.example.com/og"
    assert parse_html(page(), URL).canonical_url is None


def test_images_absolute_largest_srcset_og_image_first_and_sizes_from_attributes() -> None:
    head = (
        "<meta property='og:image' content='/img/share.jpg'>"
        "<meta property='og:image:width' content='1200'><meta property='og:image:height' content='630'>"
    )
    body = (
        "<img src='a.jpg' width='400' height='300' alt=' A  cat '>"
        "<img src='small.jpg' srcset='small.jpg 320w, https://cdn.example.com/c_fill,w_1280/big.jpg 1280w, "
        "mid.jpg 640w' width='320' height='240'>"
        "<img src='x1.png' srcset='x1.png 1x, x2.png 2x' width='50' height='40'>"
        "<img src='data:image/png;base64,AAAA'><img src='/pixel.gif' width='1' height='1'>"
        "<img data-src='lazy.webp' width='100%'><img src='a.jpg'>"
        "<picture><source srcset='/p/wide.avif 2000w'><img src='/p/fallback.jpg'></picture>"
    )
    images = parse_html(page(head, body), URL).images
    assert images[0] == ImageRef("https://news.example.com/img/share.jpg", 1200, 630, "")
    assert ImageRef("https://news.example.com/section/a.jpg", 400, 300, "A cat") in images
    assert ImageRef("https://cdn.example.com/c_fill,w_1280/big.jpg", 1280, 960, "") in images
    assert ImageRef("https://news.example.com/section/x2.png", 100, 80, "") in images
    assert ImageRef("https://news.example.com/section/lazy.webp", None, None, "") in images
    assert ImageRef("https://news.example.com/p/wide.avif", 2000, None, "") in images
    urls = [i.url for i in images]
    assert len(urls) == len(set(urls))  # a.jpg twice -> once
    assert not any(u.startswith("data:") or u.endswith("pixel.gif") for u in urls)


def test_base_href_changes_how_links_resolve() -> None:
    parsed = parse_html(page("<base href='https://static.example.org/assets/'>", "<img src='pic.jpg'>"), URL)
    assert parsed.images[0].url == "https://static.example.org/assets/pic.jpg"


def test_text_joins_title_description_and_main_text_without_repeats() -> None:
    parsed = ParsedPage(url=URL, title="T", description="T", main_text="Body")
    assert parsed.text() == "T\nBody"
    assert ParsedPage(url=URL).text() == ""


@pytest.mark.parametrize(
    ("encoding", "declare"),
    [("cp1252", "<meta charset='windows-1252'>"), ("iso-8859-1", "<meta charset='iso-8859-1'>"),
     ("shift_jis", "<meta http-equiv='Content-Type' content='text/html; charset=Shift_JIS'>"),
     ("utf-8", ""), ("cp1252", "")],
)  # fmt: skip
def test_declared_and_undeclared_encodings_decode(encoding: str, declare: str) -> None:
    words = "日本語の記事" if encoding == "shift_jis" else "Crème brûlée à la façon de Müller"
    html = page(f"{declare}<title>{words}</title>").encode(encoding)
    assert parse_html(html, URL).title == words


def test_wrong_declared_charset_is_not_trusted_over_valid_utf8() -> None:
    html = page("<meta charset='iso-8859-1'><title>Crème brûlée</title>").encode("utf-8")
    assert parse_html(html, URL).title == "Crème brûlée"


def test_http_header_charset_and_bom() -> None:
    html = page("<title>Grüße</title>")
    assert parse_html(html.encode("cp1252"), URL, content_type="text/html; charset=windows-1252").title == "Grüße"
    assert parse_html(html.encode("utf-16"), URL).title == "Grüße"  # BOM
    assert parse_html(b"\xef\xbb\xbf" + html.encode("utf-8"), URL).title == "Grüße"


def test_binary_empty_and_huge_bodies_are_reported_not_raised() -> None:
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    assert parse_html(png.getvalue(), URL).problems == ("binary",)
    assert parse_html(b"%PDF-1.4 ...", URL).problems == ("binary",)
    assert parse_html(b"   ", URL).problems == ("empty",)
    huge = page("<title>Big</title>", "<p>word </p>" * 200_000).encode()
    parsed = parse_html(huge, URL, max_bytes=100_000)
    assert "truncated" in parsed.problems
    assert parsed.title == "Big"


@pytest.mark.timeout(30)
def test_hostile_nesting_is_cut_instead_of_parsed_for_minutes() -> None:
    depth = 100_000  # unguarded, lexbor spends tens of seconds on this 1.1 MB page
    html = "<html><head><title>Deep</title></head><body>" + "<div>" * depth + "text" + "</div>" * depth
    parsed = parse_html(html, URL)
    assert parsed.title == "Deep" and "too_deep" in parsed.problems
    assert "too_deep" not in parse_html(page(body="<div>" * 500 + "</div>" * 500), URL).problems


def test_broken_markup_still_parses() -> None:
    broken = "<html><head><title>Half <b>open</title><body><div><p>Unclosed <table><tr><td>cell" + ARTICLE
    parsed = parse_html(broken, URL)
    assert parsed.title.startswith("Half")
    assert "tram line" in parsed.main_text
    assert parse_html("<<<>>>\x00<title>x</title>", URL).title == "x"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000) | st.text(max_size=3000).map(str.encode))
def test_random_bytes_never_raise(data: bytes) -> None:
    parsed = parse_html(data, URL)
    assert isinstance(parsed, ParsedPage)
    assert all(i.url.startswith(("http://", "https://")) for i in parsed.images)


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


def test_image_size_reads_headers_and_rejects_garbage() -> None:
    data = _png(321, 123)
    assert image_size(data) == (321, 123)
    assert image_size(data[:40]) in ((321, 123), None)  # the IHDR chunk is within the first 33 bytes
    assert image_size(b"not an image") is None
    assert image_size(b"") is None


def test_with_image_sizes_prefers_bytes_over_attributes() -> None:
    parsed = parse_html(page(body="<img src='a.png' width='10' height='10'><img src='b.png'>"), URL)
    a, b = (i.url for i in parsed.images)
    sized = with_image_sizes(parsed, {a: _png(64, 32), b: b"garbage"})
    assert [(i.width, i.height) for i in sized.images] == [(64, 32), (None, None)]


def _shared_pages(n: int) -> list[tuple[str, bytes, str]]:
    if not (ARTICLES / "ground-truth.json").exists():
        pytest.skip(f"shared article benchmark not found at {ARTICLES}")
    truth = json.loads((ARTICLES / "ground-truth.json").read_text())
    ids = sorted(truth)[:n]
    return [
        (truth[i]["articleBody"], gzip.decompress((ARTICLES / "html" / f"{i}.html.gz").read_bytes()), truth[i]["url"])
        for i in ids
    ]


def test_real_article_pages_give_title_text_and_images() -> None:
    f1s = []
    for body, html, url in _shared_pages(6):
        parsed = parse_html(html, url)
        assert parsed.title and parsed.problems == ()
        assert parsed.images and all(i.url.startswith("http") for i in parsed.images)
        truth, got = Counter(body.split()), Counter(parsed.main_text.split())
        overlap = sum((truth & got).values())
        recall, precision = overlap / max(1, sum(truth.values())), overlap / max(1, sum(got.values()))
        assert recall > 0.8, url
        f1s.append(2 * precision * recall / (precision + recall))
    # One of these pages is a paywall teaser whose ground truth stops after a paragraph.
    assert sum(f1s) / len(f1s) > 0.85


def test_parsing_from_many_threads_equals_parsing_in_turn() -> None:
    # the crawler parses in its worker threads: results must not depend on it (trafilatura's shared lxml
    # parser is used under a lock since a crash seen once in the suite; this test did not reproduce that)
    from concurrent.futures import ThreadPoolExecutor

    docs = [
        page(f"<title>Story {i}</title>", f"<h1>Story {i}</h1>" + "<p>filler words here</p>" * (i % 40))
        for i in range(160)
    ]
    want = [parse_html(d, url=f"https://example.com/{i}") for i, d in enumerate(docs)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda a: parse_html(a[1], url=f"https://example.com/{a[0]}"), enumerate(docs)))
    assert got == want
    assert {p.title for p in got} == {f"Story {i}" for i in range(160)}
