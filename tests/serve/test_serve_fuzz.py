"""Hypothesis against the app's own OpenAPI spec: generated requests for every operation, never a 5xx.

Parameters are drawn from their schema (bounds included, and just outside them), from real and
mangled URLs and pin ids, and from junk of the wrong type. 2xx bodies must validate against the
operation's documented response model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linksage.serve import schemas

EXAMPLES = 40


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    return dict(client.get("/openapi.json").json())


@pytest.fixture(scope="module")
def known(world: Path) -> dict[str, list[str]]:
    urls = pq.read_table(world / "ingest" / "pages.parquet", columns=["url"])["url"].to_pylist()[:20]
    pins = pq.read_table(world / "ingest" / "pins.parquet", columns=["pin_id"])["pin_id"].to_pylist()[:20]
    return {"url": urls, "pin_id": pins}


def junk() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=40), st.from_regex(r"[ -~]{0,60}", fullmatch=True), st.just(""))


def string_for(name: str, known: dict[str, list[str]]) -> st.SearchStrategy[str]:
    if name == "url":
        real = st.sampled_from(known["url"])
        mangled = real.map(lambda u: u.replace("https://", "http://www.") + "/?utm_source=x#f")
        return st.one_of(real, mangled, junk(), st.text(min_size=8_190, max_size=8_200))
    if name == "pin_id":
        return st.one_of(st.sampled_from(known["pin_id"]), junk())
    return junk()


def value_for(param: dict[str, Any], known: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    schema = param.get("schema", {})
    types = {s.get("type") for s in schema.get("anyOf", [schema])}
    if "integer" in types:
        low, high = schema.get("minimum", -(2**40)), schema.get("maximum", 2**40)
        around = st.sampled_from([low - 1, low, low + 1, high - 1, high, high + 1])
        return st.one_of(st.integers(low, high), around, st.integers(-(2**70), 2**70), junk())
    return string_for(param["name"], known)


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]


def response_model(op: dict[str, Any]) -> type[Any] | None:
    ref = op["responses"].get("200", {}).get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
    return getattr(schemas, ref.rsplit("/", 1)[1]) if ref else None


def check(response: Any, op: dict[str, Any]) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if response.status_code == 200:
        model = response_model(op)
        if model is not None:
            model.model_validate(response.json())
    elif response.headers.get("content-type", "").startswith("application/json"):
        schemas.ErrorOut.model_validate(response.json())


def embed_bodies(known: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    text = st.one_of(st.none(), st.text(max_size=200))
    valid = st.fixed_dictionaries(
        {"url": string_for("url", known)},
        optional={
            "title": text,
            "description": text,
            "body": text,
            "pins": st.lists(st.one_of(st.sampled_from(known["pin_id"]), junk()), max_size=6),
            "dim": st.one_of(st.none(), st.sampled_from([8, 16, 32, 0, 7, -1, 2**40])),
            "store": st.just(False),
            "day": st.one_of(st.none(), st.sampled_from(["2013-05-01", "2013-13-01"]), junk()),
        },
    )
    anything = st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
        max_leaves=8,
    )
    return st.one_of(valid, anything)


def test_the_spec_lists_operations(spec: dict[str, Any]) -> None:
    ops = {(path, method) for path, method, _ in operations(spec)}
    assert ("/v1/pages/embed", "post") in ops and ("/v1/pins/{pin_id}/pages", "get") in ops
    assert len(ops) >= 10


@settings(max_examples=EXAMPLES * 4, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_get_operations_never_answer_5xx(
    client: TestClient, spec: dict[str, Any], known: dict[str, list[str]], data: st.DataObject
) -> None:
    gets = [(p, op) for p, method, op in operations(spec) if method == "get"]
    path, op = data.draw(st.sampled_from(gets), label="operation")
    query, url = {}, path
    for param in op.get("parameters", []):
        if param["in"] == "path":
            value = data.draw(value_for(param, known), label=param["name"])
            url = url.replace("{" + param["name"] + "}", quote(str(value), safe="") or "%20")
        elif param.get("required") or data.draw(st.booleans()):
            query[param["name"]] = data.draw(value_for(param, known), label=param["name"])
    check(client.get(url, params=query), op)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_embedding_new_pages_never_answers_5xx(
    client: TestClient, spec: dict[str, Any], known: dict[str, list[str]], data: st.DataObject
) -> None:
    op = spec["paths"]["/v1/pages/embed"]["post"]
    body = data.draw(embed_bodies(known), label="body")
    check(client.post("/v1/pages/embed", json=body), op)
