"""Build the canonical tables from a ``ContractInput``: validate, canonicalise URLs, assign indices.

Indices are dense int32 row numbers: ``pin_idx`` in input order; ``page_idx`` in order of first
appearance in the links (then pages known only from the pages table); ``domain_idx`` and
``board_idx`` likewise (boards with metadata first). Pins stream straight to ``pins.parquet`` (their
embeddings are the bulk of the data); the other tables hold a few small columns per row in memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from linksage import log
from linksage.errors import InputError
from linksage.ingest.tables import Chunk, ContractInput
from linksage.ingest.urls import HOST_PATTERN, BadUrls, canonicalise_array
from linksage.ingest.validate import Locations, check_range, check_unique, check_vectors
from linksage.schema import (
    BOARD_PINS_SCHEMA,
    BOARDS_SCHEMA,
    DOMAINS_SCHEMA,
    IMAGES_TYPE,
    LINKS_SCHEMA,
    PAGES_SCHEMA,
    pins_schema,
)

NO_TIME = np.iinfo(np.int64).max  # sentinel for "no created_at" in min-reductions
_SLICE_ROWS = 262_144  # pages written per row group
_WRITE_OPTIONS: dict[str, Any] = {"use_dictionary": False}

_CONTENT = (
    ("title", pa.string()),
    ("description", pa.string()),
    ("body", pa.string()),
    ("images", IMAGES_TYPE),
    ("fetched_at", pa.int64()),
)


@dataclass
class Report:
    """What the build counted (lands in the manifest)."""

    counts: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _Pins:
    ids: pa.Array  # large_string, row i = pin_idx i
    created: np.ndarray  # int64, NO_TIME where unknown
    where: Locations


def build_canonical(inp: ContractInput, out: Path, *, bad_urls: Literal["error", "skip"]) -> Report:
    """Validate ``inp`` and write pins, pages, links, boards, board_pins and domains into ``out``."""
    report = Report()
    bad = BadUrls()
    t0 = time.perf_counter()
    pins = _write_pins(inp, out / "pins.parquet", report)
    report.timings["pins_s"] = _lap(t0)

    t0 = time.perf_counter()
    link_pin, link_url, cohesion = _read_links(inp, pins, bad, bad_urls, report)
    report.timings["links_s"] = _lap(t0)

    t0 = time.perf_counter()
    _write_boards(inp, pins, out, report)
    report.timings["boards_s"] = _lap(t0)
    n_pins = len(pins.ids)
    pins.ids = pa.array([], pa.large_string())  # the id lookups are done: free them before the pages

    t0 = time.perf_counter()
    encoded = pc.dictionary_encode(link_url)
    # chunks share one dictionary, growing chunk by chunk: the last chunk's is complete
    page_urls = encoded.chunk(encoded.num_chunks - 1).dictionary if encoded.num_chunks else pa.array([], pa.string())
    link_page = np.concatenate([c.indices.to_numpy() for c in encoded.chunks]).astype(np.int32)
    del encoded, link_url
    n_linked = len(page_urls)
    content, content_page, page_urls = _read_pages(inp, page_urls, bad, bad_urls, report)
    n_pages = len(page_urls)
    first_seen = np.full(n_pages, NO_TIME, dtype=np.int64)
    np.minimum.at(first_seen, link_page, pins.created[link_pin])
    domains, domain_idx = _domains(page_urls)
    _write_pages(out / "pages.parquet", page_urls, domain_idx, first_seen, content, content_page)
    del content, page_urls
    pq.write_table(
        pa.table({"domain_idx": pa.array(np.arange(len(domains), dtype=np.int32)), "domain": domains}, DOMAINS_SCHEMA),
        out / "domains.parquet",
    )
    report.timings["pages_s"] = _lap(t0)

    t0 = time.perf_counter()
    n_links = write_links(out / "links.parquet", link_pin, link_page, cohesion, n_pins, report)
    del link_pin, link_page, cohesion
    report.timings["write_links_s"] = _lap(t0)

    report.counts.update(
        pins=n_pins,
        pages=n_pages,
        links=n_links,
        domains=len(domains),
        pages_linked=n_linked,
        pages_content_only=n_pages - n_linked,
        bad_urls_skipped=bad.count,
    )
    if bad.count:
        report.metrics.update(bad.as_metrics())
    return report


def _unique_sorted(x: np.ndarray) -> np.ndarray:
    """Distinct values of a sorted array (``np.unique`` hashes, which is several times slower here)."""
    return x[np.concatenate([[True], x[1:] != x[:-1]])] if len(x) else x


def _lap(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)


def _rows(chunks: Iterable[Chunk], inp: ContractInput, table: str) -> Iterable[Chunk]:
    """``chunks`` with a progress bar in rows (with an ETA when the row count is known)."""
    bar = log.progress(total=inp.sizes.get(table), desc=f"ingest {table}", unit="rows")
    try:
        for chunk in chunks:
            yield chunk
            bar.update(chunk.table.num_rows)
    finally:
        bar.close()


def _empty(inp: ContractInput, table: str, detail: str = "no rows") -> InputError:
    return InputError(f"empty input: the {table} table has {detail}", file=inp.sources.get(table))


def _write_pins(inp: ContractInput, path: Path, report: Report) -> _Pins:
    writer: pq.ParquetWriter | None = None
    columns: list[str] | None = None
    dim: int | None = None
    ids: list[pa.Array] = []
    created: list[np.ndarray] = []
    where = Locations()
    n = 0
    try:
        for chunk in _rows(inp.pins, inp, "pins"):
            t, loc, rows = chunk.table, chunk.loc, chunk.table.num_rows
            if columns is None:
                columns = t.column_names
            elif t.column_names != columns:
                raise InputError(f"pins columns {t.column_names} differ from the first file's {columns}", file=loc.file)
            if rows == 0:
                continue
            out: dict[str, Any] = {
                "pin_idx": pa.array(np.arange(n, n + rows, dtype=np.int32)),
                "pin_id": t["pin_id"],
                "text": pc.fill_null(t["text"], "") if "text" in columns else pa.array([""] * rows),
                "image_url": t["image_url"] if "image_url" in columns else pa.nulls(rows, pa.string()),
                "created_at": t["created_at"] if "created_at" in columns else pa.nulls(rows, pa.int64()),
            }
            if "embedding" in columns:
                emb = t["embedding"].combine_chunks()
                if dim is None:
                    first = emb[0].as_py()
                    dim = len(first) if first is not None else 0
                out["embedding"] = check_vectors(emb, dim, loc)
            table = pa.table(out, schema=pins_schema(dim if "embedding" in columns else None))
            if writer is None:
                # target embeddings are random-looking floats: compressing them costs time and saves nothing
                compression = {c: "none" if c == "embedding" else "snappy" for c in table.column_names}
                stats = ["pin_idx", "created_at"]
                writer = pq.ParquetWriter(path, table.schema, compression=compression, write_statistics=stats)
            writer.write_table(table)
            ids.append(t["pin_id"].combine_chunks())
            created.append(pc.fill_null(out["created_at"], NO_TIME).to_numpy().astype(np.int64))
            where.add(loc, rows)
            n += rows
    finally:
        if writer is not None:
            writer.close()
    if n == 0:
        raise _empty(inp, "pins")
    all_ids = pa.chunked_array(ids, pa.string())
    check_unique(all_ids, where, "pin_id")
    report.counts["pins_with_created_at"] = int(sum((c != NO_TIME).sum() for c in created))
    if dim is not None:
        report.counts["embedding_dim"] = dim
    return _Pins(all_ids.cast(pa.large_string()).combine_chunks(), np.concatenate(created), where)


def _canonical_urls(raw: pa.Array, chunk: Chunk, bad: BadUrls, policy: str, table: str) -> tuple[pa.Array, np.ndarray]:
    """Canonical URLs of a chunk and a keep-mask; a bad URL fails (policy "error") or is counted."""
    urls, reasons = canonicalise_array(raw)
    if reasons.null_count != len(reasons):
        failed = pc.is_valid(reasons).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(failed)
        if policy == "error":
            i = int(rows[0])
            raise chunk.loc.error(
                f'URL cannot be canonicalised: {reasons[i].as_py()} (set ingest.tables.bad_urls = "skip" to '
                f"skip such {table} rows)",
                i,
                column="url",
                value=raw[i].as_py(),
            )
        for k in rows:
            bad.add(raw[int(k)].as_py(), reasons[int(k)].as_py())
        return urls, ~failed
    return urls, np.ones(len(urls), dtype=bool)


def _read_links(
    inp: ContractInput, pins: _Pins, bad: BadUrls, policy: str, report: Report
) -> tuple[np.ndarray, pa.ChunkedArray, np.ndarray]:
    """(pin_idx, canonical URL, cohesion) of every kept link row, in input order."""
    pin_ids: list[pa.Array] = []
    urls: list[pa.Array] = []
    cohesion: list[np.ndarray] = []
    where = Locations()
    n_rows = 0
    for chunk in _rows(inp.links, inp, "links"):
        t, rows = chunk.table, chunk.table.num_rows
        if rows == 0:
            continue
        n_rows += rows
        raw = t["url"].combine_chunks()
        if inp.urls_canonical:
            canon, keep = raw, np.ones(rows, dtype=bool)
        else:
            canon, keep = _canonical_urls(raw, chunk, bad, policy, "links")
        coh = t["cohesion"].combine_chunks() if "cohesion" in t.column_names else pa.nulls(rows, pa.float32())
        check_range(coh, 0.0, 1.0, "cohesion", chunk.loc)
        if not keep.all():
            mask = pa.array(keep)
            loc = chunk.loc.subset(np.flatnonzero(keep))
            t, canon, coh = t.filter(mask), canon.filter(mask), coh.filter(mask)
        else:
            loc = chunk.loc
        pin_ids.append(t["pin_id"].combine_chunks())
        urls.append(canon)
        cohesion.append(pc.fill_null(coh, np.nan).to_numpy(zero_copy_only=False).astype(np.float32))
        where.add(loc, t.num_rows)
    if n_rows == 0:
        raise _empty(inp, "links")
    if where.total == 0:
        raise _empty(inp, "links", f"no usable rows: all {n_rows:,} URLs were bad")
    report.counts["link_rows"] = n_rows
    idx = pc.index_in(pa.chunked_array(pin_ids, pa.string()), value_set=pins.ids)
    if idx.null_count:
        k = int(np.flatnonzero(pc.is_null(idx).to_numpy(zero_copy_only=False))[0])
        loc, i = where.find(k)
        value = pa.chunked_array(pin_ids, pa.string())[k].as_py()
        raise loc.error("link to an unknown pin: pin_id is not in the pins table", i, column="pin_id", value=value)
    link_pin = idx.to_numpy().astype(np.int32) if isinstance(idx, pa.Array) else _np_int32(idx)
    return link_pin, pa.chunked_array(urls, pa.string()), np.concatenate(cohesion)


def _np_int32(arr: pa.ChunkedArray) -> np.ndarray:
    return (
        np.concatenate([c.to_numpy() for c in arr.chunks]).astype(np.int32) if arr.num_chunks else np.zeros(0, np.int32)
    )


def _read_pages(
    inp: ContractInput, page_urls: pa.Array, bad: BadUrls, policy: str, report: Report
) -> tuple[pa.Table | None, np.ndarray, pa.Array]:
    """Crawled content (one row per page that has some), its page_idx, and the extended page URL list."""
    parts: list[pa.Table] = []
    for chunk in _rows(inp.pages, inp, "pages"):
        t = chunk.table
        if t.num_rows == 0:
            continue
        canon, keep = _canonical_urls(t["url"].combine_chunks(), chunk, bad, policy, "pages")
        cols = {"url": canon}
        for name, typ in _CONTENT:
            cols[name] = t[name].combine_chunks() if name in t.column_names else pa.nulls(t.num_rows, typ)
        part = pa.table(cols)
        parts.append(part.filter(pa.array(keep)) if not keep.all() else part)
    if not parts:
        return None, np.zeros(0, np.int64), page_urls
    content = pa.concat_tables(parts)
    del parts
    # Several raw URLs can share a canonical URL: the first row wins, the rest are counted.
    first = pl.Series(content["url"]).is_first_distinct()
    report.counts["page_content_duplicates"] = int((~first).sum())
    if not first.all():
        content = content.filter(first.to_arrow())
    known = pc.is_in(content["url"], value_set=page_urls).to_numpy(zero_copy_only=False)
    new_urls = content["url"].filter(pa.array(~known)).combine_chunks()
    all_urls = pa.concat_arrays([page_urls.cast(pa.string()), new_urls.cast(pa.string())])
    content_page = pc.index_in(content["url"], value_set=all_urls).to_numpy().astype(np.int64)
    content = content.drop_columns(["url"])
    report.counts["pages_with_content"] = content.num_rows
    has_text = pc.or_(pc.is_valid(content["title"]), pc.is_valid(content["body"]))
    report.counts["pages_with_text"] = int(pc.sum(has_text).as_py() or 0)
    return content, content_page, all_urls


def _domains(page_urls: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Canonical host of each page: the domains (first-appearance order) and each page's domain_idx."""
    hosts = pc.extract_regex(page_urls, HOST_PATTERN).field("host")
    encoded = pc.dictionary_encode(hosts)
    return encoded.dictionary.cast(pa.string()), encoded.indices.to_numpy().astype(np.int32)


def _write_pages(
    path: Path,
    urls: pa.Array,
    domain_idx: np.ndarray,
    first_seen: np.ndarray,
    content: pa.Table | None,
    content_page: np.ndarray,
) -> None:
    """Write ``pages.parquet`` in slices, so that only one slice of content is ever copied."""
    n = len(urls)
    row_of_page = np.full(n, -1, dtype=np.int64)
    row_of_page[content_page] = np.arange(len(content_page))
    with pq.ParquetWriter(path, PAGES_SCHEMA, **_WRITE_OPTIONS) as writer:
        for a in range(0, max(n, 1), _SLICE_ROWS):
            b = min(a + _SLICE_ROWS, n)
            cols: dict[str, Any] = {
                "page_idx": pa.array(np.arange(a, b, dtype=np.int32)),
                "url": urls[a:b].cast(pa.string()),
                "domain_idx": pa.array(domain_idx[a:b]),
                "first_seen": pa.array(first_seen[a:b], mask=first_seen[a:b] == NO_TIME),
            }
            rows = row_of_page[a:b]
            take = pa.array(rows, mask=rows < 0)
            for name, typ in _CONTENT:
                cols[name] = pa.nulls(b - a, typ) if content is None else content[name].take(take).cast(typ)
            writer.write_table(pa.table(cols, schema=PAGES_SCHEMA))


def write_links(
    path: Path, pin: np.ndarray, page: np.ndarray, cohesion: np.ndarray, n_pins: int, report: Report
) -> int:
    """One row per (pin, page), sorted; duplicates merged keeping the largest cohesion."""
    key = (pin.astype(np.int64) << 32) | page.astype(np.int64)
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    merged_cohesion = np.fmax.reduceat(cohesion[order], starts) if len(starts) else cohesion[:0]
    key = key[starts]
    report.counts["duplicate_links_merged"] = len(order) - len(starts)
    table = pa.table(
        {
            "pin_idx": pa.array((key >> 32).astype(np.int32)),
            "page_idx": pa.array((key & 0xFFFFFFFF).astype(np.int32)),
            "cohesion": pa.array(merged_cohesion.astype(np.float32)),
        },
        schema=LINKS_SCHEMA,
    )
    pq.write_table(table, path)
    pins_linked = len(_unique_sorted(key >> 32))
    report.counts["pins_without_links"] = n_pins - pins_linked
    return table.num_rows


def _write_boards(inp: ContractInput, pins: _Pins, out: Path, report: Report) -> None:
    meta_ids: list[pa.Array] = []
    meta_text: list[pa.Array] = []
    meta_where = Locations()
    for chunk in _rows(inp.board_meta, inp, "board_meta"):
        t = chunk.table
        meta_ids.append(t["board_id"].combine_chunks())
        text = t["text"].combine_chunks() if "text" in t.column_names else pa.nulls(t.num_rows, pa.string())
        meta_text.append(pc.fill_null(text, ""))
        meta_where.add(chunk.loc, t.num_rows)
    member_boards: list[pa.Array] = []
    member_pins: list[pa.Array] = []
    where = Locations()
    for chunk in _rows(inp.boards, inp, "boards"):
        t = chunk.table
        member_boards.append(t["board_id"].combine_chunks())
        member_pins.append(t["pin_id"].combine_chunks())
        where.add(chunk.loc, t.num_rows)
    meta = pa.chunked_array(meta_ids, pa.string())
    check_unique(meta, meta_where, "board_id")

    members = pa.chunked_array(member_pins, pa.string())
    pin_idx = pc.index_in(members, value_set=pins.ids)
    if pin_idx.null_count:
        k = int(np.flatnonzero(pc.is_null(pin_idx).to_numpy(zero_copy_only=False))[0])
        loc, i = where.find(k)
        raise loc.error(
            "board membership of an unknown pin: pin_id is not in the pins table",
            i,
            column="pin_id",
            value=members[k].as_py(),
        )
    encoded = pc.dictionary_encode(pa.chunked_array(meta.chunks + member_boards, pa.string()))
    board_ids = encoded.chunk(encoded.num_chunks - 1).dictionary if encoded.num_chunks else pa.array([], pa.string())
    indices = _np_int32(pa.chunked_array([c.indices for c in encoded.chunks], pa.int32()))
    text = np.full(len(board_ids), "", dtype=object)
    if len(meta):
        text[indices[: len(meta)]] = pa.chunked_array(meta_text, pa.string()).to_numpy(zero_copy_only=False)
    boards = pa.table(
        {
            "board_idx": pa.array(np.arange(len(board_ids), dtype=np.int32)),
            "board_id": board_ids.cast(pa.string()),
            "text": pa.array(text, pa.string()),
        },
        schema=BOARDS_SCHEMA,
    )
    pq.write_table(boards, out / "boards.parquet")

    member_board = indices[len(meta) :]
    pin_np = _np_int32(pin_idx) if isinstance(pin_idx, pa.ChunkedArray) else pin_idx.to_numpy().astype(np.int32)
    key = _unique_sorted(np.sort((member_board.astype(np.int64) << 32) | pin_np.astype(np.int64)))
    board_pins = pa.table(
        {"board_idx": pa.array((key >> 32).astype(np.int32)), "pin_idx": pa.array((key & 0xFFFFFFFF).astype(np.int32))},
        schema=BOARD_PINS_SCHEMA,
    )
    pq.write_table(board_pins, out / "board_pins.parquet")
    has_pins = np.zeros(len(board_ids), dtype=bool)
    has_pins[member_board] = True
    report.counts.update(
        boards=len(board_ids),
        board_pins=len(key),
        board_memberships_merged=len(member_board) - len(key),
        boards_without_text=int(sum(1 for s in text if not s)),
        boards_without_pins=int((~has_pins).sum()),
    )
