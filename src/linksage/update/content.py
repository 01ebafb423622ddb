"""An incremental day's content: the run's vector arrays, grown by the day's rows, and only those encoded.

Every ``.npy`` array of the content folder is indexed by page, pin or board (its name says which); the
new folder holds the old rows bit for bit, then rows for the day's new pages, pins and boards. The new
rows, and the rows of pages the day re-crawled, are computed by the content stage's own functions over
a small Parquet file of just those rows, through the content cache (an unchanged text is not encoded
again). The run's dimensions are kept: a run without image vectors stays without them.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from linksage.config.content import ContentConfig
from linksage.content import board_targets
from linksage.content.cache import VectorCache, default_cache_root
from linksage.content.stage import (
    CachedTextEncoder,
    column_strings,
    image_vectorizer,
    open_array,
    write_page_images,
    write_page_text,
    write_pins,
)
from linksage.content.targets import embedding_dim, write_computed_targets, write_given_targets
from linksage.content.text import create_text_encoder, resolve_device
from linksage.errors import InputError

_IMAGE_ARRAYS = ("page_image.npy", "page_has_image.npy", "page_image_tokens.npy", "page_image_mask.npy")


def kind_of(name: str) -> str:
    """Which table an array's rows follow: ``pages``, ``pins`` or ``boards``, by its file name."""
    for prefix, kind in (("page_", "pages"), ("pin_", "pins"), ("board_", "boards")):
        if name.startswith(prefix):
            return kind
    raise InputError("content array of unknown row kind (expected page_*, pin_* or board_*)", file=name)


def grow_array(src: Path, dst: Path, rows: int, old_rows: int) -> np.memmap[Any, np.dtype[Any]]:
    """``dst``: ``src``'s rows, then zero rows up to ``rows`` (a writable memory map).

    The old rows are copied by the kernel (``copy_file_range``: no page faults in this process, and a
    reflink where the file system has them) behind the new file's header; the new rows stay sparse.
    """
    old = np.load(src, mmap_mode="r")
    if old.shape[0] != old_rows:
        raise InputError(f"has {old.shape[0]} rows, the run's tables have {old_rows}", file=src)
    shape, dtype, src_offset = (rows, *old.shape[1:]), old.dtype, int(old.offset)
    nbytes = int(old.nbytes)
    del old
    out = open_array(dst, shape, dtype)
    dst_offset = int(out.offset)
    del out
    with open(src, "rb") as fin, open(dst, "r+b") as fout:
        done = 0
        while done < nbytes:
            n = os.copy_file_range(fin.fileno(), fout.fileno(), nbytes - done, src_offset + done, dst_offset + done)
            if n == 0:
                raise InputError(f"ended after {done} of {nbytes} data bytes", file=src)
            done += n
    grown: np.memmap[Any, np.dtype[Any]] = np.load(dst, mmap_mode="r+")
    return grown


def update_content(
    cfg: ContentConfig, run_root: Path, old: Path, ingest: Path, out: Path, scratch: Path, sizes: dict[str, Any]
) -> tuple[dict[str, int], dict[str, float]]:
    """Write the grown content arrays into ``out``; ``sizes`` holds the ``old`` and ``new`` row counts."""
    with ThreadPoolExecutor(1, thread_name_prefix="content-copy") as pool:
        arrays = _GrownArrays(old, out, sizes, pool)
        try:
            counts, timings = _fill(cfg, run_root, old, ingest, scratch, sizes, arrays)
        finally:
            errors = arrays.close()
        if errors:  # a copy that failed (an error of _fill itself has been raised above instead)
            raise errors[0]
    timings.update(copy_s=round(arrays.copy_s, 3), copy_wait_s=round(arrays.wait_s, 3))
    return counts, timings


class _GrownArrays:
    """The content arrays grown into ``out`` (``grow_array``), copied one by one in a background thread.

    The kernel does the copying (no GIL held), so the day's encoding runs meanwhile; ``arrays[name]`` waits
    for that array's copy. Copied in the order they are needed: page arrays, then pins', then boards'.
    """

    def __init__(self, old: Path, out: Path, sizes: dict[str, Any], pool: ThreadPoolExecutor) -> None:
        kinds = ("pages", "pins", "boards")
        first = ("page_text.npy", "pin_text.npy")
        paths = sorted(_arrays(old), key=lambda p: (kinds.index(kind_of(p.name)), p.name not in first, p.name))
        self.copy_s = self.wait_s = 0.0
        self._pending = {p.name: pool.submit(self._grow, p, out, sizes) for p in paths}

    def _grow(self, src: Path, out: Path, sizes: dict[str, Any]) -> np.memmap[Any, np.dtype[Any]]:
        t0 = time.perf_counter()
        kind = kind_of(src.name)
        grown = grow_array(src, out / src.name, sizes["new"][kind], sizes["old"][kind])
        self.copy_s += time.perf_counter() - t0
        return grown

    def __contains__(self, name: str) -> bool:
        return name in self._pending

    def __getitem__(self, name: str) -> np.memmap[Any, np.dtype[Any]]:
        t0 = time.perf_counter()
        array = self._pending[name].result()
        self.wait_s += time.perf_counter() - t0
        return array

    def close(self) -> list[BaseException]:
        """Wait for every copy and drop the memory maps; returns the copies' errors."""
        pending, self._pending = self._pending, {}
        return [e for f in pending.values() if (e := f.exception()) is not None]


def _fill(
    cfg: ContentConfig,
    run_root: Path,
    old: Path,
    ingest: Path,
    scratch: Path,
    sizes: dict[str, Any],
    arrays: _GrownArrays,
) -> tuple[dict[str, int], dict[str, float]]:
    """Encode the day's rows into the grown ``arrays``; returns counts and timings."""
    n_old, n_new = sizes["old"], sizes["new"]
    timings: dict[str, float] = {}
    counts: Counter[str] = Counter()
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_root(run_root)
    encoder = create_text_encoder(cfg, device)
    # opening the cache merges its shards once there are many (a full run leaves one per chunk): O(cache)
    text = CachedTextEncoder(encoder, VectorCache.open(cache_root, f"text:{encoder.name}") if cfg.cache else None)
    timings["cache_open_s"] = time.perf_counter() - t0
    old_dim = np.load(old / "page_text.npy", mmap_mode="r").shape[1]
    if text.dim != old_dim:
        raise InputError(
            f"holds {old_dim}-dim text vectors, the configured text encoder gives {text.dim}",
            file=old / "page_text.npy",
        )

    t0 = time.perf_counter()
    updated = np.load(ingest / "updated_pages.npy")
    pages = np.union1d(np.arange(n_old["pages"], n_new["pages"]), updated)
    todo_pages = _subset(ingest / "pages.parquet", "page_idx", pages, scratch / "pages.parquet", n_old["pages"])
    counts.update(write_page_text(todo_pages, n_new["pages"], text, cfg.chunk_rows, scratch))
    _copy_rows(scratch / "page_text.npy", arrays["page_text.npy"], pages)
    image_dim = arrays["page_image.npy"].shape[1] if "page_image.npy" in arrays else 0
    if image_dim and cfg.image_encoder != "none":
        page_images = image_vectorizer(cfg, device, cache_root)
        counts.update(write_page_images(todo_pages, n_new["pages"], page_images, cfg, scratch))
        for name in _IMAGE_ARRAYS:
            if name in arrays and (scratch / name).exists():
                _copy_rows(scratch / name, arrays[name], pages)
    timings["pages_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    pins = np.arange(n_old["pins"], n_new["pins"])
    todo_pins = _subset(ingest / "pins.parquet", "pin_idx", pins, scratch / "pins.parquet", n_old["pins"])
    given = embedding_dim(ingest / "pins.parquet")
    target_dim = np.load(old / "pin_target.npy", mmap_mode="r").shape[1]
    pin_images = given is None and target_dim > text.dim  # computed [text, image] targets
    images = image_vectorizer(cfg, device, cache_root) if pin_images else None
    pin_image = open_array(scratch / "pin_image.npy", (n_new["pins"], images.dim)) if images is not None else None
    counts.update(write_pins(todo_pins, n_new["pins"], text, images, pin_image, cfg.chunk_rows, scratch))
    _copy_rows(scratch / "pin_text.npy", arrays["pin_text.npy"], pins)
    target = arrays["pin_target.npy"]
    if given is not None:
        counts.update(write_given_targets(todo_pins, target, cfg.chunk_rows))
    else:
        lo = n_old["pins"]
        image = pin_image[lo:] if pin_image is not None else None
        counts.update(write_computed_targets(arrays["pin_text.npy"][lo:], image, target[lo:], cfg.chunk_rows))
    # the new pins against the run's boards' means (a board new today has none); the update has checked
    # that the run's content section is this config's, so the means are there when the weight is set
    if cfg.pin_target_boards > 0:
        pin_boards, _ = board_targets.read_pin_boards(ingest, n_new["pins"])
        means = np.asarray(arrays[board_targets.MEANS_FILE])
        lo = n_old["pins"]
        changed = board_targets.add_board_means(
            target, pin_boards, means, cfg.pin_target_boards, lo, n_new["pins"], cfg.chunk_rows
        )
        counts["pin_targets_with_boards"] = changed
    timings["pins_s"] = time.perf_counter() - t0

    if "board_text.npy" in arrays:
        t0 = time.perf_counter()
        boards = np.union1d(np.arange(n_old["boards"], n_new["boards"]), np.load(ingest / "updated_boards.npy"))
        table = pq.read_table(ingest / "boards.parquet", columns=["text"]).take(pa.array(boards))
        arrays["board_text.npy"][boards] = text.encode(column_strings(table["text"])).astype(np.float16)
        counts["boards_encoded"] = len(boards)
        timings["boards_s"] = time.perf_counter() - t0
    # no msync: the pages are the kernel's (a killed process loses nothing), and the journal's rename
    # comes after; forcing ~1 GB to disk here would cost more than the whole day's encoding
    counts.update(text.counts)
    counts.update(pages_encoded=len(pages), pins_encoded=len(pins), pages_recrawled=len(updated))
    timings["text_encode_s"] = text.encode_s
    return {k: int(v) for k, v in counts.items()}, {k: round(v, 3) for k, v in timings.items()}


def _arrays(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.npy") if not p.name.startswith("."))


def _subset(path: Path, column: str, rows: np.ndarray, dst: Path, tail_from: int) -> Path:
    """A Parquet file of ``path``'s rows whose ``column`` is in ``rows`` (sorted): the day's rows only.

    Rows from ``tail_from`` on (the day's new ones) are read by a range filter, which lets Parquet skip
    the old rows' row groups by their statistics (the old pins' embeddings are never read); the few
    others (re-crawled pages) by a set filter.
    """
    import pyarrow.dataset as ds

    data = ds.dataset(path, format="parquet")
    tail = data.to_table(filter=pc.field(column) >= tail_from)
    head = rows[rows < tail_from]
    parts = [data.to_table(filter=pc.field(column).isin(pa.array(head.astype(np.int32))))] if len(head) else []
    sub = pa.concat_tables([*parts, tail]).sort_by(column)
    if sub.num_rows != len(rows):
        raise InputError(f"holds {sub.num_rows} of the {len(rows)} rows the day needs", file=path, column=column)
    pq.write_table(sub, dst)
    return dst


def _copy_rows(src: Path, dst: np.ndarray, rows: np.ndarray) -> None:
    """Rows ``rows`` of the (sparse, full-size) array ``src`` into ``dst``."""
    if len(rows):
        dst[rows] = np.load(src, mmap_mode="r")[rows]
