"""Batch inference of page embeddings into the store: only pages whose model or inputs changed.

For every page we hash what the model reads (``linksage.store.fingerprint``): its own content
features, and its degree plus its neighbours' content fingerprints and visit features. A page is
(re)embedded when it is new to the store, or its model version or either fingerprint differs from
its stored row; everything else keeps its stored row bit for bit. The selected pages are embedded
in chunks on the device and streamed to the store as one upsert (one new version), so host memory
stays at a few chunks whatever the number of pages. A background thread embeds the next chunk while
the store writes the previous one.
"""

from __future__ import annotations

import datetime
import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from linksage import log
from linksage.config import ConfigError
from linksage.config.store import EmbedConfig
from linksage.errors import InputError
from linksage.store.fingerprint import hash_rows, neighbour_fingerprints, page_ids
from linksage.store.lance_store import EmbeddingStore, UpsertResult, make_batch
from linksage.train.features import PageFeatures
from linksage.train.infer import MODEL_FILE, PageEmbedder, load_model

T = TypeVar("T")


@dataclass
class PageKeys:
    """Identity and fingerprints of every page of a run directory, row i = page_idx i."""

    url: pa.Array  # (n,) canonical URLs
    page_id: np.ndarray  # (n,) int64
    content_fp: np.ndarray  # (n,) uint64
    neighbour_fp: np.ndarray  # (n,) uint64


@dataclass
class EmbedReport:
    pages: int
    embedded: int
    unchanged: int
    result: UpsertResult
    model_version: str
    day: str
    timings: dict[str, float] = field(default_factory=dict)


def model_version(model_dir: Path) -> str:
    """First 16 hex digits of the SHA-256 of model.pt: the exact weights, not the config that made them."""
    path = model_dir / MODEL_FILE if model_dir.is_dir() else model_dir
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f'embed.device: {name!r} requested, but torch sees no CUDA device (set embed.device = "cpu")')
    return torch.device(name)


def read_pages(run_dir: Path) -> tuple[pa.Array, np.ndarray | None]:
    """Canonical URLs by page_idx and first_seen (unix s, or None) from ingest/pages.parquet."""
    path = run_dir / "ingest" / "pages.parquet"
    names = pq.read_schema(path).names
    table = pq.read_table(path, columns=[c for c in ("page_idx", "url", "first_seen") if c in names])
    idx = table["page_idx"].to_numpy()
    if not np.array_equal(idx, np.arange(len(idx))):
        bad = int(np.flatnonzero(idx != np.arange(len(idx)))[0])
        raise InputError("page_idx must be 0..n-1 in row order", file=path, row=bad, value=int(idx[bad]))
    url = table["url"].combine_chunks()
    if url.null_count:
        raise InputError("url is null", file=path, row=int(np.flatnonzero(url.is_null().to_numpy(False))[0]))
    first_seen = table["first_seen"].to_numpy(zero_copy_only=False) if "first_seen" in names else None
    return url, first_seen


def page_keys(url: pa.Array, features: PageFeatures, source: Path | None = None) -> PageKeys:
    """Page ids and both fingerprints of every page (see the module docstring)."""
    if len(url) != features.n_pages:
        raise InputError(f"has {len(url)} pages, the page feature tables have {features.n_pages}", file=source)
    ids = page_ids(url)
    uniq, counts = np.unique(ids, return_counts=True)
    if len(uniq) != len(ids):
        dup = int(uniq[counts > 1][0])
        rows = np.flatnonzero(ids == dup)
        raise InputError(
            f"pages {rows.tolist()} have the same page id {dup} (the same URL, or a 64-bit hash collision)",
            file=source,
            row=int(rows[1]),
            value=url[int(rows[1])].as_py(),
        )
    content = np.stack(
        [
            hash_rows(features.text.numpy()),
            hash_rows(features.image.numpy()),
            hash_rows(features.image_mask.numpy()),
            hash_rows(features.nbr_image.numpy()),
            hash_rows(features.has_image.numpy()),
        ],
        axis=1,
    )  # (n, 5): hashed again as one row below
    content_fp = hash_rows(content)
    neighbour_fp = neighbour_fingerprints(
        content_fp, features.neighbours.numpy(), features.log_visits.numpy(), features.degree_bucket.numpy()
    )
    return PageKeys(url=url, page_id=ids, content_fp=content_fp, neighbour_fp=neighbour_fp)


def pages_to_embed(store: EmbeddingStore, keys: PageKeys, version: str) -> np.ndarray:
    """page_idx (sorted) of the pages that are new to ``store`` or whose model version or fingerprints differ."""
    stored = store.keys()
    if stored.num_rows == 0:
        return np.arange(len(keys.page_id))
    sid = stored["page_id"].to_numpy()
    order = np.argsort(sid)
    sid = sid[order]
    pos = np.minimum(np.searchsorted(sid, keys.page_id), len(sid) - 1)
    found = sid[pos] == keys.page_id
    row = order[pos]
    same = (
        found
        & (stored["model_version"].to_numpy(zero_copy_only=False)[row] == version)
        & (stored["content_fingerprint"].to_numpy()[row] == keys.content_fp)
        & (stored["neighbour_fingerprint"].to_numpy()[row] == keys.neighbour_fp)
    )
    return np.flatnonzero(~same)


def default_day(first_seen: np.ndarray | None) -> str:
    """The UTC date of the newest first_seen, else today's UTC date."""
    if first_seen is not None and len(first_seen):
        valid = first_seen[first_seen > 0]
        if len(valid):
            return datetime.datetime.fromtimestamp(int(valid.max()), datetime.UTC).date().isoformat()
    return datetime.datetime.now(datetime.UTC).date().isoformat()


def embed_into_store(
    run_dir: Path,
    store_path: Path,
    cfg: EmbedConfig,
    *,
    model_dir: Path | None = None,
    day: str | None = None,
) -> EmbedReport:
    """Embed the run directory's changed pages with its trained model and upsert them as one store version."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    model_dir = model_dir or run_dir / "train"
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    model = load_model(model_dir, device)
    version = model_version(model_dir)
    features = model.features(run_dir)  # CPU tables (memory-mapped sources)
    url, first_seen = read_pages(run_dir)
    timings["load_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    keys = page_keys(url, features, run_dir / "ingest" / "pages.parquet")
    store = EmbeddingStore.open_or_create(store_path, model.output_dim)
    todo = np.arange(len(keys.page_id)) if cfg.reembed_all else pages_to_embed(store, keys, version)
    timings["fingerprint_s"] = time.perf_counter() - t0
    day = day or cfg.day or default_day(first_seen)
    log.event("[embed] pages to embed", pages=len(keys.page_id), selected=len(todo), store_version=store.version)

    t0 = time.perf_counter()
    embedder = PageEmbedder(model, features, device, bf16)

    infer_s = [0.0]

    def chunk_batch(chunk: np.ndarray) -> pa.RecordBatch:
        t = time.perf_counter()
        emb = embedder.embed(chunk, batch_size=cfg.batch_size)  # (c, dim) float32 unit rows
        infer_s[0] += time.perf_counter() - t
        return make_batch(
            keys.page_id[chunk],
            keys.url.take(pa.array(chunk)),
            emb,
            version,
            keys.content_fp[chunk],
            keys.neighbour_fp[chunk],
            day,
        )

    chunks = [todo[lo : lo + cfg.chunk_rows] for lo in range(0, len(todo), cfg.chunk_rows)]
    bar = log.progress(total=len(todo), desc="embed", unit="page")

    def produced() -> Iterator[pa.RecordBatch]:
        for batch in prefetch(chunk_batch, chunks):
            bar.update(batch.num_rows)
            yield batch

    try:
        result = store.upsert(produced(), day)
    finally:
        bar.close()
    if not result.committed:
        store.tag_day(day)  # nothing changed: this day's state is the newest version
    timings["embed_write_s"] = time.perf_counter() - t0  # inference and store writes, overlapped
    timings["infer_s"] = infer_s[0]  # of which the model (in the background thread)
    return EmbedReport(
        pages=len(keys.page_id),
        embedded=len(todo),
        unchanged=len(keys.page_id) - len(todo),
        result=result,
        model_version=version,
        day=day,
        timings=timings,
    )


def prefetch(fn: Callable[[np.ndarray], T], items: list[np.ndarray], depth: int = 2) -> Iterator[T]:
    """``fn(item)`` for each item, computed by one background thread up to ``depth`` items ahead."""
    results: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():  # the consumer may have stopped: never block forever
            try:
                results.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((True, fn(item))):
                    return
            put((False, None))
        except BaseException as exc:  # handed to the consumer, re-raised there
            put((False, exc))

    thread = threading.Thread(target=work, name="embed-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, value = results.get()
            if not ok:
                if value is not None:
                    raise value  # type: ignore[misc]
                return
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=5)
