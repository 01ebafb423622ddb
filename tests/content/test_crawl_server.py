"""A real HTTP server on 127.0.0.1 for the crawler tests (imported by the other test_crawl_* files).

``LocalSite`` runs ``http.server.ThreadingHTTPServer`` in a thread. Routes map a path (with its
query) to a fixed response or to a function that writes the response itself (slow bodies, endless
bodies, flaky servers). Every request is logged with its time and User-Agent.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
ARTICLES = SHARED_DATA / "article-extraction-benchmark"

Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Response:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/html; charset=utf-8"})


@dataclass
class Hit:
    path: str
    time: float
    user_agent: str
    cookie: str | None = None


class LocalSite:
    """``with LocalSite() as site: site.add("/a", Response(b"<html>...")); crawl([site.url("/a")])``"""

    def __init__(self) -> None:
        self.routes: dict[str, Response | Handler] = {}
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        site = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with site._lock:
                    site.hits.append(
                        Hit(self.path, time.monotonic(), self.headers.get("User-Agent", ""), self.headers.get("Cookie"))
                    )
                route = site.routes.get(self.path)
                if route is None:
                    route = Response(b"not found", 404, {"Content-Type": "text/plain"})
                if isinstance(route, Response):
                    self.send_response(route.status)
                    for key, value in route.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(route.body)))
                    self.end_headers()
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        self.wfile.write(route.body)
                else:
                    route(self)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def add(self, path: str, route: Response | Handler) -> str:
        self.routes[path] = route
        return self.url(path)

    def hits_of(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.path == path]


def html_page(title: str, body: str, head: str = "") -> bytes:
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>{head}</head>"
        f"<body><nav>Home | About | Contact</nav><article><h1>{title}</h1>{body}</article>"
        "<footer>Copyright</footer></body></html>"
    ).encode()


def photo_files() -> list[Path]:
    """Real photographs shipped by installed packages: scikit-image's sample data and matplotlib's."""
    found: list[Path] = []
    spec = importlib.util.find_spec("skimage")
    if spec is not None and spec.submodule_search_locations:
        data = Path(next(iter(spec.submodule_search_locations))) / "data"
        found += [data / n for n in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg") if (data / n).exists()]
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.submodule_search_locations:
        hopper = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        if hopper.exists():
            found.append(hopper)
    return found


def resized_jpeg(path: Path, width: int) -> bytes:
    """The photograph scaled to ``width`` pixels wide (aspect kept), as JPEG bytes."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        height = max(1, round(rgb.height * width / rgb.width))
        out = io.BytesIO()
        rgb.resize((width, height), Image.Resampling.LANCZOS).save(out, format="JPEG", quality=90)
    return out.getvalue()


def serve_articles(site: LocalSite, limit: int | None = None) -> dict[str, str]:
    """Serve the shared article pages as /articles/<id>.html; returns {url: ground-truth body}."""
    import json

    if not ARTICLES.exists():
        pytest.skip(f"shared article benchmark not found at {ARTICLES}")
    truth = json.loads((ARTICLES / "ground-truth.json").read_text())
    served: dict[str, str] = {}
    for page_id in sorted(truth)[:limit]:
        body = gzip.decompress((ARTICLES / "html" / f"{page_id}.html.gz").read_bytes())
        # No charset in the header: the page's own <meta charset> has to be found by the parser.
        url = site.add(f"/articles/{page_id}.html", Response(body, headers={"Content-Type": "text/html"}))
        served[url] = truth[page_id]["articleBody"]
    return served


def test_local_site_serves_routes_and_logs_hits() -> None:
    import urllib.request

    with LocalSite() as site:
        site.add("/x", Response(b"hello", headers={"Content-Type": "text/plain"}))
        with urllib.request.urlopen(site.url("/x"), timeout=5) as reply:
            assert reply.read() == b"hello"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(site.url("/missing"), timeout=5)
        assert [h.path for h in site.hits] == ["/x", "/missing"]
