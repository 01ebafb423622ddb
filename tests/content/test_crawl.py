"""The crawler's rules, each against a real HTTP server on 127.0.0.1: SSRF, robots, byte cap,
content types, redirects, retries, timeouts and per-host politeness."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler
from itertools import pairwise

import pytest
from test_crawl_server import LocalSite, Response, html_page

from linksage.config import ConfigError
from linksage.config.crawl import CrawlConfig
from linksage.content import netguard
from linksage.content.crawl import REPORT_SCHEMA, crawl
from linksage.content.netguard import BlockedAddressError, blocked_reason, check_addresses
from linksage.content.sources import PAGES_SCHEMA

pytestmark = pytest.mark.timeout(60)
TEXT = "<p>" + "Volunteers planted four hundred oak trees along the river this spring. " * 6 + "</p>"
PAGE = html_page("Oaks", TEXT)
# Normal tests reach the loopback server through an explicit allowance, with no politeness delay.
LOCAL = CrawlConfig(allow_private=True, per_host_delay_s=0.0, per_host_concurrency=4, retries=0)


def cfg(**changes: object) -> CrawlConfig:
    from dataclasses import replace

    return replace(LOCAL, **changes)


def report(result: object, url: str) -> dict[str, object]:
    rows = [r for r in result.report.to_pylist() if r["url"] == url]  # type: ignore[attr-defined]
    assert len(rows) == 1
    return rows[0]


# --- SSRF -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.9", "private"), ("172.16.5.4", "private"),
     ("169.254.169.254", "link-local"), ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"),
     ("240.0.0.1", "private"), ("100.64.0.1", "not global"), ("::1", "loopback"), ("fe80::1", "link-local"),
     ("fc00::1", "private"), ("ff02::1", "multicast"), ("::ffff:127.0.0.1", "loopback"),
     ("::ffff:10.0.0.1", "private"), ("2002:7f00:1::1", "loopback"),
     ("93.184.216.34", None), ("8.8.8.8", None), ("2606:4700:4700::1111", None)],
)  # fmt: skip
def test_blocked_reason_of_addresses(address: str, reason: str | None) -> None:
    assert blocked_reason(address) == reason


def test_one_private_address_among_public_ones_refuses_the_host() -> None:
    with pytest.raises(BlockedAddressError, match=r"10\.0\.0\.7"):
        check_addresses("mixed.example", ["93.184.216.34", "10.0.0.7"])
    check_addresses("ok.example", ["93.184.216.34", "8.8.8.8"])
    check_addresses("lan.example", ["10.0.0.7"], allowed=[__import__("ipaddress").ip_network("10.0.0.0/8")])


def test_loopback_literal_and_localhost_are_refused_without_contact() -> None:
    with LocalSite() as site:
        site.add("/", Response(PAGE))
        urls = [site.url("/"), site.url("/", host="localhost"), f"http://[::1]:{site.port}/"]
        result = crawl(urls, cfg(allow_private=False))
        assert [report(result, u)["outcome"] for u in urls] == ["blocked_address"] * 3
        assert "loopback" in str(report(result, urls[1])["error"])
        assert site.hits == []  # not even robots.txt was requested
        assert result.table.num_rows == 0


def test_redirects_to_private_addresses_are_refused_at_the_hop() -> None:
    with LocalSite() as site:
        targets = [
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/admin",
            f"http://127.0.0.2:{site.port}/",
        ]
        for i, target in enumerate(targets):
            site.add(f"/r{i}", Response(b"", 302, {"Location": target}))
        urls = [site.url(f"/r{i}") for i in range(len(targets))]
        # Only this server's exact address is allowed; every other private address stays refused.
        result = crawl(urls, cfg(allow_private=False, allow_networks=("127.0.0.1/32",)))
        for url, target in zip(urls, targets, strict=True):
            row = report(result, url)
            assert row["outcome"] == "blocked_address"
            assert row["redirects"] == [target] and row["final_url"] == target


def test_hostname_resolving_to_a_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake_resolve(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "127.0.0.1"] if host == "rebind.example" else ["127.0.0.1"]

    monkeypatch.setattr(netguard, "resolve", fake_resolve)
    result = crawl(["http://rebind.example/", "http://public-looking.example/"], cfg(allow_private=False))
    assert set(result.report.column("outcome").to_pylist()) == {"blocked_address"}


def test_connections_go_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend connects to the address it checked, not to a second lookup of the name."""
    with LocalSite() as site:
        site.add("/", Response(PAGE))

        async def fake_resolve(host: str, port: int) -> list[str]:
            return ["127.0.0.1"]

        monkeypatch.setattr(netguard, "resolve", fake_resolve)
        url = f"http://no-such-host.invalid:{site.port}/"
        result = crawl([url], cfg(robots=False))
        assert report(result, url)["outcome"] == "ok"  # .invalid never resolves: the checked address was used


# --- robots.txt -------------------------------------------------------------------------------


def test_robots_rules_are_obeyed_per_user_agent_and_fetched_once() -> None:
    with LocalSite() as site:
        robots = "User-agent: linksage-test\nDisallow: /only-us/\n\nUser-agent: *\nDisallow: /private/\n"
        site.add("/robots.txt", Response(robots.encode(), headers={"Content-Type": "text/plain"}))
        for path in ("/open/a", "/open/b", "/private/x", "/only-us/y"):
            site.add(path, Response(PAGE))
        urls = [site.url(p) for p in ("/open/a", "/open/b", "/private/x", "/only-us/y")]
        ours = crawl(urls, cfg(user_agent="linksage-test/1.0"))
        assert [report(ours, u)["outcome"] for u in urls] == ["ok", "ok", "ok", "robots_disallowed"]
        other = crawl(urls, cfg(user_agent="otherbot/2.0"))
        assert [report(other, u)["outcome"] for u in urls] == ["ok", "ok", "robots_disallowed", "ok"]
        assert site.hits_of("/only-us/y")[0].user_agent == "otherbot/2.0"
        assert len(site.hits_of("/private/x")) == 1  # only the crawl whose robots group allowed it
        assert len(site.hits_of("/robots.txt")) == 2  # once per crawl, not once per URL


@pytest.mark.parametrize(("status", "allowed"), [(404, True), (410, True), (403, False), (503, False)])
def test_robots_status_decides_when_there_are_no_rules(status: int, allowed: bool) -> None:
    with LocalSite() as site:
        site.add("/robots.txt", Response(b"Disallow: /", status, {"Content-Type": "text/plain"}))
        url = site.add("/page", Response(PAGE))
        result = crawl([url], cfg())
        assert report(result, url)["outcome"] == ("ok" if allowed else "robots_disallowed")
        assert len(site.hits_of("/page")) == (1 if allowed else 0)


def test_robots_crawl_delay_spaces_requests() -> None:
    with LocalSite() as site:
        # urllib.robotparser reads whole seconds only.
        site.add("/robots.txt", Response(b"User-agent: *\nCrawl-delay: 1\n", headers={"Content-Type": "text/plain"}))
        urls = [site.add(f"/p{i}", Response(PAGE)) for i in range(2)]
        crawl(urls, cfg(max_crawl_delay_s=5.0))
        first, second = sorted(h.time for h in site.hits if h.path.startswith("/p"))
        assert second - first >= 0.95


# --- byte cap, content types, encodings ------------------------------------------------------


def endless(sent: list[int]) -> object:
    def handler(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Connection", "close")
        h.end_headers()
        chunk = b"<p>" + b"more and more words " * 3000 + b"</p>"
        try:
            h.wfile.write(b"<html><head><title>Endless</title></head><body>")
            while sent[0] < 200 * 1024 * 1024:
                h.wfile.write(chunk)
                sent[0] += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        h.close_connection = True

    return handler


def test_byte_cap_stops_an_endless_body() -> None:
    sent = [0]
    with LocalSite() as site:
        url = site.add("/endless", endless(sent))
        t0 = time.perf_counter()
        result = crawl([url], cfg(robots=False, max_bytes=300_000))
        row = report(result, url)
        assert row["outcome"] == "ok" and row["truncated"] is True
        assert row["bytes"] == 300_000
        assert result.table.column("title").to_pylist() == ["Endless"]
        assert time.perf_counter() - t0 < 10
    assert sent[0] < 50 * 1024 * 1024  # the server was cut off long before its 200 MB


def test_byte_cap_counts_decompressed_bytes_of_a_gzip_bomb() -> None:
    bomb = gzip.compress(b"<html><title>Bomb</title><body>" + b"\x20" * 40_000_000, compresslevel=9)
    with LocalSite() as site:
        url = site.add("/bomb", Response(bomb, headers={"Content-Type": "text/html", "Content-Encoding": "gzip"}))
        result = crawl([url], cfg(robots=False, max_bytes=200_000))
        row = report(result, url)
        assert len(bomb) < 200_000 and row["truncated"] is True and row["bytes"] == 200_000


def test_content_types_and_encodings_outside_the_allowed_set_are_not_read() -> None:
    with LocalSite() as site:
        urls = {
            "png": site.add("/x.png", Response(b"\x89PNG", headers={"Content-Type": "image/png"})),
            "none": site.add("/none", Response(PAGE, headers={})),
            "br": site.add("/br", Response(b"??", headers={"Content-Type": "text/html", "Content-Encoding": "br"})),
            "xhtml": site.add("/x", Response(PAGE, headers={"Content-Type": "application/xhtml+xml"})),
            "gz": site.add(
                "/gz", Response(gzip.compress(PAGE), headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})
            ),
        }
        result = crawl(list(urls.values()), cfg(robots=False))
        outcomes = {k: report(result, u)["outcome"] for k, u in urls.items()}
        assert outcomes == {
            "png": "not_allowed_type",
            "none": "not_allowed_type",
            "br": "unsupported_encoding",
            "xhtml": "ok",
            "gz": "ok",
        }
        bodies = dict(zip(result.table.column("url").to_pylist(), result.table.column("body").to_pylist(), strict=True))
        assert "oak trees" in bodies[urls["gz"]]


# --- redirects, errors, retries, timeouts ----------------------------------------------------


def test_redirects_are_followed_recorded_and_bounded() -> None:
    with LocalSite() as site:
        site.add("/a", Response(b"", 301, {"Location": "/b"}))
        site.add("/b", Response(b"", 307, {"Location": site.url("/final")}))
        site.add("/final", Response(PAGE))
        site.add("/loop1", Response(b"", 302, {"Location": "/loop2"}))
        site.add("/loop2", Response(b"", 302, {"Location": "/loop1"}))
        site.add("/ftp", Response(b"", 302, {"Location": "ftp://files.example/x"}))
        urls = [site.url("/a"), site.url("/loop1"), site.url("/ftp"), site.url("/missing"), "not a url", "ftp://x/y"]
        result = crawl(urls, cfg(robots=False, max_redirects=3))
        a = report(result, urls[0])
        assert a["outcome"] == "ok" and a["redirects"] == [site.url("/b"), site.url("/final")]
        assert a["final_url"] == site.url("/final") and a["status"] == 200
        assert report(result, urls[1])["outcome"] == "too_many_redirects"
        assert len(report(result, urls[1])["redirects"]) == 4
        assert report(result, urls[2])["outcome"] == "bad_url"
        assert report(result, urls[3])["outcome"] == "http_error" and report(result, urls[3])["status"] == 404
        assert [report(result, u)["outcome"] for u in urls[4:]] == ["bad_url", "bad_url"]
        # The page is keyed by the URL the pins link to, not by where redirects ended.
        assert result.table.column("url").to_pylist() == [urls[0]]
        assert result.report.schema == REPORT_SCHEMA and result.table.schema == PAGES_SCHEMA


@pytest.mark.parametrize(
    "url",
    ["http://" + "a" * 70 + ".com/", "http://exa\x00mple.com/", "http://xn--zz.example/", "http://a..b/",
     "http://300.1.1.1/", "http://0177.0.0.1/", "http://[::1/", "javascript:alert(1)", ""],
)  # fmt: skip
def test_malformed_urls_are_bad_url_before_any_lookup(url: str) -> None:
    result = crawl([url], cfg(allow_private=False))
    assert report(result, url)["outcome"] == "bad_url"


def flaky(failures: int, status: int = 503) -> object:
    count = [0]
    lock = threading.Lock()

    def handler(h: BaseHTTPRequestHandler) -> None:
        with lock:
            count[0] += 1
            fail = count[0] <= failures
        body = b"busy" if fail else PAGE
        h.send_response(status if fail else 200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return handler


def test_5xx_is_retried_with_exponential_backoff_then_given_up() -> None:
    with LocalSite() as site:
        ok = site.add("/flaky", flaky(2))
        down = site.add("/down", flaky(100, 500))
        result = crawl([ok, down], cfg(robots=False, retries=2, backoff_s=0.1))
        assert report(result, ok)["outcome"] == "ok" and report(result, ok)["attempts"] == 3
        assert report(result, down)["outcome"] == "http_error" and report(result, down)["status"] == 500
        assert report(result, down)["attempts"] == 3
        starts = [h.time for h in site.hits_of("/flaky")]
        gaps = [b - a for a, b in pairwise(starts)]
        assert gaps[0] >= 0.09 and gaps[1] >= 0.19  # 0.1 s, then 0.2 s


def test_slow_servers_time_out_and_are_retried() -> None:
    def slow(h: BaseHTTPRequestHandler) -> None:
        time.sleep(1.5)
        try:
            h.send_response(200)
            h.end_headers()
        except (BrokenPipeError, ConnectionResetError):
            pass

    with LocalSite() as site:
        url = site.add("/slow", slow)
        t0 = time.perf_counter()
        result = crawl([url], cfg(robots=False, read_timeout_s=0.3, retries=1, backoff_s=0.0))
        row = report(result, url)
        assert row["outcome"] == "timeout" and row["attempts"] == 2
        assert time.perf_counter() - t0 < 2.5  # waiting for the server would take 2 x 1.5 s


# --- politeness ----------------------------------------------------------------------------


def test_per_host_concurrency_and_delay() -> None:
    in_flight, peak, lock = [0], [0], threading.Lock()

    def tracked(h: BaseHTTPRequestHandler) -> None:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.3)  # long enough that requests allowed to overlap do overlap
        with lock:
            in_flight[0] -= 1
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(len(PAGE)))
        h.end_headers()
        h.wfile.write(PAGE)

    with LocalSite() as site:
        urls = [site.add(f"/t{i}", tracked) for i in range(8)]
        result = crawl(urls, cfg(robots=False, concurrency=8, per_host_concurrency=2))
        assert result.counts["ok"] == 8
        assert peak[0] == 2
        site.hits.clear()
        crawl(urls[:4], cfg(robots=False, concurrency=8, per_host_concurrency=4, per_host_delay_s=0.2))
        starts = sorted(h.time for h in site.hits)
        assert min(b - a for a, b in pairwise(starts)) >= 0.18


def test_cookies_are_never_sent_back_and_no_urls_is_an_empty_crawl() -> None:
    with LocalSite() as site:
        first = site.add("/set", Response(PAGE, headers={"Content-Type": "text/html", "Set-Cookie": "id=42; Path=/"}))
        second = site.add("/after", Response(PAGE))
        crawl([first], cfg(robots=False, concurrency=1))
        crawl([first, second], cfg(robots=False, concurrency=1))
        assert all(h.cookie is None for h in site.hits)
    empty = crawl([], cfg())
    assert empty.table.num_rows == 0 and empty.report.num_rows == 0


def test_user_agent_is_sent_and_crawl_works_inside_a_running_loop() -> None:
    from linksage.content.crawl import crawl_async

    with LocalSite() as site:
        url = site.add("/ua", Response(PAGE))
        result = asyncio.run(crawl_async([url, url], cfg(robots=False, user_agent="linksage-test/9")))
        assert result.report.num_rows == 1  # duplicates are fetched once
        assert site.hits_of("/ua")[0].user_agent == "linksage-test/9"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("concurrency", 0, "crawl.concurrency"), ("per_host_delay_s", -1.0, "crawl.per_host_delay_s"),
     ("allow_networks", ("10.0.0.0/33",), "crawl.allow_networks"), ("user_agent", "a\nb", "crawl.user_agent"),
     ("content_types", ("HTML",), "crawl.content_types"), ("read_timeout_s", 0.0, "crawl.read_timeout_s")],
)  # fmt: skip
def test_config_errors_name_the_key_and_value(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        CrawlConfig(**{key: value})  # type: ignore[arg-type]
    assert repr(value if not isinstance(value, tuple) else value[0]) in str(err.value)
