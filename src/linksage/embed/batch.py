"""Batch inference of page embeddings into the store: only pages whose model or inputs changed.

For every page we hash what the model reads (``linksage.store.fingerprint``): its own content
features, and its degree plus its neighbours' content fingerprints and visit features. A page is
(re)embedded when it is new to the store, or its model version or either fingerprint differs from
its stored row; everything else keeps its stored row bit for bit. The selected pages are embedded
in chunks on the device and streamed to the store as one upsert (one new version), so host memory
stays at a few chunks whatever the number of pages. A background thread writes each chunk to the store
while this one embeds the next.

When every checked page is embedded whatever its fingerprints (an empty store: a first fill; or
``reembed_all``), the fingerprints are only columns of the rows written: they are computed in a
background thread beside the upload and inference, and joined before the first record batch is built.
Otherwise the diff needs them first, and they are computed in front of inference. Both orders write the
same rows.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from linksage import log
from linksage.config import ConfigError
from linksage.config.store import EmbedConfig
from linksage.errors import InputError
from linksage.store.fingerprint import ABSENT, hash_rows, neighbour_fingerprints, page_ids
from linksage.store.lance_store import EmbeddingStore, UpsertResult, make_batch
from linksage.train.features import PageFeatures
from linksage.train.infer import MODEL_FILE, PageEmbedder, load_model

T = TypeVar("T")
R = TypeVar("R")

# Compute the fingerprints beside inference when every checked page is embedded anyway (tests turn it off
# to compare with the keys-first order, which must write the same store).
_KEYS_BESIDE_INFERENCE = True
# Chunks embedded ahead of the fingerprints, held until they are there: meanwhile write_behind's queue (2)
# and its writer (1) are idle, so host memory peaks as in the steady state.
_LOOKAHEAD = 3


@dataclass
class PageKeys:
    """Identity and fingerprints of a run directory's pages: every page (row i = page_idx i) or ``rows``."""

    url: pa.Array  # (n,) canonical URLs
    page_id: np.ndarray  # (n,) int64
    content_fp: np.ndarray  # (n,) uint64
    neighbour_fp: np.ndarray  # (n,) uint64
    rows: np.ndarray | None = None  # (n,) int64 page_idx of each row when only some pages were keyed


@dataclass
class EmbedReport:
    pages: int
    embedded: int
    unchanged: int
    result: UpsertResult
    model_version: str
    day: str
    timings: dict[str, float] = field(default_factory=dict)
    compile_mode: str = "off"  # how the encoder ran (see EmbedConfig.compile)
    batch_size: int = 0  # pages per forward pass
    checked: int | None = None  # pages fingerprinted and compared with the store (None: all)


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


def page_keys(
    url: pa.Array, features: PageFeatures, source: Path | None = None, rows: np.ndarray | None = None
) -> PageKeys:
    """Page ids and both fingerprints of every page (see the module docstring), or of the pages ``rows``.

    Every hash is of one page's own rows (and its neighbours' content), so the keys of ``rows`` equal those
    rows of the keys of every page; page ids are still checked unique over all pages.
    """
    check_page_count(url, features, source)
    ids = page_ids(url)
    uniq, counts = np.unique(ids, return_counts=True)
    if len(uniq) != len(ids):
        dup = int(uniq[counts > 1][0])
        same = np.flatnonzero(ids == dup)
        raise InputError(
            f"pages {same.tolist()} have the same page id {dup} (the same URL, or a 64-bit hash collision)",
            file=source,
            row=int(same[1]),
            value=url[int(same[1])].as_py(),
        )
    neighbours, log_visits, degree = (
        features.neighbours.numpy(),
        features.log_visits.numpy(),
        features.degree_bucket.numpy(),
    )
    boards = features.boards.numpy() if features.boards is not None else None
    if rows is None:
        content_fp = content_fingerprints(features)
    else:
        rows = np.asarray(rows, dtype=np.int64)
        neighbours, log_visits, degree = neighbours[rows], log_visits[rows], degree[rows]
        boards = boards[rows] if boards is not None else None
        # the content fingerprints that the rows' keys read: their own and their neighbours'
        need = np.union1d(rows, neighbours[neighbours >= 0])
        content_fp = np.zeros(features.n_pages, np.uint64)
        content_fp[need] = content_fingerprints(features, need)
    neighbour_fp = neighbour_fingerprints(content_fp, neighbours, log_visits, degree)
    if boards is not None and features.board_text is not None:
        # board tokens are graph-side inputs too: a page whose boards, or their text, changed (an
        # incremental day) is embedded again; runs without board tokens keep their fingerprints
        board_fp = np.append(hash_rows(features.board_text.numpy()), np.uint64(ABSENT))
        boards = boards.astype(np.int64)
        slots = board_fp[np.where(boards >= 0, boards, len(board_fp) - 1)]  # (n, S) uint64
        parts = [neighbour_fp[:, None], slots]
        if features.board_mean is not None and features.board_mean_fixed is not None:
            # the slots' board means move with other pages' pins: hash the row each slot reads
            assert features.board_mean_at is not None  # the three come together (PageFeatures)
            at = features.board_mean_at.numpy()
            at = at if rows is None else at[rows]
            mean_fp = hash_rows(features.board_mean.numpy())
            read = mean_fp[boards]  # an empty slot (-1) reads the last row, the zeros, as the gather does
            if len(features.board_mean_fixed):
                read = np.where(at >= 0, hash_rows(features.board_mean_fixed.numpy())[np.maximum(at, 0)], read)
            parts.append(read)
        neighbour_fp = hash_rows(np.concatenate(parts, axis=1))
    if features.page_mean is not None and features.nbr_mean_ok is not None:
        # neighbour means: what each neighbour's pins say moves with those pins, not with its content
        ok = features.nbr_mean_ok.numpy()
        ok = ok if rows is None else ok[rows]
        mean_fp = hash_rows(features.page_mean.numpy())
        read = (neighbours >= 0) & ok
        slots = np.where(read, mean_fp[np.maximum(neighbours, 0)], np.uint64(ABSENT))  # (n, K) uint64
        neighbour_fp = hash_rows(np.concatenate([neighbour_fp[:, None], slots], axis=1))
    if rows is None:
        return PageKeys(url=url, page_id=ids, content_fp=content_fp, neighbour_fp=neighbour_fp)
    return PageKeys(
        url=url.take(pa.array(rows)),
        page_id=ids[rows],
        content_fp=content_fp[rows],
        neighbour_fp=neighbour_fp,
        rows=rows,
    )


def check_page_count(url: pa.Array, features: PageFeatures, source: Path | None = None) -> None:
    if len(url) != features.n_pages:
        raise InputError(f"has {len(url)} pages, the page feature tables have {features.n_pages}", file=source)


def content_fingerprints(features: PageFeatures, rows: np.ndarray | None = None) -> np.ndarray:
    """(n,) uint64: hash of each page's own model inputs (text, image slots and mask, mean image, has-image)."""

    def table(t: torch.Tensor) -> np.ndarray:
        return t.numpy() if rows is None else t.numpy()[rows]

    nbr_image, has_image = hash_rows(table(features.nbr_image)), hash_rows(table(features.has_image))
    # a one-slot image table built from the mean image holds the same bytes per row: hashed once
    image = nbr_image if features.image_is_nbr_image() else hash_rows(table(features.image))
    image_mask = has_image if features.image_mask_is_has_image() else hash_rows(table(features.image_mask))
    content = np.stack(
        [hash_rows(table(features.text)), image, image_mask, nbr_image, has_image], axis=1
    )  # (n, 5): hashed again as one row below
    return hash_rows(content)


def pages_to_embed(store: EmbeddingStore, keys: PageKeys, version: str) -> np.ndarray:
    """Rows of ``keys`` (sorted; page_idx when they key every page) of the pages that are new to ``store`` or
    whose model version or fingerprints differ."""
    stored = store.keys()
    if stored.num_rows == 0:
        return np.arange(len(keys.page_id))
    sid = stored["page_id"].to_numpy()
    order = np.argsort(sid)
    sid = sid[order]
    pos = np.minimum(np.searchsorted(sid, keys.page_id), len(sid) - 1)
    found = sid[pos] == keys.page_id
    row = order[pos]
    # compared in Arrow: no Python string per stored row
    same_model = pc.equal(stored["model_version"], pa.scalar(version, pa.string())).to_numpy(zero_copy_only=False)
    same = (
        found
        & same_model[row]
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


def batch_size_for(cfg: EmbedConfig, device: torch.device) -> int:
    return cfg.batch_size or (16_384 if device.type == "cuda" else 4096)


def compile_mode_for(cfg: EmbedConfig, device: torch.device, pages: int) -> str:
    """The torch.compile mode to embed ``pages`` pages with (see ``EmbedConfig.compile``)."""
    if cfg.compile != "auto":
        return cfg.compile
    return "default" if device.type == "cuda" and pages >= cfg.compile_min_pages else "off"


def embed_into_store(
    run_dir: Path,
    store_path: Path,
    cfg: EmbedConfig,
    *,
    model_dir: Path | None = None,
    day: str | None = None,
    candidates: np.ndarray | None = None,
) -> EmbedReport:
    """Embed the run directory's changed pages with its trained model and upsert them as one store version.

    ``candidates`` (page_idx): only these pages are fingerprinted and compared with the store. The caller
    vouches that every other page's model inputs are those its stored row was embedded from (an incremental
    day passes the pages it touched, when the store held the run's previous state); None checks every page.
    """
    timings: dict[str, float] = {}
    started = t0 = time.perf_counter()
    model_dir = model_dir or run_dir / "train"
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    model = load_model(model_dir, device)
    version = model_version(model_dir)
    features = model.features(run_dir, copy=False)  # memory-mapped: read once by the hashes and the upload
    url, first_seen = read_pages(run_dir)
    timings["load_s"] = time.perf_counter() - t0

    n_pages = len(url)
    source = run_dir / "ingest" / "pages.parquet"
    rows = None if candidates is None or cfg.reembed_all else np.unique(np.asarray(candidates, np.int64))
    n_checked = n_pages if rows is None else len(rows)
    check_page_count(url, features, source)  # before any page is embedded, whichever order runs below

    # The tables go to the device in a background thread while this one fingerprints the pages (both read
    # the same memory-mapped tables; the hash kernels and torch's copies release the GIL). When every
    # checked page is embedded anyway (an empty store, or reembed_all), the fingerprints are not needed
    # until the first record batch: they are computed in a third thread, beside the upload and inference.
    # Every thread is joined on the way out, also when something failed (its error is the one raised).
    with contextlib.ExitStack() as threads:
        t0 = time.perf_counter()
        upload = threads.enter_context(_Background(lambda: features.to(device), "embed-upload"))
        keying = threads.enter_context(_Background(lambda: page_keys(url, features, source, rows), "embed-keys"))
        store = EmbeddingStore.open_or_create(store_path, model.output_dim)
        keys_first_s: float | None = None
        if _KEYS_BESIDE_INFERENCE and (cfg.reembed_all or store.count() == 0):  # the count: no keys read
            todo = np.arange(n_checked)  # rows of keys: every one, so the keys can come later
        else:
            keys = keying.result()
            todo = np.arange(n_checked) if cfg.reembed_all else pages_to_embed(store, keys, version)
            keys_first_s = time.perf_counter() - t0
        on_device = upload.result()
        day = day or cfg.day or default_day(first_seen)
        log.event(
            "[embed] pages to embed",
            pages=n_pages,
            checked=n_checked,
            selected=len(todo),
            store_version=store.version,
        )

        t0 = time.perf_counter()
        batch_size = batch_size_for(cfg, device)
        mode = compile_mode_for(cfg, device, len(todo))
        embedder = PageEmbedder(model, on_device, device, bf16, compile=mode)
        infer_s, keys_wait_s = [0.0], [0.0]

        def record_batches(held: list[tuple[np.ndarray, np.ndarray]]) -> Iterator[pa.RecordBatch]:
            """The store rows of the chunks embedded in ``held`` (which this empties), once the keys are there."""
            t = time.perf_counter()
            ready = keying.result()  # raises the fingerprinting's own error, with its traceback
            keys_wait_s[0] += time.perf_counter() - t
            while held:
                chunk, emb = held.pop(0)
                yield make_batch(
                    ready.page_id[chunk],
                    ready.url.take(pa.array(chunk)),
                    emb,
                    version,
                    ready.content_fp[chunk],
                    ready.neighbour_fp[chunk],
                    day,
                )
                bar.update(len(chunk))

        def chunk_batches() -> Iterator[pa.RecordBatch]:
            held: list[tuple[np.ndarray, np.ndarray]] = []  # embedded while the keys are computed: _LOOKAHEAD
            for lo in range(0, len(todo), cfg.chunk_rows):
                chunk = todo[lo : lo + cfg.chunk_rows]  # rows of keys
                t = time.perf_counter()
                emb = embedder.embed(chunk if rows is None else rows[chunk], batch_size=batch_size)  # (c, dim)
                infer_s[0] += time.perf_counter() - t
                held.append((chunk, emb))
                if len(held) >= _LOOKAHEAD or keying.done():
                    yield from record_batches(held)
            yield from record_batches(held)  # also when nothing was embedded: the keys' error, if any, is raised

        bar = log.progress(total=len(todo), desc="embed", unit="page")
        try:
            # the model runs in this thread; Lance writes chunk i in the background while chunk i+1 is embedded
            result, wait = write_behind(
                lambda batches: store.upsert(batches, day, cfg.write_parallelism), chunk_batches()
            )
        finally:
            bar.close()
    if not result.committed:
        store.tag_day(day)  # nothing changed: this day's state is the newest version
    # Seconds, in order: load_s; then either fingerprint_s (the keys and the diff) with upload_s beside it, both in
    # front of inference, or (an empty store, reembed_all) upload_s in front of inference and fingerprint_s (the
    # keys alone) beside upload_s and embed_write_s, keys_wait_s the part of it that inference did not hide.
    timings["fingerprint_s"] = keying.seconds if keys_first_s is None else keys_first_s
    timings["upload_s"] = upload.seconds
    timings["embed_write_s"] = time.perf_counter() - t0  # inference and store writes, overlapped
    timings["infer_s"] = infer_s[0]  # of which the model
    timings["write_wait_s"] = wait  # of which waiting for the store: the writes not hidden behind inference
    timings["keys_wait_s"] = keys_wait_s[0]  # of which waiting for the fingerprints (0 when they came first)
    timings["total_s"] = time.perf_counter() - started  # wall time of the whole call, whichever the order
    return EmbedReport(
        pages=n_pages,
        embedded=len(todo),
        unchanged=n_pages - len(todo),
        result=result,
        model_version=version,
        day=day,
        timings=timings,
        compile_mode=mode,
        batch_size=batch_size,
        checked=None if rows is None else len(rows),
    )


class _Background(Generic[T]):
    """``fn()`` in a thread; ``result()`` joins it and returns its value or raises its error. As a context
    manager, it is joined on the way out."""

    def __init__(self, fn: Callable[[], T], name: str) -> None:
        self._fn = fn
        self._value: list[T] = []
        self._error: list[BaseException] = []
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:
            self._value.append(self._fn())
        except BaseException as exc:  # handed to result()
            self._error.append(exc)
        self.seconds = time.perf_counter() - t0

    def __enter__(self) -> _Background[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join()  # without raising fn's error: result() raises it

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> T:
        self._thread.join()
        if self._error:
            raise self._error[0]
        return self._value[0]


class _Abort:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def write_behind(consume: Callable[[Iterator[T]], R], items: Iterable[T], depth: int = 2) -> tuple[R, float]:
    """``consume(iterator over items)`` in a background thread while this thread produces ``items``.

    At most ``depth`` items wait between the two. An error while producing is raised inside ``consume``'s
    iterator (so a store write aborts before its commit) and then here; an error in ``consume`` stops the
    producer and is raised here. Returns ``consume``'s result and the seconds this thread spent waiting
    for it (blocked on a full queue, then for its end): the consumer time not hidden behind producing.
    """
    pending: queue.Queue[object] = queue.Queue(maxsize=depth)
    outcome: list[R] = []
    failure: list[BaseException] = []
    finished = threading.Event()

    def stream() -> Iterator[T]:
        while True:
            item = pending.get()
            if item is _END:
                return
            if isinstance(item, _Abort):
                raise item.error
            yield item  # type: ignore[misc]

    def work() -> None:
        try:
            outcome.append(consume(stream()))
        except BaseException as exc:  # handed to the producer's thread
            failure.append(exc)
        finally:
            finished.set()

    waited = [0.0]

    def put(item: object) -> bool:
        t = time.perf_counter()
        try:
            while not finished.is_set():  # the consumer may have stopped: never block forever
                try:
                    pending.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False
        finally:
            waited[0] += time.perf_counter() - t

    thread = threading.Thread(target=work, name="embed-write", daemon=True)
    thread.start()
    try:
        for item in items:
            if not put(item):
                break  # the consumer failed or returned early
        else:
            put(_END)
    except BaseException as exc:
        put(_Abort(exc))
        thread.join()
        raise
    t = time.perf_counter()
    thread.join()
    waited[0] += time.perf_counter() - t
    if failure:
        raise failure[0]
    if not outcome:
        raise RuntimeError("write_behind: the consumer ended without a result")
    return outcome[0], waited[0]
