"""URL canonicalisation: documented rules by example, properties on any string, fast paths vs reference."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linksage.ingest import urls as U
from linksage.ingest.urls import canonical_url, canonicalise, canonicalise_array, url_host

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://example.com", "https://example.com/"),
        ("HTTPS://WWW.Example.COM/Path", "https://example.com/Path"),  # path case is kept
        ("http://www.www.example.com/", "https://example.com/"),
        ("http://www.com/", "https://www.com/"),  # the remainder must still be a domain
        ("http://example.com:80/a", "https://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:8080/a", "https://example.com:8080/a"),
        ("http://example.com./a/", "https://example.com/a"),
        ("http://example.com/a//", "https://example.com/a"),
        ("http://example.com/a/./b/../c", "https://example.com/a/c"),
        ("http://example.com/a?utm_source=x&b=2&a=1&fbclid=z&gclid=y", "https://example.com/a?a=1&b=2"),
        ("http://example.com/?UTM_Medium=x", "https://example.com/"),
        ("http://example.com/a?b=1&&a=2&", "https://example.com/a?a=2&b=1"),
        ("http://example.com/a#section", "https://example.com/a"),
        ("http://example.com/watch?v=1&amp;t=2", "https://example.com/watch?t=2&v=1"),
        ("http://example.com/a%7eb%2Fc%2fd", "https://example.com/a~b%2Fc%2Fd"),
        ("http://example.com/a b", "https://example.com/a%20b"),
        ("http://example.com/100%", "https://example.com/100%25"),
        ("http://example.com/café", "https://example.com/caf%C3%A9"),
        ("http://münchen.de/", "https://xn--mnchen-3ya.de/"),
        ("http://user:pw@example.com/", "https://example.com/"),
        ("http://[2001:DB8::0:1]:8080/", "https://[2001:db8::1]:8080/"),
        ("  http://example.com/a  ", "https://example.com/a"),
        ("www.example.com/a", "https://example.com/a"),
        ("//example.com/a", "https://example.com/a"),
        ("http:/example.com/a", "https://example.com/a"),
        ("http://http://example.com/a", "https://example.com/a"),
        ("http://twitter.com/#!/user/status/1", "https://twitter.com/user/status/1"),
        ("http://example.com/page#!/other", "https://example.com/page"),
    ],
)
def test_rules_by_example(raw: str, expected: str) -> None:
    assert canonical_url(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("http://[stone](http://i.imgur.com/ykwfa.jpg)", "invalid host '[stone](http:'"),
        ("http://[stone]/a", "invalid IPv6 host '[stone]'"),
        ("http://whaaat", "has no dot"),
        ("ftp://example.com/file", "unsupported scheme 'ftp'"),
        ("mailto:someone@example.com", "unsupported scheme 'mailto'"),
        ("just some words", "no scheme and no host"),
        ("", "empty URL"),
        ("http://example.com:99999/", "invalid port"),
        ("http://exa mple.com/", "invalid host"),
        (None, "URL is missing"),
    ],
)
def test_unrepairable_urls_come_back_with_a_reason(raw: str | None, reason: str) -> None:
    url, why = canonicalise(raw)
    assert url is None
    assert why is not None and reason in why


def test_host_of_canonical_urls() -> None:
    assert url_host("https://example.com:8080/a") == "example.com"
    assert url_host("https://[2001:db8::1]:80/") == "[2001:db8::1]"


# URL-shaped strings: valid and broken parts mixed, so both the fast and the general path are exercised.
_schemes = st.sampled_from(
    ["http://", "https://", "HTTP://", "http:/", "http:///", "//", "", "ftp://", "http://http://"]
)
_hosts = st.one_of(
    st.sampled_from(["example.com", "WWW.Example.com", "www.a.b.co.uk", "münchen.de", "[::1]", "[stone]", "x", ""]),
    st.from_regex(r"[a-zA-Z0-9.\-_]{1,20}", fullmatch=True),
    st.text(max_size=12),
)
_ports = st.sampled_from(["", ":80", ":443", ":8080", ":", ":99999", ":x"])
_path_chars = st.sampled_from(
    [*list("abcXYZ019-._~/%!$&'()*+,;=:@ ?#éü\t"), "%41", "%2f", "%7E", "/./", "/../", "&amp;"]
)
_paths = st.lists(_path_chars, max_size=12).map("".join)
_queries = st.lists(
    st.sampled_from(["a=1", "b=2", "utm_source=x", "UTM_x=1", "fbclid=9", "gclid", "", "c", "a=", "z=%20", "amp;x=1"]),
    max_size=5,
).map(lambda items: ("?" + "&".join(items)) if items else "")
_frags = st.sampled_from(["", "#", "#x", "#!/a/b", "#!/a?b=1", "#!x"])
url_like = st.builds(lambda *parts: "".join(parts), _schemes, _hosts, _ports, _paths, _queries, _frags)
any_string = st.one_of(st.text(), url_like)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_string)
def test_never_raises_and_is_idempotent(raw: str) -> None:
    url, reason = canonicalise(raw)
    if url is None:
        assert reason  # an unparseable URL is reported, never silently dropped
        return
    assert reason is None
    assert url.startswith("https://") and url.isascii()
    assert canonicalise(url) == (url, None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(url_like)
def test_fast_path_agrees_with_general_path(raw: str) -> None:
    text = raw.strip()
    while "&amp;" in text:
        text = text.replace("&amp;", "&")
    fast = U._canonicalise_fast(text)
    if fast is not None:
        assert fast == U._canonicalise_general(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(any_string, st.none()), max_size=40))
def test_vectorised_agrees_with_reference(values: list[str | None]) -> None:
    urls, reasons = canonicalise_array(pa.array(values, pa.string()))
    assert list(zip(urls.to_pylist(), reasons.to_pylist(), strict=True)) == [canonicalise(v) for v in values]


def test_variants_of_one_page_share_a_canonical_url() -> None:
    variants = [
        "http://www.example.com/story/1",
        "https://example.com/story/1/",
        "HTTPS://EXAMPLE.COM:443/story/1?utm_campaign=x#top",
        "example.com/story/1?fbclid=abc",
        "http://www.example.com/story/./1",
    ]
    assert {canonical_url(v) for v in variants} == {"https://example.com/story/1"}


@pytest.mark.shared
def test_reddit_urls_vectorised_equals_reference() -> None:
    path = SHARED / "reddit-top-2.5m" / "link_posts" / "part-1.parquet"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    import pyarrow.parquet as pq

    raw = pq.read_table(path, columns=["url"])["url"].slice(0, 40_000).combine_chunks()
    urls, reasons = canonicalise_array(raw)
    expected = [canonicalise(v) for v in raw.to_pylist()]
    assert list(zip(urls.to_pylist(), reasons.to_pylist(), strict=True)) == expected
    assert urls.null_count == reasons.is_valid().to_numpy(zero_copy_only=False).sum()
