"""Request parameters shared by the FastAPI routes and the fast embedding look-up (``linksage.serve.lookup``).

Each raises a ``ServeError`` with the message the API answers, so both dispatches give the same errors.
"""

from __future__ import annotations

from urllib.parse import unquote

from linksage.ingest.urls import canonicalise
from linksage.serve.errors import BadInput, NotFound
from linksage.serve.schemas import MAX_URL_CHARS
from linksage.serve.state import ServeState
from linksage.serve.store_view import StoreSnapshot


def query_params(raw: bytes) -> dict[str, str]:
    """The query string as a dict: ``dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))``.

    The same fields, decoding and "last value of a repeated name wins" (as in Starlette), in a fraction of
    parse_qsl's time: a field is only unquoted when it has something to unquote.
    """
    out: dict[str, str] = {}
    for field in raw.decode("latin-1").split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")  # a field without "=" is a name with a blank value
        if "+" in name or "%" in name:
            name = unquote(name.replace("+", " "))
        if "+" in value or "%" in value:
            value = unquote(value.replace("+", " "))
        out[name] = value
    return out


def url_param(query: dict[str, str]) -> str:
    url = query.get("url")
    if url is None:
        raise BadInput("url: Field required")
    if not 1 <= len(url) <= MAX_URL_CHARS:
        raise BadInput(f"url: must have 1 to {MAX_URL_CHARS} characters, got {len(url)}")
    return url


def int_param(query: dict[str, str], name: str, default: int | None, low: int, high: int | None) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadInput(f"{name}: expected an integer, got {raw[:40]!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise BadInput(f"{name}: must be {bound}, got {value}")
    return value


def canonical(url: str) -> str:
    """The canonical form of a requested URL, or 422 naming why it is not a usable page URL."""
    result, reason = canonicalise(url)
    if result is None:
        raise BadInput(f"url {url[:200]!r} is not a usable page URL: {reason}")
    return result


def stored_row(store: StoreSnapshot, canonical_url: str, url: str) -> int:
    row = store.find(canonical_url)
    if row is None:
        raise NotFound(f"page {canonical_url} (from {url[:200]!r}) is not in the store (version {store.version})")
    return row


def model_dims(state: ServeState) -> tuple[int, ...]:
    """The Matryoshka dims a request may ask for: the run's model's, when it matches the store's size."""
    store, run = state.store, state.run
    model = run.model if run is not None else None
    if model is not None and (store is None or model.output_dim == store.dim):
        return tuple(model.dims)
    return (store.dim,) if store is not None else ()


def check_dim(state: ServeState, dim: int | None, full: int) -> int:
    if dim is None:
        return full
    dims = model_dims(state)
    if dim not in dims:
        raise BadInput(f"dim {dim} is not one of the model's Matryoshka dims {list(dims)}")
    return dim
