"""End to end: a local server with the shared real article pages and pages that embed real photographs
at several sizes -> crawl -> the pages table, image sizes read from the fetched bytes -> image vectors.

The fast test crawls a slice of the articles; the slow one all 181 (acceptance point 3 of issue 4).
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_crawl_server import LocalSite, Response, html_page, photo_files, resized_jpeg, serve_articles

from linksage.config.crawl import CrawlConfig
from linksage.content.crawl import CrawlResult, crawl
from linksage.content.sources import PAGES_SCHEMA

WIDTHS = (160, 320, 640)


def serve_photo_pages(site: LocalSite) -> dict[str, dict[str, tuple[int, int]]]:
    """One page per photograph, embedding it at three sizes; returns {page url: {image url: (w, h)}}."""
    photos = photo_files()
    if not photos:
        pytest.skip("no sample photographs installed (scikit-image's or matplotlib's sample data)")
    pages: dict[str, dict[str, tuple[int, int]]] = {}
    for photo in photos:
        sizes: dict[str, tuple[int, int]] = {}
        for width in WIDTHS:
            data = resized_jpeg(photo, width)
            url = site.add(f"/img/{photo.stem}-{width}.jpg", Response(data, headers={"Content-Type": "image/jpeg"}))
            with Image.open(io.BytesIO(data)) as image:
                sizes[url] = image.size
        small, medium, large = sizes
        head = f"<meta property='og:image' content='{medium}'><meta name='description' content='{photo.stem}'>"
        body = (
            f"<p>A photograph called {photo.stem}, shown at three sizes. " * 5 + "</p>"
            f"<img src='{small}' alt='{photo.stem} thumbnail'>"  # no size attributes: size from the bytes
            f"<img src='{large}' width='10' height='10'>"  # wrong attributes: the bytes win
        )
        url = site.add(f"/photos/{photo.stem}.html", Response(html_page(f"Photo: {photo.stem}", body, head)))
        pages[url] = sizes
    return pages


def image_vectors(images: list[bytes]) -> np.ndarray:
    """(n, D) vectors of fetched image bytes through the content stage's EfficientNet-Lite0 encoder."""
    from linksage.content.image import Decoded, EfficientNetImageEncoder, decode_image

    decoded = [decode_image(b) for b in images]
    assert all(isinstance(d, Decoded) for d in decoded), [d for d in decoded if not isinstance(d, Decoded)]
    pixels = np.stack([d.pixels for d in decoded if isinstance(d, Decoded)])
    return EfficientNetImageEncoder("cpu").encode(pixels)


def crawl_site(n_articles: int | None) -> tuple[CrawlResult, dict[str, str], dict[str, dict[str, tuple[int, int]]]]:
    with LocalSite() as site:
        articles = serve_articles(site, n_articles)
        photos = serve_photo_pages(site)
        site.add(
            "/robots.txt", Response(b"User-agent: *\nDisallow: /img/private/\n", headers={"Content-Type": "text/plain"})
        )
        cfg = CrawlConfig(
            allow_private=True,
            hosts=("127.0.0.1",),  # article images point at their real CDNs: never contact them
            per_host_delay_s=0.0,
            per_host_concurrency=8,
            concurrency=8,
            fetch_images=True,
            images_per_page=3,
            retries=0,
        )
        return crawl([*articles, *photos], cfg), articles, photos


def check_result(result: CrawlResult, articles: dict[str, str], photos: dict[str, dict[str, tuple[int, int]]]) -> None:
    assert result.counts["ok"] == len(articles) + len(photos), result.counts
    table = result.table
    assert table.schema == PAGES_SCHEMA and table.num_rows == len(articles) + len(photos)
    rows: dict[str, dict[str, Any]] = {r["url"]: r for r in table.to_pylist()}

    # Articles: every page has a title; the main text matches the benchmark's ground truth.
    f1s = []
    for url, truth in articles.items():
        row = rows[url]
        assert row["title"], url
        want, got = Counter(truth.split()), Counter((row["body"] or "").split())
        overlap = sum((want & got).values())
        p, r = overlap / max(1, sum(got.values())), overlap / max(1, sum(want.values()))
        f1s.append(0.0 if overlap == 0 else 2 * p * r / (p + r))
    assert float(np.mean(f1s)) > 0.85

    # Photo pages: og:image first, every size read from the fetched bytes (not the lying attributes).
    for url, sizes in photos.items():
        images = rows[url]["images"]
        medium = list(sizes)[1]
        assert images[0]["url"] == medium
        assert {i["url"]: (i["width"], i["height"]) for i in images} == sizes
        for image_url in sizes:
            assert image_url in result.images
    report = {r["url"]: r for r in result.report.to_pylist()}
    assert all(report[u]["images_fetched"] == 3 for u in photos)

    # The image bytes are real, decodable photographs; their vectors come from the image encoder.
    urls = [u for sizes in photos.values() for u in sizes]
    for u in urls:
        with Image.open(io.BytesIO(result.images[u])) as image:
            image.load()
    vectors = image_vectors([result.images[u] for u in urls])
    assert vectors.shape[0] == len(urls) and np.isfinite(vectors).all()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    same = [float(unit[i] @ unit[j]) for i in range(len(urls)) for j in range(len(urls)) if i < j and i // 3 == j // 3]
    other = [float(unit[i] @ unit[j]) for i in range(len(urls)) for j in range(len(urls)) if i // 3 < j // 3]
    if other:  # one photograph at three sizes stays one photograph
        assert np.mean(same) > np.mean(other) + 0.2


@pytest.mark.timeout(120)
def test_crawl_articles_and_photographs_end_to_end() -> None:
    result, articles, photos = crawl_site(12)
    check_result(result, articles, photos)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_crawl_all_181_articles_and_photographs_end_to_end() -> None:
    result, articles, photos = crawl_site(None)
    assert len(articles) == 181
    check_result(result, articles, photos)
