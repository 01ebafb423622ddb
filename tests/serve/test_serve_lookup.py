"""The fast embedding look-up (``linksage.serve.lookup``) against the FastAPI route it bypasses.

Two apps over the same run directory, one with ``serve.fast_lookup`` on (the default) and one with it
off, must answer every query string with the same status, headers and bytes: answers, canonicalised
URLs and errors alike. The query parser is checked against ``urllib.parse.parse_qsl``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linksage.config.serve import ServeConfig
from linksage.errors import LinksageError
from linksage.serve import schemas
from linksage.serve.app import create_app
from linksage.serve.errors import NotFound
from linksage.serve.lookup import EMBEDDING_PATH, EmbeddingLookup, error_answer
from linksage.serve.params import query_params


@pytest.fixture(scope="module")
def pair(world: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """(fast, fastapi): the same run, the look-up answered before FastAPI's routing or by its route."""
    fast_app = create_app(world, serve_cfg=ServeConfig(allow_store_writes=False), reload=False)
    slow_app = create_app(world, serve_cfg=ServeConfig(allow_store_writes=False, fast_lookup=False), reload=False)
    assert fast_app.embedding_lookup is not None and slow_app.embedding_lookup is None
    # 500s are answers to compare here, not exceptions to raise in the test
    with (
        TestClient(fast_app, raise_server_exceptions=False) as fast,
        TestClient(slow_app, raise_server_exceptions=False) as slow,
    ):
        yield fast, slow


@pytest.fixture(scope="module")
def urls(world: Path) -> list[str]:
    return list(pq.read_table(world / "ingest" / "pages.parquet", columns=["url"])["url"].to_pylist()[:30])


def answer(client: TestClient, query: str, method: str = "GET", **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    r = client.request(method, EMBEDDING_PATH + ("?" + query if query else ""), **kwargs)
    headers = {k: v for k, v in r.headers.items() if k in ("content-type", "content-length", "location")}
    return r.status_code, headers, r.content


def same(pair: tuple[TestClient, TestClient], query: str, method: str = "GET", **kwargs: Any) -> int:
    fast, slow = pair
    got, want = answer(fast, query, method, **kwargs), answer(slow, query, method, **kwargs)
    assert got == want, query
    return got[0]


def queries(url: str) -> list[str]:
    host, path = url[len("https://") :].split("/", 1)
    q = quote(url, safe="")
    return [
        f"url={q}",
        *(f"url={q}&dim={d}" for d in (8, 16, 32)),
        f"dim=16&url={q}",
        f"url={quote('http://www.' + host.upper() + '/' + path + '/?utm_source=x#top', safe='')}&dim=8",
        f"url={url}",  # unescaped: the URL's own characters straight in the query string
        f"url=+{q}+",  # '+' is a space, and spaces around a URL are trimmed
        f"url=https%3A%2F%2Fnowhere.example.com%2Fnone&url={q}",  # the last of a repeated name wins
        f"%75rl={q}&dim=%38",  # percent-encoded names and values
        f"url={q}&dim=12",
        f"url={q}&dim=0",
        f"url={q}&dim=-8",
        f"url={q}&dim=big",
        f"url={q}&dim=",
        f"url={q}&dim",
        f"url={q}&&dim=8&",
        f"url={q}&dim={'9' * 60}",
        f"url={q}&k=3&other=%ZZ",
        "url=https%3A%2F%2Fnowhere.example.com%2Fnone",
        "url=not%20a%20url",
        "url=ftp%3A%2F%2Ffiles.example.com%2Fx",
        "url=https%3A%2F%2F%C3%A9xample.com%2F%C3%BC",
        "url=%FF%FE",
        "url=",
        "url",
        "dim=8",
        "",
        "url=" + "a" * 8_193,
        "url=https%3A%2F%2F" + "b" * 8_170 + ".com%2F",
    ]


def test_the_fast_path_answers_like_the_fastapi_route(pair: tuple[TestClient, TestClient], urls: list[str]) -> None:
    statuses = [same(pair, q) for url in urls[:3] for q in queries(url)]
    assert {200, 404, 422} <= set(statuses)
    fast, _ = pair
    body = schemas.EmbeddingOut.model_validate(fast.get(EMBEDDING_PATH, params={"url": urls[0], "dim": 16}).json())
    assert body.url == urls[0] and body.dim == 16 and len(body.embedding) == 16


def test_the_fast_path_is_the_one_answering(pair: tuple[TestClient, TestClient], urls: list[str]) -> None:
    fast, _ = pair
    lookup = fast.app.embedding_lookup  # type: ignore[attr-defined]
    seen: list[bytes] = []
    answer_of = lookup.answer
    lookup.answer = lambda qs: (seen.append(qs), answer_of(qs))[1]
    try:
        assert fast.get(EMBEDDING_PATH, params={"url": urls[1], "dim": 8}).status_code == 200
        assert fast.get(EMBEDDING_PATH, params={"url": "x"}).status_code == 422
        # declined: a body, another method, a trailing slash: FastAPI's (and the same answer either way)
        assert fast.request("GET", EMBEDDING_PATH, params={"url": urls[1]}, content=b"x").status_code == 200
        assert fast.post(EMBEDDING_PATH, params={"url": urls[1]}).status_code == 405
    finally:
        del lookup.answer
    assert len(seen) == 2 and b"dim=8" in seen[0]


def test_declined_requests_answer_as_before(pair: tuple[TestClient, TestClient], urls: list[str]) -> None:
    q = "url=" + quote(urls[2], safe="")
    assert same(pair, q, "POST") == 405
    assert same(pair, q, "HEAD") == 405
    assert same(pair, q, "GET", content=b'{"url": 1}') == 200
    trailing = [c.get(EMBEDDING_PATH + "/?" + q, follow_redirects=False) for c in pair]
    assert trailing[0].status_code == trailing[1].status_code == 307
    assert trailing[0].headers["location"] == trailing[1].headers["location"]


def test_the_openapi_spec_is_the_same_either_way(pair: tuple[TestClient, TestClient]) -> None:
    fast, slow = (c.get("/openapi.json").json() for c in pair)
    assert fast == slow
    get = fast["paths"][EMBEDDING_PATH]["get"]
    params = {p["name"]: p for p in get["parameters"]}
    assert params["url"]["required"] and params["url"]["schema"]["maxLength"] == 8_192
    assert get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/EmbeddingOut")


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_generated_query_strings_get_the_same_answer(
    pair: tuple[TestClient, TestClient], urls: list[str], data: st.DataObject
) -> None:
    url = data.draw(st.sampled_from(urls))
    value = st.one_of(
        st.just(quote(url, safe="")),
        st.just(quote(url.replace("https://", "http://www."), safe="") + "%3Futm_source%3Dx"),
        st.sampled_from(["8", "16", "32", "7", "0", "-1", "1e3", "", "+16", " 16", "%31%36"]),
        st.text(alphabet="ab%+=&/:.?#é09 ", max_size=30),
    )
    name = st.sampled_from(["url", "dim", "u%72l", "url+", "k", ""])
    fields = data.draw(st.lists(st.tuples(name, value), max_size=4))
    query = "&".join(f"{n}={v}" for n, v in fields)
    same(pair, query)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab=&%+;2F3é\x00 ", max_size=40))
def test_query_params_equal_parse_qsl(raw: str) -> None:
    encoded = raw.encode("utf-8")
    assert query_params(encoded) == dict(parse_qsl(encoded.decode("latin-1"), keep_blank_values=True))


def test_unexpected_errors_are_the_same_json_500(
    pair: tuple[TestClient, TestClient], urls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> Any:
        raise RuntimeError("disk on fire")

    for client in pair:
        monkeypatch.setattr(client.app.state.linksage, "need_store", broken)  # type: ignore[attr-defined]
    q = "url=" + quote(urls[0], safe="")
    assert same(pair, q) == 500
    assert b'"internal error: RuntimeError"' in answer(pair[0], q)[2]


def test_a_server_without_a_store_answers_503_both_ways(tmp_path: Path) -> None:
    answers = []
    for fast in (True, False):
        app = create_app(tmp_path, serve_cfg=ServeConfig(fast_lookup=fast), reload=False)
        with TestClient(app) as client:
            answers.append(answer(client, "url=https%3A%2F%2Fa.example.com%2F"))
    assert answers[0] == answers[1] and answers[0][0] == 503
    assert b"the store is not loaded" in answers[0][2]


def test_error_answer_maps_exceptions_to_status_and_message() -> None:
    assert error_answer(NotFound("page p is not in the store")) == (404, "page p is not in the store")
    assert error_answer(LinksageError("store unreadable")) == (500, "store unreadable")
    assert error_answer(KeyError("x")) == (500, "internal error: KeyError")


@pytest.mark.parametrize(
    ("scope", "handled"),
    [
        ({"method": "GET", "query_string": b"url=x", "headers": [(b"host", b"h")]}, True),
        ({"method": "POST", "headers": []}, False),
        ({"method": "GET", "headers": [(b"content-length", b"0")]}, False),
        ({"method": "GET", "headers": [(b"transfer-encoding", b"chunked")]}, False),
        ({"method": "GET", "headers": [], "root_path": "/api"}, False),
        ({"method": "GET", "headers": [], "path": EMBEDDING_PATH + "/"}, False),
        ({"method": "GET", "headers": [], "type": "websocket"}, False),
    ],
)
def test_which_requests_the_fast_path_takes(scope: dict[str, Any], handled: bool) -> None:
    assert EmbeddingLookup.handles({"type": "http", "path": EMBEDDING_PATH, **scope}) is handled


def test_nine_digits_print_every_float32_exactly() -> None:
    bits = np.random.default_rng(0).integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    text = ("%.9g," * len(values))[:-1] % tuple(values.tolist())
    np.testing.assert_array_equal(np.array(text.split(","), np.float64).astype(np.float32), values)
