"""The API's request and response bodies (pydantic): what the OpenAPI spec at /openapi.json documents.

Page ids are 64-bit signed integers and travel as decimal strings (JavaScript numbers hold 53 bits).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

MAX_URL_CHARS = 8_192


class ErrorOut(BaseModel):
    error: str = Field(description="what went wrong, in one sentence")
    status: int
    detail: list[dict[str, Any]] | None = Field(default=None, description="one entry per invalid parameter (422 only)")


class EmbeddingOut(BaseModel):
    url: str = Field(description="the canonical URL the look-up used")
    page_id: str
    dim: int
    embedding: list[float] = Field(description="the stored embedding's dim-prefix, L2-normalised (float32 values)")
    model_version: str
    day: str = Field(description="ISO date the row was (re)embedded")
    store_version: int


class PinHit(BaseModel):
    rank: int
    pin_id: str
    score: float = Field(description="cosine of the page's embedding and the pin's target in the model's space")
    text: str


class PinsOut(BaseModel):
    url: str
    page_id: str
    k: int
    model_version: str
    store_version: int
    pins: list[PinHit]


class PageHit(BaseModel):
    rank: int
    url: str
    page_id: str
    score: float


class PagesOut(BaseModel):
    pin_id: str
    k: int
    model_version: str
    store_version: int
    pages: list[PageHit]


class EmbedIn(BaseModel):
    url: str = Field(min_length=1, max_length=MAX_URL_CHARS, description="the page's URL (canonicalised here)")
    title: str | None = None
    description: str | None = None
    body: str | None = Field(default=None, description="main text; without title, description and body the URL's words")
    pins: list[str] = Field(default_factory=list, description="pin_ids of the pins that link to the page")
    dim: int | None = Field(default=None, ge=1, description="a Matryoshka dim of the model; default its largest")
    store: bool = Field(default=False, description="also upsert the full-size embedding into the store (a new version)")
    day: str | None = Field(default=None, description="ISO date recorded with a stored row; default today (UTC)")


class NeighbourOut(BaseModel):
    rank: int
    url: str
    visits: float


class StoredOut(BaseModel):
    version: int = Field(description="the store version the write made")
    day: str
    inserted: int
    updated: int


class EmbedOut(BaseModel):
    url: str
    page_id: str
    dim: int
    embedding: list[float]
    model_version: str
    in_store: bool = Field(description="the store already held this page when the request came")
    text_source: Literal["content", "url"]
    pins: int = Field(description="distinct linking pins used")
    domain: str
    domain_known: bool
    neighbours: list[NeighbourOut]
    stored: StoredOut | None


class ImageOut(BaseModel):
    url: str | None = None
    width: int | None = None
    height: int | None = None
    alt: str | None = None


class ContentOut(BaseModel):
    title: str | None
    description: str | None
    body: str | None = Field(description="the first 2,000 characters of the main text")
    domain: str | None
    first_seen: int | None
    fetched_at: int | None
    images: list[ImageOut]


class LinkedPin(BaseModel):
    pin_id: str
    text: str


class DetailOut(BaseModel):
    url: str
    page_id: str
    in_store: bool
    in_run: bool
    store_version: int | None
    model_version: str | None
    day: str | None
    content: ContentOut | None
    neighbours: list[NeighbourOut]
    linked_pins: list[LinkedPin]
    linked_pins_total: int


class SampleOut(BaseModel):
    store_version: int
    urls: list[str]


class EvaluationOut(BaseModel):
    available: bool
    reason: str | None = None
    dims: list[int] = []
    ks: list[int] = []
    recall: dict[str, dict[str, float]] = Field(default_factory=dict, description="recall@k -> dim -> value")
    mrr: dict[str, float] = {}
    distributions: dict[str, dict[str, float]] = {}
    histogram: str | None = Field(default=None, description="path of the score histogram at the largest dim")
    plots: list[str] = []


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"]
    run_dir: str
    store: str
    store_version: int | None
    pages: int
    dim: int | None
    model_version: str | None
    dims: list[int]
    missing: dict[str, str] = Field(description="parts of the run that are not loaded, and why")
    reloads: int
    reload_errors: int
    last_error: str | None
