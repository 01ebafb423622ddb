"""An incremental day's ingest: validate the day's input tables and append them to the canonical tables.

The day's input goes through the same adapter and ``build_canonical`` as a full ingest (so a bad file
fails with the same message naming file, row and value, and nothing is written), into a *delta* with
its own indices. The delta is then merged into a copy of the run's tables: new pins, pages, boards and
domains get the next indices (existing indices never move, so every later stage's arrays stay valid
row for row), links and board memberships are re-sorted and de-duplicated, and a page that the day
re-crawled gets its new content. A pin id seen before is an error: a day adds pins, it does not edit them.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from linksage.config.ingest import IngestConfig, RedditSource, TablesSource
from linksage.errors import InputError, LinksageError
from linksage.ingest.canonical import NO_TIME, Report, build_canonical, write_links
from linksage.ingest.tables import Chunk, ContractInput, tables_input
from linksage.schema import BOARD_PINS_SCHEMA, BOARDS_SCHEMA, DOMAINS_SCHEMA, INPUT_TABLES, PAGES_SCHEMA, data_files

InputFormat = Literal["auto", "tables", "reddit"]
_CONTENT = ("title", "description", "body", "images", "fetched_at")
UPDATE_FILE = "update.json"  # old and new row counts of the latest day (read by the later update steps)
UPDATED_PAGES = "updated_pages.npy"  # old pages whose crawled content the day replaced
UPDATED_BOARDS = "updated_boards.npy"  # old boards whose text the day replaced


@dataclass
class DayInput:
    """The day's input as contract chunks, and what identifies it."""

    inp: ContractInput
    bad_urls: Literal["error", "skip"]
    files: list[Path]
    counts: dict[str, int] = field(default_factory=dict)  # what the adapter filtered on purpose


def day_bounds(day: str) -> tuple[int, int]:
    """Unix seconds of ``[day, day + 1)`` (UTC); a clear error for a malformed date."""
    try:
        date = datetime.date.fromisoformat(day)
    except ValueError:
        raise LinksageError(f"--day: expected an ISO date like 2013-04-02, got {day!r}") from None
    start = int(datetime.datetime(date.year, date.month, date.day, tzinfo=datetime.UTC).timestamp())
    return start, start + 86_400


def open_day_input(cfg: IngestConfig, path: Path, day: str, fmt: InputFormat = "auto") -> DayInput:
    """The day's input: Reddit posts (kept when created during ``day``) or a folder of contract tables.

    ``auto`` reads Reddit posts when the run ingested Reddit, else tables: ``path/pins``, ``path/links``
    and optionally ``boards``, ``board_meta``, ``pages``, each a file (``pins.parquet``, ``pins.csv`` ...)
    or a folder of parts, with the run's column mapping when the run read tables.
    """
    start, end = day_bounds(day)
    if not path.exists():
        raise InputError("no such file or folder (the day's input)", file=path)
    if fmt == "reddit" or (fmt == "auto" and cfg.source == "reddit"):
        from linksage.ingest.reddit import reddit_input

        posts = RedditSource(
            posts=str(path),
            subreddits=cfg.reddit.subreddits,
            blocked_domains=cfg.reddit.blocked_domains,
            start=datetime.datetime.fromtimestamp(start, datetime.UTC).isoformat(),
            end=datetime.datetime.fromtimestamp(end, datetime.UTC).isoformat(),
        )
        inp, filtered = reddit_input(posts, cfg.batch_rows)
        files = data_files(path)
        return DayInput(inp, "skip", files, dict(filtered.counts))
    if not path.is_dir():
        raise InputError("expected a folder holding the day's tables (pins, links, ...)", file=path)
    tables = {name: _table_path(path, name) for name in INPUT_TABLES}
    for name in ("pins", "links"):
        if tables[name] is None:
            raise InputError(
                f"the day's {name} table is missing: expected {name}.parquet, {name}.csv, {name}.jsonl or a "
                f"folder {name}/ in it",
                file=path,
            )
    mapping = cfg.tables.columns if cfg.source == "tables" else {}
    src = TablesSource(
        pins=str(tables["pins"]),
        links=str(tables["links"]),
        **{k: str(v) for k in ("boards", "board_meta", "pages") if (v := tables[k]) is not None},  # type: ignore[arg-type]
        columns=mapping,
    )
    bad: Literal["error", "skip"] = cfg.tables.bad_urls if cfg.source == "tables" else "error"
    files = [f for p in tables.values() if p is not None for f in data_files(p)]
    return DayInput(tables_input(src, cfg.batch_rows), bad, files)


def input_sha(files: Iterable[Path]) -> str:
    """SHA-256 of the input files' names and bytes: the day's identity (re-running it is detected by this)."""
    digest = hashlib.sha256()
    for f in sorted(files):
        digest.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


@dataclass
class AppendReport:
    old: dict[str, int]  # row counts before the day: pins, pages, boards, domains
    new: dict[str, int]  # and after
    counts: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def append_day(old: Path, day: DayInput, out: Path, scratch: Path) -> AppendReport:
    """Validate ``day`` and write the run's tables (``old``, an ingest folder) plus the day into ``out``."""
    known = pq.read_table(old / "pins.parquet", columns=["pin_id"])["pin_id"].combine_chunks()
    day.inp.pins = _new_pins_only(day.inp.pins, known)
    delta = scratch / "delta"
    delta.mkdir(parents=True, exist_ok=True)
    report = build_canonical(day.inp, delta, bad_urls=day.bad_urls)
    _check_pins_schema(old / "pins.parquet", delta / "pins.parquet", day.inp.sources.get("pins", ""))
    merged = _merge(old, delta, out)
    merged.counts.update({f"day_{k}": v for k, v in report.counts.items()})
    merged.counts.update({f"day_{k}": v for k, v in day.counts.items()})
    merged.metrics.update(report.metrics)
    merged.timings.update(report.timings)
    return merged


def _table_path(folder: Path, name: str) -> Path | None:
    if (folder / name).is_dir():
        return folder / name
    for suffix in (".parquet", ".pq", ".csv", ".jsonl", ".json"):
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    return None


def _new_pins_only(chunks: Iterable[Chunk], known: pa.Array) -> Iterator[Chunk]:
    """The day's pin chunks, failing on the first pin id the run already holds."""
    for chunk in chunks:
        seen = pc.is_in(chunk.table["pin_id"], value_set=known).to_numpy(zero_copy_only=False)
        if seen.any():
            i = int(np.flatnonzero(seen)[0])
            raise chunk.loc.error(
                "pin_id was already ingested (by the full run or an earlier day): a day adds new pins only",
                i,
                column="pin_id",
                value=chunk.table["pin_id"][i].as_py(),
            )
        yield chunk


def _check_pins_schema(old: Path, delta: Path, source: str) -> None:
    """The day's pins must carry target embeddings exactly when the run's do, and of the same width."""
    a, b = pq.read_schema(old), pq.read_schema(delta)
    dim_a = a.field("embedding").type.list_size if "embedding" in a.names else None
    dim_b = b.field("embedding").type.list_size if "embedding" in b.names else None
    if dim_a != dim_b:
        have = f"{dim_a}-dim target embeddings" if dim_a else "no embedding column"
        got = f"{dim_b}-dim ones" if dim_b else "no embedding column"
        raise InputError(f"the run's pins have {have}; this day's pins have {got}", file=source, column="embedding")


def _merge(old: Path, delta: Path, out: Path) -> AppendReport:
    counts: dict[str, int] = {}
    n = {name: pq.ParquetFile(old / f"{name}.parquet").metadata.num_rows for name in ("pins", "pages", "domains")}
    n["boards"] = pq.ParquetFile(old / "boards.parquet").metadata.num_rows

    # pins: the old file's rows, then the day's with shifted indices (streamed: embeddings are the bulk)
    schema = pq.read_schema(old / "pins.parquet")
    compression = {c: "none" if c == "embedding" else "snappy" for c in schema.names}
    n_day_pins = 0
    with pq.ParquetWriter(out / "pins.parquet", schema, compression=compression) as writer:
        for batch in pq.ParquetFile(old / "pins.parquet").iter_batches(batch_size=262_144):
            writer.write_batch(batch)
        for batch in pq.ParquetFile(delta / "pins.parquet").iter_batches(batch_size=262_144):
            idx = batch.column("pin_idx").to_numpy() + n["pins"]
            cols = {name: batch.column(name) for name in schema.names}
            cols["pin_idx"] = pa.array(idx.astype(np.int32))
            writer.write_batch(pa.RecordBatch.from_pydict(cols, schema=schema))
            n_day_pins += batch.num_rows

    # domains, then pages: a URL seen before keeps its page_idx, the others come after the old pages
    old_domains = pq.read_table(old / "domains.parquet")["domain"].combine_chunks()
    day_domains = pq.read_table(delta / "domains.parquet")["domain"].combine_chunks()
    domain_of, new_domains = _remap(day_domains, old_domains)
    all_domains = pa.concat_arrays([old_domains, new_domains.cast(pa.string())])
    ids = pa.array(np.arange(len(all_domains), dtype=np.int32))
    pq.write_table(pa.table({"domain_idx": ids, "domain": all_domains}, DOMAINS_SCHEMA), out / "domains.parquet")

    old_pages = pq.read_table(old / "pages.parquet")
    day_pages = pq.read_table(delta / "pages.parquet")
    page_of, _ = _remap(day_pages["url"].combine_chunks(), old_pages["url"].combine_chunks())
    is_new = page_of >= n["pages"]
    seen_rows = np.flatnonzero(~is_new)
    updated = _content_updates(old_pages, day_pages, seen_rows, page_of)
    take = np.arange(n["pages"] + int(is_new.sum()), dtype=np.int64)
    take[page_of[updated]] = n["pages"] + updated  # re-crawled pages: the day's content
    take[n["pages"] :] = n["pages"] + np.flatnonzero(is_new)
    first_seen = _first_seen(old_pages, day_pages, page_of, is_new)
    new_rows = np.flatnonzero(is_new)
    day_domain = day_pages["domain_idx"].to_numpy()[new_rows]
    both = pa.concat_tables([old_pages, day_pages.cast(old_pages.schema)])
    columns: dict[str, Any] = {
        "page_idx": pa.array(np.arange(len(take), dtype=np.int32)),
        "url": pa.concat_arrays(
            [old_pages["url"].combine_chunks(), day_pages["url"].combine_chunks().take(pa.array(new_rows))]
        ),
        "domain_idx": pa.array(
            np.concatenate([old_pages["domain_idx"].to_numpy(), domain_of[day_domain]]).astype(np.int32)
        ),
        "first_seen": pa.array(first_seen, mask=first_seen == NO_TIME),
    }
    for name in _CONTENT:
        columns[name] = both[name].take(pa.array(take))
    pages = pa.table(columns, schema=PAGES_SCHEMA)
    pq.write_table(pages, out / "pages.parquet", row_group_size=262_144, use_dictionary=False)
    np.save(out / UPDATED_PAGES, page_of[updated].astype(np.int64))
    counts["pages_recrawled"] = len(updated)
    del both, pages, old_pages

    # boards: new ids appended; the day's text replaces an old board's text when given and different
    old_boards = pq.read_table(old / "boards.parquet")
    day_boards = pq.read_table(delta / "boards.parquet")
    board_of, _ = _remap(day_boards["board_id"].combine_chunks(), old_boards["board_id"].combine_chunks())
    text = np.concatenate(
        [
            old_boards["text"].to_numpy(zero_copy_only=False).astype(object),
            day_boards["text"].to_numpy(zero_copy_only=False).astype(object)[board_of >= n["boards"]],
        ]
    )
    old_rows = np.flatnonzero(board_of < n["boards"])
    day_text = day_boards["text"].to_numpy(zero_copy_only=False)[old_rows]
    target = board_of[old_rows]
    retext = np.array([bool(t) and t != text[b] for t, b in zip(day_text, target, strict=True)], bool)
    text[target[retext]] = day_text[retext]
    board_ids = pa.concat_arrays(
        [
            old_boards["board_id"].combine_chunks(),
            day_boards["board_id"].combine_chunks().filter(pa.array(board_of >= n["boards"])),
        ]
    )
    boards = pa.table(
        {"board_idx": pa.array(np.arange(len(text), dtype=np.int32)), "board_id": board_ids, "text": pa.array(text)},
        schema=BOARDS_SCHEMA,
    )
    pq.write_table(boards, out / "boards.parquet")
    np.save(out / UPDATED_BOARDS, target[retext].astype(np.int64))
    counts["boards_retexted"] = int(retext.sum())

    old_bp, day_bp = pq.read_table(old / "board_pins.parquet"), pq.read_table(delta / "board_pins.parquet")
    bp_board = np.concatenate([old_bp["board_idx"].to_numpy(), board_of[day_bp["board_idx"].to_numpy()]])
    bp_pin = np.concatenate([old_bp["pin_idx"].to_numpy(), day_bp["pin_idx"].to_numpy() + n["pins"]])
    key = np.unique((bp_board.astype(np.int64) << 32) | bp_pin.astype(np.int64))
    board_pins = pa.table(
        {"board_idx": pa.array((key >> 32).astype(np.int32)), "pin_idx": pa.array((key & 0xFFFFFFFF).astype(np.int32))},
        schema=BOARD_PINS_SCHEMA,
    )
    pq.write_table(board_pins, out / "board_pins.parquet")

    old_links, day_links = pq.read_table(old / "links.parquet"), pq.read_table(delta / "links.parquet")
    report = Report()
    n_pins = n["pins"] + n_day_pins
    n_links = write_links(
        out / "links.parquet",
        np.concatenate([old_links["pin_idx"].to_numpy(), day_links["pin_idx"].to_numpy() + n["pins"]]),
        np.concatenate([old_links["page_idx"].to_numpy(), page_of[day_links["page_idx"].to_numpy()]]),
        np.concatenate([old_links["cohesion"].to_numpy(), day_links["cohesion"].to_numpy()]),
        n_pins,
        report,
    )
    if (old / "truth.parquet").exists():  # synthetic runs: the planted topics of the pages known so far
        pq.write_table(pq.read_table(old / "truth.parquet"), out / "truth.parquet")

    new = {"pins": n_pins, "pages": len(take), "boards": len(boards), "domains": len(all_domains)}
    counts.update(new)
    counts.update(links=n_links, board_pins=len(key))
    counts.update({f"new_{k}": new[k] - n[k] for k in new})
    return AppendReport(old=n, new=new, counts=counts)


def _remap(values: pa.Array, known: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Each value's index in ``known``, else ``len(known)`` + its rank among the unknown; and the unknown."""
    pos = pc.index_in(values, value_set=known)
    unknown = pc.is_null(pos).to_numpy(zero_copy_only=False)
    out = pc.fill_null(pos, -1).to_numpy().astype(np.int64)
    out[unknown] = len(known) + np.arange(int(unknown.sum()))
    return out, values.filter(pa.array(unknown))


def _content_updates(old: pa.Table, day: pa.Table, rows: np.ndarray, page_of: np.ndarray) -> np.ndarray:
    """Rows of ``day`` (among ``rows``, pages seen before) whose crawled content is given and differs."""
    if len(rows) == 0:
        return rows
    sub = day.take(pa.array(rows)).select(list(_CONTENT))
    given = np.zeros(len(rows), bool)
    for name in ("title", "description", "body", "images"):
        given |= pc.is_valid(sub[name]).to_numpy(zero_copy_only=False)
    if not given.any():
        return rows[:0]
    cand = rows[given]
    before = old.take(pa.array(page_of[cand])).select(list(_CONTENT)).to_pylist()
    after = day.take(pa.array(cand)).select(list(_CONTENT)).to_pylist()
    return cand[np.array([a != b for a, b in zip(after, before, strict=True)], bool)]


def _first_seen(old: pa.Table, day: pa.Table, page_of: np.ndarray, is_new: np.ndarray) -> np.ndarray:
    """first_seen over old and new pages: the earliest linking pin's time, the day's pins included."""
    old_fs = pc.fill_null(old["first_seen"], NO_TIME).to_numpy().astype(np.int64)
    day_fs = pc.fill_null(day["first_seen"], NO_TIME).to_numpy().astype(np.int64)
    out = np.concatenate([old_fs, day_fs[is_new]])
    seen = ~is_new
    np.minimum.at(out, page_of[seen], day_fs[seen])
    return out
