"""The content stage: text and image vectors of pages, pins' own vectors and their target vectors.

Reads ingest/pages.parquet and ingest/pins.parquet in chunks of ``content.chunk_rows`` rows and
writes (docs/artifacts.md, section ``content/``; float16, L2-normalised rows, zeros where absent)::

    page_text.npy           (n_pages, D_text)   crawled title + description + body, else the URL's words
    page_image.npy          (n_pages, D_img)    area-weighted mean of the page's images
    page_has_image.npy      (n_pages,) bool
    page_image_tokens.npy   (n_pages, M, D_img) the M largest images (only when some page has one)
    page_image_mask.npy     (n_pages, M) bool   (idem)
    pin_text.npy            (n_pins, D_text)
    pin_target.npy          (n_pins, D_target)  the embedding column, else the pin's own vectors;
                                                with content.pin_target_boards, plus their boards' mean
    board_target_mean.npy   (n_boards, D_target) those boards' means (only with content.pin_target_boards)
    board_text.npy          (n_boards, D_text)  the boards' text (board tokens of the train stage)

D_img is 0 when no page lists an image or ``image_encoder = "none"`` (the Reddit data: URLs only),
so nothing is decoded, encoded or stored for images. Every text and image goes through the content
cache: a second run over unchanged inputs encodes nothing (manifest counts ``*_encoded``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from linksage import log
from linksage.config.content import ContentConfig
from linksage.config.train import check_dims
from linksage.content import board_targets
from linksage.content.cache import VectorCache, default_cache_root, text_keys
from linksage.content.image import ImageSource, ImageVectorizer, PrecomputedImageVectors, aggregate_pages
from linksage.content.targets import embedding_dim, write_computed_targets, write_given_targets
from linksage.content.text import TextEncoder, create_text_encoder, page_text, resolve_device
from linksage.errors import InputError
from linksage.pipeline import StageContext, StageResult
from linksage.train.pairs import time_column

CANDIDATES_PER_TOKEN = 4  # a page's first 4 * M listed images are decoded; the M largest become tokens
IMAGE_PAGES_PER_BATCH = 1024


class CachedTextEncoder:
    """A text encoder behind the content cache: dedupes a batch, encodes only unseen texts."""

    def __init__(self, encoder: TextEncoder, cache: VectorCache | None) -> None:
        self.encoder = encoder
        self.cache = cache
        self.counts: Counter[str] = Counter()
        self.encode_s = 0.0

    @property
    def dim(self) -> int:
        if self.cache is not None and self.cache.dim is not None:
            return self.cache.dim  # known without loading the model
        return self.encoder.dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(n, D) float32 unit rows; zero rows for empty texts."""
        out = np.zeros((len(texts), self.dim), np.float32)
        rows = np.array([i for i, t in enumerate(texts) if t and not t.isspace()], dtype=np.int64)
        self.counts["texts_empty"] += len(texts) - len(rows)
        if len(rows) == 0:
            return out
        keys = text_keys(texts[i] for i in rows)
        uniq, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        found, vecs = np.zeros(len(uniq), bool), np.zeros((len(uniq), self.dim), np.float32)
        if self.cache is not None and self.cache.dim is not None:
            found, vecs = self.cache.get(uniq)
        todo = np.flatnonzero(~found)
        self.counts["text_cache_hits"] += int(found.sum())
        self.counts["texts_encoded"] += len(todo)
        if len(todo):
            t0 = time.perf_counter()
            # through float16 as the cache stores them: a first run and a cached run write the same bits
            fresh = self.encoder.encode([texts[rows[first[j]]] for j in todo]).astype(np.float16).astype(np.float32)
            self.encode_s += time.perf_counter() - t0
            vecs[todo] = fresh
            if self.cache is not None:
                self.cache.put(uniq[todo], fresh)
        out[rows] = vecs[inverse.reshape(-1)]
        return out


def run(ctx: StageContext) -> StageResult:
    cfg: ContentConfig = ctx.config.content
    ingest = ctx.input_dir("ingest")
    pages, pins = ingest / "pages.parquet", ingest / "pins.parquet"
    device = resolve_device(cfg.device)
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_root(ctx.run_dir.root)
    encoder = create_text_encoder(cfg, device)
    text = CachedTextEncoder(encoder, VectorCache.open(cache_root, f"text:{encoder.name}") if cfg.cache else None)
    n_pages = ds.dataset(pages, format="parquet").count_rows()
    n_pins = ds.dataset(pins, format="parquet").count_rows()
    given = embedding_dim(pins)
    counts: Counter[str] = Counter()
    timings: dict[str, float] = {}

    page_images = cfg.image_encoder != "none" and _any_listed_image(pages, cfg.chunk_rows)
    pin_images = (
        cfg.image_encoder != "none" and cfg.pin_target_image and given is None and bool(_present(pins, ["image_url"]))
    )
    t0 = time.perf_counter()
    images = image_vectorizer(cfg, device, cache_root) if page_images or pin_images else None
    timings["image_model_s"] = round(time.perf_counter() - t0, 3)
    # the widest target these inputs can give; train.dims beyond it would fail only at the train stage
    widest = given or text.dim + (images.dim if images is not None and pin_images else 0)
    check_dims(ctx.config.train.dims, target_dim=widest)
    # board-aware targets: a cut-off that would leak fails now, not after the encoding
    before = (
        board_targets.cutoff_seconds(cfg.pin_target_boards_before, ctx.config.train) if cfg.pin_target_boards else None
    )

    t0 = time.perf_counter()
    counts.update(write_page_text(pages, n_pages, text, cfg.chunk_rows, ctx.out))
    timings["page_text_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    if images is not None and page_images:
        counts.update(write_page_images(pages, n_pages, images, cfg, ctx.out))
    else:  # D_img = 0: nothing to decode, encode or store
        open_array(ctx.out / "page_image.npy", (n_pages, 0)).flush()
        open_array(ctx.out / "page_has_image.npy", (n_pages,), np.bool_).flush()
    timings["page_images_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    pin_image = open_array(ctx.work / "pin_image.npy", (n_pins, images.dim)) if images and pin_images else None
    counts.update(write_pins(pins, n_pins, text, images if pin_images else None, pin_image, cfg.chunk_rows, ctx.out))
    timings["pins_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    counts.update(_write_board_text(ingest / "boards.parquet", text, cfg.chunk_rows, ctx.out))
    timings["boards_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    pin_text = np.load(ctx.out / "pin_text.npy", mmap_mode="r")
    if given is not None:
        target = open_array(ctx.out / "pin_target.npy", (n_pins, given))
        counts.update(write_given_targets(pins, target, cfg.chunk_rows))
    else:
        with_image = pin_image if counts["pins_with_image"] > 0 else None
        dim = text.dim + (with_image.shape[1] if with_image is not None else 0)
        target = open_array(ctx.out / "pin_target.npy", (n_pins, dim))
        counts.update(write_computed_targets(pin_text, with_image, target, cfg.chunk_rows))
    if cfg.pin_target_boards > 0:
        counts["pin_targets_with_boards"] = _board_aware(cfg, ingest, target, before, ctx.out)
    target.flush()
    timings["targets_s"] = round(time.perf_counter() - t0, 3)
    timings["text_encode_s"] = round(text.encode_s, 3)

    counts.update(text.counts)
    encoded = text.counts["texts_encoded"]
    image_dim = images.dim if images is not None and page_images else 0
    metrics: dict[str, Any] = {
        "text_encoder": encoder.name,
        "text_dim": text.dim,
        "image_encoder": images.name if images is not None and image_dim else None,
        "image_dim": image_dim,
        "target_dim": int(target.shape[1]),
        "targets": "given" if given is not None else "computed",
        "pin_target_boards": cfg.pin_target_boards,
        "pin_target_boards_centred": cfg.pin_target_boards_centred,
        "device": device,
        "cache_dir": str(cache_root) if cfg.cache else None,
        "texts_encoded_per_s": round(encoded / text.encode_s, 1) if text.encode_s > 0 else None,
    }
    log.event(
        "content: done",
        pages=n_pages,
        pins=n_pins,
        texts_encoded=encoded,
        text_cache_hits=text.counts["text_cache_hits"],
        texts_per_s=metrics["texts_encoded_per_s"],
    )
    return StageResult(counts={k: int(v) for k, v in counts.items()}, metrics=metrics, timings=timings)


def _board_aware(cfg: ContentConfig, ingest: Path, target: np.ndarray, before: int | None, out: Path) -> int:
    """Turn ``target`` into board-aware targets in place (content/board_targets.py; ``before``: the checked
    cut-off, unix seconds) and write the boards' means into ``out``; returns how many pins' targets changed."""
    n_pins = len(target)
    pin_boards, n_boards = board_targets.read_pin_boards(ingest, n_pins)
    created = time_column(ingest / "pins.parquet", "pin_idx", "created_at", n_pins)
    is_eligible = board_targets.eligible(target, created, before, cfg.chunk_rows)
    means = board_targets.board_target_means(
        target, pin_boards, n_boards, is_eligible, cfg.chunk_rows, centre=cfg.pin_target_boards_centred
    )
    np.save(out / board_targets.MEANS_FILE, means)
    changed = board_targets.add_board_means(target, pin_boards, means, cfg.pin_target_boards, 0, n_pins, cfg.chunk_rows)
    log.event("content: board-aware targets", weight=cfg.pin_target_boards, pins_changed=changed, boards=n_boards)
    return changed


def write_page_text(pages: Path, n_pages: int, text: CachedTextEncoder, chunk_rows: int, out: Path) -> Counter[str]:
    """page_text.npy (n_pages rows) for the pages of the Parquet file ``pages``; returns counts."""
    counts: Counter[str] = Counter()
    page_text_out = open_array(out / "page_text.npy", (n_pages, text.dim))
    columns = _present(pages, ["page_idx", "url", "title", "description", "body"])
    bar = log.progress(total=n_pages, desc="content: page text", unit="page")
    for batch in _batches(pages, columns, chunk_rows):
        idx = _indices(batch, "page_idx", n_pages, pages)
        texts, crawled = _page_texts(batch)
        counts["pages_with_content"] += int(crawled.sum())
        counts["pages_url_only"] += int((~crawled).sum())
        vecs = text.encode(texts)
        counts["pages_without_text"] += int((~vecs.any(axis=1)).sum())
        page_text_out[idx] = vecs.astype(np.float16)
        bar.update(len(idx))
    bar.close()
    page_text_out.flush()
    return counts


def _write_board_text(boards: Path, text: CachedTextEncoder, chunk_rows: int, out: Path) -> Counter[str]:
    """board_text.npy: one row per board_idx (zeros for a board without text; (0, D) without boards)."""
    counts: Counter[str] = Counter()
    n_boards = ds.dataset(boards, format="parquet").count_rows() if boards.exists() else 0
    board_out = open_array(out / "board_text.npy", (n_boards, text.dim))
    if n_boards:
        for batch in _batches(boards, ["board_idx", "text"], chunk_rows):
            idx = _indices(batch, "board_idx", n_boards, boards)
            vecs = text.encode(column_strings(batch.column("text")))
            counts["boards_without_text"] += int((~vecs.any(axis=1)).sum())
            board_out[idx] = vecs.astype(np.float16)
    counts["boards"] = n_boards
    board_out.flush()
    return counts


def write_pins(
    pins: Path,
    n_pins: int,
    text: CachedTextEncoder,
    images: ImageVectorizer | None,
    pin_image: np.memmap[Any, np.dtype[Any]] | None,
    chunk_rows: int,
    out: Path,
) -> Counter[str]:
    """pin_text.npy, and the pins' image vectors into ``pin_image`` when given."""
    counts: Counter[str] = Counter()
    pin_text_out = open_array(out / "pin_text.npy", (n_pins, text.dim))
    bar = log.progress(total=n_pins, desc="content: pins", unit="pin")
    for batch in _batches(pins, _present(pins, ["pin_idx", "text", "image_url"]), chunk_rows):
        idx = _indices(batch, "pin_idx", n_pins, pins)
        pin_text_out[idx] = text.encode(column_strings(batch.column("text"))).astype(np.float16)
        if images is not None and pin_image is not None:
            urls = column_strings(batch.column("image_url"))
            listed = np.array([bool(u) for u in urls], bool)
            ok, vecs, _area, got = images.vectors([u for u in urls if u])
            counts.update({f"pin_{k}": v for k, v in got.items()})
            pin_image[idx[listed][ok]] = vecs[ok].astype(np.float16)
            counts["pins_with_image"] += int(ok.sum())
        bar.update(len(idx))
    bar.close()
    pin_text_out.flush()
    return counts


# --- pages ---------------------------------------------------------------------------------------------------


def _page_texts(batch: pa.RecordBatch) -> tuple[list[str], np.ndarray]:
    """Each page's text (crawled content, else its URL's words) and whether it had crawled content."""
    from linksage.content.urltext import text_from_url  # part 1 of issue 4; imported when first needed

    urls = column_strings(batch.column("url"))
    parts = [column_strings(batch.column(c)) if c in batch.schema.names else [""] * len(urls) for c in _CONTENT]
    texts: list[str] = []
    crawled = np.zeros(len(urls), bool)
    for i, url in enumerate(urls):
        title, description, body = parts[0][i], parts[1][i], parts[2][i]
        content = page_text(title, description, body)
        if content:
            crawled[i] = True
            texts.append(content)
        else:
            texts.append(text_from_url(url))
    return texts, crawled


_CONTENT = ("title", "description", "body")


def image_vectorizer(cfg: ContentConfig, device: str, cache_root: Path) -> ImageVectorizer:
    """The configured image encoder behind the image cache (under ``cache_root``)."""
    precomputed = PrecomputedImageVectors(cfg.image_vectors) if cfg.image_encoder == "precomputed" else None
    source = ImageSource(cfg.image_table, cfg.image_dir, cfg.max_image_bytes)
    vectorizer = ImageVectorizer(
        cfg.image_encoder,
        device=device,
        batch_size=cfg.image_batch_size,
        source=source,
        precomputed=precomputed,
        max_bytes=cfg.max_image_bytes,
        max_pixels=cfg.max_image_pixels,
    )
    if cfg.cache and precomputed is None:
        vectorizer.cache = VectorCache.open(cache_root, f"image:{vectorizer.name}", vectorizer.dim)
    return vectorizer


def _any_listed_image(pages: Path, chunk_rows: int) -> bool:
    if "images" not in ds.dataset(pages, format="parquet").schema.names:
        return False
    for batch in _batches(pages, ["images"], chunk_rows):
        lengths = pc.list_value_length(batch.column("images"))
        if (pc.max(lengths).as_py() or 0) > 0:
            return True
    return False


def write_page_images(
    pages: Path, n_pages: int, images: ImageVectorizer, cfg: ContentConfig, out: Path
) -> Counter[str]:
    """Write page_image, page_has_image and (M > 0) the per-image tokens and mask; returns counts."""
    m = cfg.max_images_per_page
    dim = images.dim
    mean_out = open_array(out / "page_image.npy", (n_pages, dim))
    has_out = open_array(out / "page_has_image.npy", (n_pages,), np.bool_)
    tokens_out = open_array(out / "page_image_tokens.npy", (n_pages, m, dim)) if m else None
    mask_out = open_array(out / "page_image_mask.npy", (n_pages, m), np.bool_) if m else None
    counts: Counter[str] = Counter()
    limit = max(1, CANDIDATES_PER_TOKEN * m)
    bar = log.progress(total=n_pages, desc="content: page images", unit="page")
    # small batches: a page may list many images, each decoded to 224 x 224 x 3 and encoded to 1280 floats
    for batch in _batches(pages, ["page_idx", "images"], min(cfg.chunk_rows, IMAGE_PAGES_PER_BATCH)):
        idx = _indices(batch, "page_idx", n_pages, pages)
        col = batch.column("images")
        flat = pc.list_flatten(col)
        parent = np.asarray(pc.list_parent_indices(col).to_numpy(zero_copy_only=False), np.int64)
        position = _position_in_list(parent)
        urls = column_strings(flat.field("url")) if len(flat) else []
        keep = np.array([bool(u) for u in urls], bool) & (position < limit)
        counts["images_listed"] += len(urls)
        counts["images_beyond_limit"] += int((position >= limit).sum())
        sel = np.flatnonzero(keep)
        width = _ints(flat.field("width"))[sel] if len(flat) else np.zeros(0, np.int64)
        height = _ints(flat.field("height"))[sel] if len(flat) else np.zeros(0, np.int64)
        ok, vecs, area, got = images.vectors([urls[i] for i in sel], width * height)
        counts.update(got)
        with_image, local = np.unique(parent[sel][ok], return_inverse=True)  # only pages with an image
        mean, _has, tokens, mask = aggregate_pages(local.reshape(-1), area[ok], vecs[ok], len(with_image), m)
        rows = idx[with_image]  # untouched rows stay zero (and sparse on disk)
        mean_out[rows] = mean.astype(np.float16)
        has_out[rows] = True
        counts["pages_with_image"] += len(rows)
        if tokens_out is not None and mask_out is not None:
            tokens_out[rows] = tokens.astype(np.float16)
            mask_out[rows] = mask
        bar.update(len(idx))
    bar.close()
    for arr in (mean_out, has_out, tokens_out, mask_out):
        if arr is not None:
            arr.flush()
    return counts


# --- helpers -------------------------------------------------------------------------------------------------


def _position_in_list(parent: np.ndarray) -> np.ndarray:
    """Position of each flattened list item within its own list (``parent`` is non-decreasing)."""
    if len(parent) == 0:
        return np.zeros(0, np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(parent)) + 1]
    return np.arange(len(parent)) - np.repeat(starts, np.diff(np.r_[starts, len(parent)]))


def open_array(path: Path, shape: tuple[int, ...], dtype: Any = np.float16) -> np.memmap[Any, np.dtype[Any]]:
    """A zero-filled .npy memory map (sparse on disk until written)."""
    arr: np.memmap[Any, np.dtype[Any]] = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    return arr


def _batches(path: Path, columns: list[str], rows: int) -> Iterator[pa.RecordBatch]:
    yield from ds.dataset(path, format="parquet").to_batches(columns=columns, batch_size=rows)


def _present(path: Path, wanted: list[str]) -> list[str]:
    names = set(ds.dataset(path, format="parquet").schema.names)
    return [c for c in wanted if c in names]


def _indices(batch: pa.RecordBatch, column: str, n: int, path: Path) -> np.ndarray:
    """The batch's row indices, checked to lie in 0..n-1 (ingest assigns them densely)."""
    idx = np.asarray(batch.column(column).to_numpy(zero_copy_only=False), np.int64)
    bad = np.flatnonzero((idx < 0) | (idx >= n))
    if len(bad):
        raise InputError(
            f"index out of range 0..{n - 1} (the file has {n} rows)", file=path, column=column, value=int(idx[bad[0]])
        )
    return idx


def column_strings(col: Any) -> list[str]:
    """A string column as Python strings, nulls as ``""``."""
    return [s if isinstance(s, str) else "" for s in col.to_pylist()]


def _ints(col: Any) -> np.ndarray:
    return np.asarray(pc.fill_null(col, 0).to_numpy(zero_copy_only=False), np.int64)
