"""Config of the live crawler (``linksage.content.crawl``): politeness, limits and address safety."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from linksage.config._load import ConfigError


@dataclass(frozen=True)
class CrawlConfig:
    user_agent: str = "linksage/0.1 (+https://github.com/linksage/linksage)"
    robots: bool = True  # obey robots.txt (fetched once per scheme+host+port, cached for the crawl)
    concurrency: int = 32  # requests in flight over all hosts
    per_host_concurrency: int = 2  # requests in flight to one host
    per_host_delay_s: float = 1.0  # least time between two request starts on one host
    max_crawl_delay_s: float = 10.0  # a robots.txt Crawl-delay is obeyed up to this
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0  # between two received chunks
    fetch_timeout_s: float = 30.0  # whole fetch of one URL (one attempt), headers and body
    max_bytes: int = 2 * 1024 * 1024  # bodies are streamed and cut here (decompressed bytes)
    max_redirects: int = 5
    retries: int = 2  # extra attempts on 429/5xx, timeouts and connection errors
    backoff_s: float = 0.5  # wait before retry n (0-based): backoff_s * 2**n (or Retry-After, capped)
    max_backoff_s: float = 30.0
    content_types: tuple[str, ...] = ("text/html", "application/xhtml+xml")
    allow_private: bool = False  # True lets the crawler reach private/loopback/link-local addresses
    allow_networks: tuple[str, ...] = ()  # CIDR networks reachable even when private ("10.1.0.0/16")
    hosts: tuple[str, ...] = ()  # when given, only these host names are fetched (pages, images, redirects)
    fetch_images: bool = False  # also fetch each page's first images (sizes from bytes; bytes for encoders)
    images_per_page: int = 4
    max_image_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("concurrency", "per_host_concurrency", "max_bytes", "max_image_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"crawl.{name}: must be a positive integer, got {value!r}")
        for name in ("max_redirects", "retries", "images_per_page"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"crawl.{name}: must be an integer >= 0, got {value!r}")
        for name in ("per_host_delay_s", "max_crawl_delay_s", "backoff_s", "max_backoff_s"):
            value = getattr(self, name)
            if not value >= 0:
                raise ConfigError(f"crawl.{name}: must be >= 0 seconds, got {value!r}")
        for name in ("connect_timeout_s", "read_timeout_s", "fetch_timeout_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"crawl.{name}: must be > 0 seconds, got {value!r}")
        if not self.user_agent.strip() or any(c in self.user_agent for c in "\r\n"):
            raise ConfigError(f"crawl.user_agent: must be one non-empty line, got {self.user_agent!r}")
        for i, value in enumerate(self.allow_networks):
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError as exc:
                raise ConfigError(f"crawl.allow_networks[{i}]: not an IP network: {value!r} ({exc})") from exc
        for i, value in enumerate(self.hosts):
            if not value or value != value.strip().lower() or "/" in value:
                raise ConfigError(f"crawl.hosts[{i}]: expected a lower-case host name, got {value!r}")
        if not self.content_types:
            raise ConfigError("crawl.content_types: at least one content type is needed, got []")
        for i, value in enumerate(self.content_types):
            if "/" not in value or value != value.strip().lower():
                raise ConfigError(f"crawl.content_types[{i}]: expected a lower-case type/subtype, got {value!r}")
