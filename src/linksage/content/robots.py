"""robots.txt rules, fetched once per site (scheme, host, port) and cached for the crawl.

How a robots.txt answer is read (as RFC 9309 and the big crawlers do): 2xx -> its rules; 401/403 ->
the site forbids everything; any other 4xx (usually 404) -> everything allowed; 5xx or an
unreachable site -> everything forbidden for this crawl (the site may be down; we do not guess).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

MAX_ROBOTS_BYTES = 512 * 1024  # Google reads the first 500 KiB of a robots.txt

# (robots.txt URL) -> (HTTP status or None when unreachable, body bytes)
RobotsFetch = Callable[[str], Awaitable[tuple[int | None, bytes]]]


@dataclass(frozen=True)
class SiteRules:
    """The rules of one site for our user agent."""

    parser: RobotFileParser
    status: int | None  # status of the robots.txt fetch (None: unreachable)

    def allowed(self, url: str, user_agent: str) -> bool:
        return bool(self.parser.can_fetch(user_agent, url))

    def crawl_delay(self, user_agent: str) -> float | None:
        delay = self.parser.crawl_delay(user_agent)
        return None if delay is None else float(delay)


def site_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased: the scope of one robots.txt."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower().rpartition('@')[2]}"


def rules_from_response(status: int | None, body: bytes) -> SiteRules:
    """Rules for a robots.txt fetch result (see the module docstring)."""
    parser = RobotFileParser()
    if status is not None and 200 <= status < 300:
        text = body[:MAX_ROBOTS_BYTES].decode("utf-8", "replace")
        parser.parse(text.splitlines())
    elif status in (401, 403) or status is None or status >= 500:
        parser.disallow_all = True  # type: ignore[attr-defined]  # set by read() in CPython; not in typeshed
    else:
        parser.allow_all = True  # type: ignore[attr-defined]
    return SiteRules(parser, status)


class RobotsCache:
    """Per-site robots.txt rules; concurrent asks for the same site wait for one fetch."""

    def __init__(self, fetch: RobotsFetch, user_agent: str) -> None:
        self._fetch = fetch
        self.user_agent = user_agent
        self._rules: dict[str, SiteRules] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def rules(self, url: str) -> SiteRules:
        site = site_of(url)
        if site in self._rules:
            return self._rules[site]
        lock = self._locks.setdefault(site, asyncio.Lock())
        async with lock:
            if site not in self._rules:
                status, body = await self._fetch(site + "/robots.txt")
                self._rules[site] = rules_from_response(status, body)
        return self._rules[site]

    async def allowed(self, url: str) -> bool:
        return (await self.rules(url)).allowed(url, self.user_agent)
