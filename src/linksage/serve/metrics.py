"""Request counters and latency histograms, rendered in the Prometheus text exposition format (0.0.4).

Observations come from ``MetricsMiddleware``, which runs on the server's event loop: one thread updates
the registry, so plain dict increments need no lock. Routes are labelled by their template
(``/v1/pins/{pin_id}/pages``), never by the raw path, so label cardinality stays bounded.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# seconds; the embedding look-up's target is p99 <= 50 ms, top-k pins p99 <= 100 ms
BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Histogram:
    """Counts per bucket (not cumulative: made cumulative when rendered), sum and count."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1  # le semantics: a value equal to a bound is in it
        self.total += seconds
        self.n += 1


class Registry:
    """Requests by (method, route, status) and latency by (method, route); gauges set by the app."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.started = time.time()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.latency.get((method, route))
        if hist is None:
            hist = self.latency[(method, route)] = Histogram()
        hist.observe(seconds)

    def render(self, extra: Sequence[tuple[str, str, str, float]] = ()) -> str:
        """The text format; ``extra`` adds (name, type, help text, value) samples (the app's state)."""
        lines = [
            "# HELP linksage_requests_total HTTP requests answered, by method, route template and status code.",
            "# TYPE linksage_requests_total counter",
        ]
        for (method, route, status), count in sorted(self.requests.items()):
            lines.append(f"linksage_requests_total{_labels(method=method, route=route, status=str(status))} {count}")
        lines += [
            "# HELP linksage_request_duration_seconds Time from request start to the end of the response, by route.",
            "# TYPE linksage_request_duration_seconds histogram",
        ]
        for (method, route), hist in sorted(self.latency.items()):
            cumulative = 0
            for bound, count in zip((*BUCKETS, math.inf), hist.counts, strict=True):
                cumulative += count
                le = "+Inf" if math.isinf(bound) else repr(bound)
                lines.append(
                    f"linksage_request_duration_seconds_bucket{_labels(method=method, route=route, le=le)} {cumulative}"
                )
            lines.append(f"linksage_request_duration_seconds_sum{_labels(method=method, route=route)} {hist.total!r}")
            lines.append(f"linksage_request_duration_seconds_count{_labels(method=method, route=route)} {hist.n}")
        lines += [
            "# HELP linksage_uptime_seconds Seconds since the server started.",
            "# TYPE linksage_uptime_seconds gauge",
            f"linksage_uptime_seconds {time.time() - self.started:.3f}",
        ]
        for name, kind, help_text, value in extra:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {_number(value)}"]
        return "\n".join(lines) + "\n"


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class MetricsMiddleware:
    """Pure ASGI middleware timing every HTTP request into a ``Registry`` (unmatched paths: ``route="other"``)."""

    def __init__(self, app: ASGIApp, registry: Registry) -> None:
        self.app = app
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception before the response started is answered 500 by Starlette

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "other"
            self.registry.observe(scope.get("method", "GET"), route, status, time.perf_counter() - start)
