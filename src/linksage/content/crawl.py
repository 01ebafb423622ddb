"""A polite, SSRF-safe crawler: URLs -> the ``pages`` table, a per-URL report, and image bytes.

Per URL: robots.txt (cached per site), then GET through ``netguard.GuardedTransport`` (public
addresses only, checked after DNS resolution, unless ``allow_private``), at most
``per_host_concurrency`` requests in flight per host and ``per_host_delay_s`` (or the site's
Crawl-delay, capped) between request starts on one host. Redirects are followed by hand, each hop
recorded and checked again (scheme, robots, address). 429/5xx, timeouts and connection errors are
retried with exponential backoff. Bodies are streamed and cut at ``max_bytes`` of decompressed
bytes; only the configured content types are read. Pages are parsed off the event loop.

``crawl(urls, cfg)`` is the blocking entry point; ``crawl_async`` the same inside a running loop.
Only URLs whose outcome is ``ok`` become rows of the pages table (keyed by the URL as given);
the report has one row per distinct input URL.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from http.cookiejar import CookieJar, DefaultCookiePolicy
from urllib.parse import urljoin, urlsplit

import httpx
import pyarrow as pa

from linksage import log
from linksage.config.crawl import CrawlConfig
from linksage.content.netguard import BlockedAddressError, GuardedTransport
from linksage.content.parse import ParsedPage, parse_html, with_image_sizes
from linksage.content.robots import MAX_ROBOTS_BYTES, RobotsCache
from linksage.content.sources import pages_table

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REPORT_SCHEMA = pa.schema(
    [
        ("url", pa.string()),
        ("final_url", pa.string()),
        ("outcome", pa.string()),
        ("status", pa.int32()),
        ("redirects", pa.list_(pa.string())),
        ("attempts", pa.int32()),
        ("bytes", pa.int64()),
        ("truncated", pa.bool_()),
        ("content_type", pa.string()),
        ("images_fetched", pa.int32()),
        ("elapsed_s", pa.float32()),
        ("error", pa.string()),
    ]
)
# Outcomes: ok | bad_url | out_of_scope | robots_disallowed | blocked_address | http_error | not_allowed_type |
# unsupported_encoding | too_many_redirects | timeout | network_error | internal_error (a bug: please report)


@dataclass
class Fetch:
    """One URL fetched (following redirects): what came back and what happened."""

    url: str
    outcome: str = "ok"
    final_url: str = ""
    status: int | None = None
    redirects: list[str] = field(default_factory=list)
    attempts: int = 0
    body: bytes = b""
    truncated: bool = False
    content_type: str | None = None
    error: str = ""


@dataclass
class CrawlResult:
    """``table``: the pages table (outcome ``ok`` only); ``report``: one row per URL (``REPORT_SCHEMA``);
    ``counts``: outcomes and parse problems; ``images``: image URL -> bytes (with ``fetch_images``)."""

    table: pa.Table
    report: pa.Table
    counts: dict[str, int]
    images: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class _HostGate:
    """Per-host politeness: a concurrency limit and a least delay between request starts."""

    def __init__(self, concurrency: int, delay: float) -> None:
        self.slots = asyncio.Semaphore(concurrency)
        self.delay = delay
        self._next_start = 0.0
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        async with self.slots:
            async with self._lock:
                loop = asyncio.get_running_loop()
                wait = self._next_start - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._next_start = loop.time() + self.delay
            yield


class _BodyTooLarge(Exception):
    pass


class _Refused(Exception):
    """A fetch ended before it began (the robots.txt fetch met a refused address)."""

    def __init__(self, outcome: str, error: str) -> None:
        super().__init__(error)
        self.outcome, self.error = outcome, error


class _Decoder:
    """Streaming gzip/deflate/identity decoder that never produces more than ``limit`` bytes."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.parts: list[bytes] = []
        self._zlib: zlib._Decompress | None = None
        self._deflate_raw_fallback = encoding == "deflate"
        if encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj()

    def feed(self, chunk: bytes) -> None:
        """Add raw bytes; raises ``_BodyTooLarge`` once the decoded body passes the limit."""
        if self._zlib is None:
            self._take(chunk)
            return
        data = chunk
        while data:
            try:
                out = self._zlib.decompress(data, self.limit - self.size + 1)
            except zlib.error:
                if self._deflate_raw_fallback and self.size == 0:
                    # Some servers send raw deflate without the zlib header.
                    self._zlib, self._deflate_raw_fallback = zlib.decompressobj(-zlib.MAX_WBITS), False
                    continue
                raise
            self._take(out)
            data = self._zlib.unconsumed_tail

    def _take(self, out: bytes) -> None:
        room = self.limit - self.size
        if len(out) > room:
            self.parts.append(out[:room])
            self.size = self.limit
            raise _BodyTooLarge
        self.parts.append(out)
        self.size += len(out)

    def body(self) -> bytes:
        return b"".join(self.parts)


def _type_allowed(mime: str, allowed: tuple[str, ...]) -> bool:
    """``"text/html"`` matches itself, ``"image/"`` any image type, ``"*"`` anything (even a missing type)."""
    return any(a == "*" or mime == a or (a.endswith("/") and mime.startswith(a)) for a in allowed)


class Crawler:
    """Shared state of one crawl: the HTTP client, per-host gates and the robots cache."""

    def __init__(self, cfg: CrawlConfig) -> None:
        self.cfg = cfg
        limits = httpx.Limits(max_connections=cfg.concurrency * 2, max_keepalive_connections=cfg.concurrency)
        self.client = httpx.AsyncClient(
            transport=GuardedTransport(
                allow_private=cfg.allow_private, allow_networks=cfg.allow_networks, limits=limits
            ),
            timeout=httpx.Timeout(
                connect=cfg.connect_timeout_s,
                read=cfg.read_timeout_s,
                write=cfg.read_timeout_s,
                pool=cfg.fetch_timeout_s,
            ),
            follow_redirects=False,
            trust_env=False,
            # No cookies: each page is fetched as a first visit, and no site can track the crawl.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            headers={
                "User-Agent": cfg.user_agent,
                "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
                # Only what _Decoder can bound; a server sending br/zstd anyway gets unsupported_encoding.
                "Accept-Encoding": "gzip, deflate",
            },
        )
        self._gates: dict[str, _HostGate] = {}
        self.robots = RobotsCache(self._fetch_robots, cfg.user_agent)

    async def aclose(self) -> None:
        await self.client.aclose()

    def _gate(self, host: str) -> _HostGate:
        gate = self._gates.get(host)
        if gate is None:
            gate = self._gates[host] = _HostGate(self.cfg.per_host_concurrency, self.cfg.per_host_delay_s)
        return gate

    async def _fetch_robots(self, robots_url: str) -> tuple[int | None, bytes]:
        fetch = await self.fetch(robots_url, allowed_types=("*",), max_bytes=MAX_ROBOTS_BYTES, robots=False)
        if fetch.outcome in ("ok", "http_error"):
            return fetch.status, fetch.body
        if fetch.outcome in ("blocked_address", "bad_url"):
            raise _Refused(fetch.outcome, fetch.error)  # report the real reason, not a robots verdict
        return None, b""  # unreachable, endless redirects: forbid the site

    async def fetch(
        self,
        url: str,
        *,
        allowed_types: tuple[str, ...] | None = None,
        max_bytes: int | None = None,
        robots: bool | None = None,
    ) -> Fetch:
        """GET ``url`` following redirects by hand; never raises for network or HTTP trouble.

        ``allowed_types``: content types read (a trailing ``/`` is a prefix, ``"*"`` anything);
        default ``cfg.content_types``. ``robots``: obey robots.txt, default ``cfg.robots``.
        """
        cfg = self.cfg
        allowed = allowed_types or cfg.content_types
        limit = max_bytes or cfg.max_bytes
        obey = cfg.robots if robots is None else robots
        result = Fetch(url=url, final_url=url)
        current = url
        for _hop in range(cfg.max_redirects + 1):
            result.final_url = current
            parts = urlsplit(current) if _valid_http_url(current) else None
            if parts is None or not parts.hostname:
                result.outcome, result.error = "bad_url", f"not an http(s) URL: {current[:200]!r}"
                return result
            host = parts.hostname.lower()
            if cfg.hosts and host not in cfg.hosts:
                result.outcome, result.error = "out_of_scope", f"host {host!r} is not in crawl.hosts"
                return result
            if obey:
                try:
                    rules = await self.robots.rules(current)
                except _Refused as exc:
                    result.outcome, result.error = exc.outcome, exc.error
                    return result
                if not rules.allowed(current, cfg.user_agent):
                    result.outcome = "robots_disallowed"
                    return result
                delay = rules.crawl_delay(cfg.user_agent)
                if delay is not None:
                    gate = self._gate(host)
                    gate.delay = max(gate.delay, min(delay, cfg.max_crawl_delay_s))
            location = await self._get_with_retries(current, host, allowed, limit, result)
            if location is None:
                return result
            current = urljoin(current, location)
            result.redirects.append(current)
        result.outcome, result.error = "too_many_redirects", f"more than {cfg.max_redirects} redirects"
        return result

    async def _get_with_retries(
        self, url: str, host: str, allowed: tuple[str, ...], limit: int, result: Fetch
    ) -> str | None:
        """One hop with retries; fills ``result``; returns the redirect target, or None when done."""
        cfg = self.cfg
        for attempt in range(cfg.retries + 1):
            result.attempts += 1
            retry_after: float | None = None
            try:
                async with self._gate(host).turn(), asyncio.timeout(cfg.fetch_timeout_s):
                    location, retry_after = await self._get_once(url, allowed, limit, result)
            except BlockedAddressError as exc:
                result.outcome, result.error = "blocked_address", str(exc)
                return None
            except (httpx.InvalidURL, UnicodeError, ValueError) as exc:  # IDNA, bad IPv4, control chars
                result.outcome, result.error = "bad_url", f"{type(exc).__name__}: {exc}"[:300]
                return None
            except (httpx.TimeoutException, TimeoutError) as exc:
                result.outcome, result.error = "timeout", f"{type(exc).__name__}: {exc}"[:300]
            except (httpx.TransportError, zlib.error, OSError) as exc:
                result.outcome, result.error = "network_error", f"{type(exc).__name__}: {exc}"[:300]
            else:
                if result.outcome != "retry":
                    return location
            if attempt == cfg.retries:
                if result.outcome == "retry":
                    result.outcome = "http_error"
                return None
            wait = cfg.backoff_s * 2**attempt if retry_after is None else retry_after
            await asyncio.sleep(min(wait, cfg.max_backoff_s))
        return None

    async def _get_once(
        self, url: str, allowed: tuple[str, ...], limit: int, result: Fetch
    ) -> tuple[str | None, float | None]:
        """Send one GET; returns (redirect target or None, Retry-After seconds or None)."""
        request = self.client.build_request("GET", url)
        response = await self.client.send(request, stream=True)
        try:
            result.status = response.status_code
            result.content_type = response.headers.get("content-type")
            result.body, result.truncated, result.error = b"", False, ""
            if response.status_code in REDIRECT_STATUSES and response.headers.get("location"):
                result.outcome = "redirect"
                return response.headers["location"], None
            if response.status_code in RETRY_STATUSES:
                result.outcome, result.error = "retry", f"HTTP {response.status_code}"
                return None, _retry_after(response.headers.get("retry-after"))
            if not 200 <= response.status_code < 300:
                result.outcome, result.error = "http_error", f"HTTP {response.status_code}"
                return None, None  # an error page's body is not the page
            mime = (result.content_type or "").split(";")[0].strip().lower()
            if not _type_allowed(mime, allowed):
                result.outcome, result.error = "not_allowed_type", f"content type {mime or 'missing'!r}"
                return None, None
            result.outcome = "ok"
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("identity", "gzip", "x-gzip", "deflate", ""):
                result.outcome, result.error = "unsupported_encoding", f"content encoding {encoding!r}"
                return None, None
            decoder = _Decoder(encoding, limit)
            try:
                async for chunk in response.aiter_raw():
                    decoder.feed(chunk)
            except _BodyTooLarge:
                result.truncated = True  # stop reading: the rest of the body is never downloaded
            result.body = decoder.body()
            return None, None
        finally:
            await response.aclose()

    async def crawl_page(self, url: str) -> tuple[Fetch, ParsedPage | None, dict[str, bytes]]:
        """Fetch and parse one page (and its first images with ``fetch_images``)."""
        fetch = await self.fetch(url)
        if fetch.outcome != "ok":
            return fetch, None, {}
        page = await asyncio.to_thread(
            parse_html, fetch.body, fetch.final_url, content_type=fetch.content_type, max_bytes=self.cfg.max_bytes
        )
        if fetch.truncated and "truncated" not in page.problems:
            page = replace(page, problems=(*page.problems, "truncated"))
        images: dict[str, bytes] = {}
        if self.cfg.fetch_images:
            for ref in page.images[: self.cfg.images_per_page]:
                got = await self.fetch(ref.url, allowed_types=("image/",), max_bytes=self.cfg.max_image_bytes)
                if got.outcome == "ok" and not got.truncated and got.body:
                    images[ref.url] = got.body
            page = with_image_sizes(page, images)
        return fetch, page, images


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to exponential backoff


def _valid_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _interleave_by_host(urls: list[str]) -> list[str]:
    """Round-robin over hosts, so that workers are not all queued behind one slow host."""
    by_host: dict[str, list[str]] = defaultdict(list)
    for url in urls:
        try:
            host = (urlsplit(url).hostname or "").lower()
        except ValueError:
            host = ""
        by_host[host].append(url)
    queues = list(by_host.values())
    out: list[str] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


async def crawl_async(urls: Iterable[str], cfg: CrawlConfig) -> CrawlResult:
    """``crawl`` for callers already inside an event loop."""
    unique = list(dict.fromkeys(urls))
    order = _interleave_by_host(unique)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in order:
        queue.put_nowait(url)
    done: dict[str, tuple[Fetch, ParsedPage | None, float, int]] = {}
    images: dict[str, bytes] = {}
    crawler = Crawler(cfg)
    bar = log.progress(total=len(unique), desc="crawl", unit="url")

    async def worker() -> None:
        while True:
            try:
                url = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            started = time.perf_counter()
            try:
                fetch, page, page_images = await crawler.crawl_page(url)
            except Exception as exc:  # a bug on one URL must not end the crawl of the others
                fetch, page, page_images = Fetch(url, "internal_error", url, error=repr(exc)[:300]), None, {}
            images.update(page_images)
            done[url] = (fetch, page, time.perf_counter() - started, len(page_images))
            bar.update(1)

    try:
        await asyncio.gather(*(worker() for _ in range(min(cfg.concurrency, max(1, len(order))))))
    finally:
        bar.close()
        await crawler.aclose()
    return _result(unique, done, images)


def _result(
    urls: list[str], done: dict[str, tuple[Fetch, ParsedPage | None, float, int]], images: dict[str, bytes]
) -> CrawlResult:
    counts: Counter[str] = Counter()
    problems: list[str] = []
    report: dict[str, list[object]] = {name: [] for name in REPORT_SCHEMA.names}
    rows: list[tuple[ParsedPage, int | None]] = []
    fetched_at = int(time.time())
    for url in urls:
        fetch, page, elapsed, n_images = done[url]
        counts[fetch.outcome] += 1
        for key, value in (
            ("url", url),
            ("final_url", fetch.final_url),
            ("outcome", fetch.outcome),
            ("status", fetch.status),
            ("redirects", fetch.redirects),
            ("attempts", fetch.attempts),
            ("bytes", len(fetch.body)),
            ("truncated", fetch.truncated),
            ("content_type", fetch.content_type),
            ("images_fetched", n_images),
            ("elapsed_s", elapsed),
            ("error", fetch.error),
        ):
            report[key].append(value)
        if page is not None:
            for problem in page.problems:
                counts[problem.split(":")[0]] += 1
                if len(problems) < 1000:
                    problems.append(f"{url}: {problem}")
            # The page is keyed by the URL as given (the pins link to it), not by where redirects ended.
            rows.append((replace(page, url=url), fetched_at))
    counts["images_fetched"] = len(images)
    return CrawlResult(pages_table(rows), pa.table(report, schema=REPORT_SCHEMA), dict(counts), images, problems)


def crawl(urls: Iterable[str], cfg: CrawlConfig | None = None) -> CrawlResult:
    """Crawl ``urls`` politely and safely (see the module docstring); blocks until all are done."""
    return asyncio.run(crawl_async(urls, cfg or CrawlConfig()))
