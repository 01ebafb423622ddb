"""Pure-Python page ids, the Prometheus rendering and the serve config, each on its own."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linksage.config._load import ConfigError, build
from linksage.config.serve import ServeConfig
from linksage.serve.ids import page_id
from linksage.serve.metrics import BUCKETS, Registry
from linksage.store.fingerprint import page_ids

SAMPLE = re.compile(r'^[a-z_]+(\{([a-z]+="([^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$')


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=70), min_size=1, max_size=20))
def test_page_id_equals_the_stores_column_hash(urls: list[str]) -> None:
    assert [page_id(u) for u in urls] == page_ids(urls).tolist()


def test_page_id_on_word_boundaries() -> None:
    urls = ["x" * n for n in range(0, 33)] + ["https://é.example.com/ü"]
    assert [page_id(u) for u in urls] == page_ids(urls).tolist()


def test_histogram_buckets_are_cumulative_and_le_inclusive() -> None:
    reg = Registry()
    values = [0.0001, 0.001, 0.001, 0.003, 0.05, 0.2, 3.0, 99.0]
    for v in values:
        reg.observe("GET", "/v1/x", 200, v)
    reg.observe("GET", "/v1/x", 404, 0.002)
    text = reg.render([("linksage_store_version", "gauge", "v", 7)])
    for line in text.splitlines():
        assert line.startswith("# ") or SAMPLE.match(line), line
    counts = {}
    for le in [*map(repr, BUCKETS), "+Inf"]:
        prefix = f'linksage_request_duration_seconds_bucket{{method="GET",route="/v1/x",le="{le}"}} '
        counts[le] = int(next(line for line in text.splitlines() if line.startswith(prefix))[len(prefix) :])
    all_values = [*values, 0.002]
    for le, count in counts.items():
        bound = math.inf if le == "+Inf" else float(le)
        assert count == sum(v <= bound for v in all_values), le
    assert 'linksage_requests_total{method="GET",route="/v1/x",status="200"} 8' in text
    assert 'linksage_requests_total{method="GET",route="/v1/x",status="404"} 1' in text
    assert 'linksage_request_duration_seconds_count{method="GET",route="/v1/x"} 9' in text
    total = float(next(line.split()[-1] for line in text.splitlines() if "_sum{" in line))
    assert total == pytest.approx(sum(all_values))
    assert "linksage_store_version 7" in text.splitlines()


def test_label_values_are_escaped() -> None:
    reg = Registry()
    reg.observe("GET", 'a"b\\c\nd', 200, 0.01)
    line = next(line for line in reg.render().splitlines() if line.startswith("linksage_requests_total{"))
    assert 'route="a\\"b\\\\c\\nd"' in line and SAMPLE.match(line)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"port": 70_000}, "serve.port: must be in [0, 65535], got 70000"),
        ({"max_k": 0}, "serve.max_k: must be >= 1, got 0"),
        ({"reload_interval_s": 0.0}, "serve.reload_interval_s: must be > 0, got 0.0"),
        ({"host": ""}, "serve.host: must not be empty"),
        ({"max_body_bytes": "lots"}, "max_body_bytes"),
    ],
)
def test_serve_config_errors_name_the_key_and_value(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build(ServeConfig, data, prefix="serve.")


def test_serve_config_defaults_are_loopback() -> None:
    cfg = build(ServeConfig, {}, prefix="serve.")
    assert cfg.host == "127.0.0.1" and cfg.max_k == 1000
