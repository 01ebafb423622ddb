"""The browse page in headless Debian Chromium (playwright, never a downloaded browser), against uvicorn."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from serve_browser import chromium_missing, chromium_page, open_browse, running_server

from linksage.serve.app import create_app

REASON = chromium_missing()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
BACKGROUND = np.array([0xF6, 0xF7, 0xF9])


@pytest.fixture(scope="module")
def site(world: Path) -> Iterator[tuple[str, Any]]:
    with running_server(create_app(world, reload=False)) as base, chromium_page() as page:
        yield base, page


def rich_page(world: Path) -> tuple[str, int, int]:
    """URL of a page with a title, 3+ neighbours and linking pins; its neighbour and pin counts."""
    pages = pq.read_table(world / "ingest" / "pages.parquet", columns=["url", "title"])
    nbr = np.load(world / "walk" / "neighbours.npy")
    degree = np.diff(np.load(world / "graph" / "page__pin.indptr.npy"))
    titles = pages["title"].to_pylist()
    i = next(i for i in np.argsort(-degree, kind="stable") if titles[i] and (nbr[i] >= 0).sum() >= 3)
    return pages["url"][int(i)].as_py(), int((nbr[i] >= 0).sum()), int(degree[i])


def ink(png: bytes) -> float:
    """Share of pixels that are neither the page background nor white (text, bars, plots)."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    plain = (np.abs(rgb - BACKGROUND).max(axis=2) <= 8) | (rgb.min(axis=2) >= 247)
    return float(1.0 - plain.mean())


def test_results_render_with_neighbours_pins_and_histogram(site: tuple[str, Any], world: Path) -> None:
    base, page = site
    url, n_neighbours, n_linked = rich_page(world)
    open_browse(page, base, url)
    assert page.inner_text("#page-link") == url
    assert page.locator("#neighbours tbody tr").count() == n_neighbours
    assert page.locator("#pins tbody tr").count() == 20
    assert page.locator("#linked-pins li").count() == min(n_linked, 16)
    pages = pq.read_table(world / "ingest" / "pages.parquet", columns=["url", "title"]).to_pylist()
    assert page.inner_text("#page-title") == next(p["title"] for p in pages if p["url"] == url)
    assert page.evaluate("document.getElementById('histogram').naturalWidth") > 100
    assert page.locator("#recall tbody tr").count() == 3  # one row per Matryoshka dim
    assert page.is_hidden("#error")

    results = page.locator("#results").screenshot()
    whole = page.screenshot(full_page=True)
    assert ink(results) > 0.03, "the results area is (nearly) blank"
    page.goto(f"{base}/browse")  # the same page before a search: status, examples and evaluation only
    page.wait_for_selector("#evaluation:not([hidden])")
    assert ink(whole) > 1.3 * ink(page.screenshot(full_page=True))


def test_search_form_canonicalises_and_neighbour_links_navigate(site: tuple[str, Any], world: Path) -> None:
    base, page = site
    url, _, _ = rich_page(world)
    page.goto(f"{base}/browse")
    page.fill("#url-input", url.replace("https://", "http://www.") + "?utm_campaign=spring")
    page.press("#url-input", "Enter")
    page.wait_for_selector("body[data-state='ready']")
    assert page.inner_text("#page-link") == url
    first = page.locator("#neighbours tbody tr td a").first
    target = first.inner_text()
    first.click()
    page.wait_for_function(f"() => document.getElementById('page-link').textContent === {target!r}")
    page.wait_for_selector("body[data-state='ready']")
    assert "url=" in page.url


def test_unknown_pages_show_the_error(site: tuple[str, Any]) -> None:
    base, page = site
    page.goto(f"{base}/browse")
    page.fill("#url-input", "https://never-linked.example.com/nothing-here")
    page.press("#url-input", "Enter")
    page.wait_for_selector("body[data-state='error']")
    assert "neither in the store nor in the run" in page.inner_text("#error")
    assert page.is_hidden("#results")
