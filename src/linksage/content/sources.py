"""Offline page sources -> the ``pages`` table of the input contract.

Two sources, both tolerant of bad input (every skipped file or record is counted, never raised):

- ``pages_from_html_dir(path)``: a folder (searched recursively) of ``*.html``, ``*.htm`` and
  ``*.html.gz`` files. A page's URL comes from a sidecar mapping in the folder, ``urls.json``
  (``{"relative/path.html": "https://..."}``) or ``urls.tsv`` (``relative/path<TAB>url`` per line),
  else from the page's own ``<link rel=canonical>`` / ``og:url``; files with neither are skipped and
  counted as ``no_url``.
- ``pages_from_warc(path)``: a WARC or WARC.gz file, or a folder of them; ``response`` records whose
  HTTP status is 200 and whose content type is HTML. The record's target URI is the page's URL.

The ``pages`` table (``PAGES_SCHEMA``, the input contract of ``linksage.schema``): url, title,
description, body (main text), images (list of {url, width, height, alt}; width/height null when
unknown), fetched_at (unix seconds: file mtime, or the WARC-Date).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from linksage.content.parse import MAX_HTML_BYTES, ParsedPage, parse_html
from linksage.errors import InputError
from linksage.schema import IMAGES_TYPE

PAGES_SCHEMA = pa.schema(
    [
        ("url", pa.string()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("body", pa.string()),
        ("images", IMAGES_TYPE),
        ("fetched_at", pa.int64()),
    ]
)
HTML_SUFFIXES = (".html", ".htm", ".html.gz", ".htm.gz")
URL_SIDECARS = ("urls.json", "urls.tsv")
HTML_CONTENT_TYPES = ("text/html", "application/xhtml+xml")


@dataclass
class Pages:
    """A ``pages`` table, counts of what happened to each input (``pages``, ``no_url``, ``binary`` ...)
    and one line per problem (``"file: problem"``, the first 1,000)."""

    table: pa.Table
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def pages_table(rows: Iterable[tuple[ParsedPage, int | None]]) -> pa.Table:
    """The ``pages`` table of (parsed page, fetched_at unix seconds) pairs; ``url`` is ``page.url``."""
    columns: dict[str, list[object]] = {name: [] for name in PAGES_SCHEMA.names}
    for page, fetched_at in rows:
        columns["url"].append(page.url)
        columns["title"].append(page.title)
        columns["description"].append(page.description)
        columns["body"].append(page.main_text)
        columns["images"].append(
            [{"url": i.url, "width": i.width, "height": i.height, "alt": i.alt} for i in page.images]
        )
        columns["fetched_at"].append(fetched_at)
    return pa.table(columns, schema=PAGES_SCHEMA)


class _Tally:
    """Counts and the first problems, shared by both sources."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.problems: list[str] = []

    def problem(self, where: str, what: str) -> None:
        self.counts[what.split(":")[0]] += 1
        if len(self.problems) < 1000:
            self.problems.append(f"{where}: {what}")

    def page(self, where: str, page: ParsedPage) -> None:
        self.counts["pages"] += 1
        for problem in page.problems:
            self.problem(where, problem)


def pages_from_html_dir(path: str | Path, *, max_bytes: int = MAX_HTML_BYTES) -> Pages:
    """Parse every HTML file under ``path`` (see the module docstring for URLs and counts)."""
    root = Path(path)
    if not root.is_dir():
        raise InputError("not a folder of HTML files", file=root)
    urls = _read_sidecar(root)
    tally = _Tally()
    rows: list[tuple[ParsedPage, int | None]] = []
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(HTML_SUFFIXES))
    for file in files:
        rel = file.relative_to(root).as_posix()
        tally.counts["files"] += 1
        try:
            data = _read_html_file(file, max_bytes)
            mtime = int(file.stat().st_mtime)
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            tally.problem(rel, f"unreadable:{type(exc).__name__}")
            continue
        url = urls.get(rel) or urls.get(file.name)
        if not url:  # a cheap metadata-only parse finds the canonical link; then links resolve against it
            url = parse_html(data, "", max_bytes=max_bytes, extract_main_text=False).canonical_url
            if not url:
                tally.problem(rel, "no_url")
                continue
        page = parse_html(data, url, max_bytes=max_bytes)
        tally.page(rel, page)
        rows.append((page, mtime))
    return Pages(pages_table(rows), dict(tally.counts), tally.problems)


def _read_html_file(file: Path, max_bytes: int) -> bytes:
    """File bytes (gunzipped for ``.gz``), at most ``max_bytes + 1`` so the parser can flag truncation."""
    if file.name.lower().endswith(".gz"):
        with gzip.open(file, "rb") as fh:
            return fh.read(max_bytes + 1)
    with open(file, "rb") as fh:
        return fh.read(max_bytes + 1)


def _read_sidecar(root: Path) -> dict[str, str]:
    """The folder's URL mapping (``urls.json`` or ``urls.tsv``), relative path -> URL; {} when absent."""
    json_path, tsv_path = root / URL_SIDECARS[0], root / URL_SIDECARS[1]
    if json_path.exists():
        try:
            mapping = json.loads(json_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"not valid JSON: {exc}", file=json_path) from exc
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
        ):
            raise InputError("must map relative file paths (strings) to URLs (strings)", file=json_path)
        return dict(mapping)
    if tsv_path.exists():
        out: dict[str, str] = {}
        for row, line in enumerate(tsv_path.read_text(encoding="utf-8").splitlines()):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise InputError("expected 'relative/path<TAB>url'", file=tsv_path, row=row, value=line)
            out[parts[0].strip()] = parts[1].strip()
        return out
    return {}


def pages_from_warc(path: str | Path, *, max_bytes: int = MAX_HTML_BYTES) -> Pages:
    """Parse the HTML responses of a WARC / WARC.gz file, or of every ``*.warc[.gz]`` in a folder."""
    root = Path(path)
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith((".warc", ".warc.gz")))
    elif root.is_file():
        files = [root]
    else:
        raise InputError("no such WARC file or folder", file=root)
    tally = _Tally()
    rows: list[tuple[ParsedPage, int | None]] = []
    for file in files:
        tally.counts["files"] += 1
        for where, url, body, content_type, fetched_at in _warc_html_records(file, tally, max_bytes):
            page = parse_html(body, url, content_type=content_type, max_bytes=max_bytes)
            tally.page(where, page)
            rows.append((page, fetched_at))
    return Pages(pages_table(rows), dict(tally.counts), tally.problems)


def _warc_html_records(
    file: Path, tally: _Tally, max_bytes: int
) -> Iterator[tuple[str, str, bytes, str | None, int | None]]:
    """(where, url, body, content type, fetched_at) of each HTML 200 response; others are counted."""
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    index = -1
    try:
        with open(file, "rb") as fh:
            for index, record in enumerate(ArchiveIterator(fh)):
                if record.rec_type != "response":
                    continue
                where = f"{file.name} record {index}"
                tally.counts["responses"] += 1
                url = record.rec_headers.get_header("WARC-Target-URI") or ""
                http = record.http_headers
                status = http.get_statuscode() if http is not None else None
                content_type = http.get_header("Content-Type") if http is not None else None
                if status is None:
                    tally.problem(where, "no_http_headers")  # damaged record, or ARC without HTTP headers
                    continue
                if status != "200":
                    tally.counts["not_ok"] += 1
                    continue
                mime = (content_type or "").split(";")[0].strip().lower()
                if mime not in HTML_CONTENT_TYPES:
                    tally.counts["not_html"] += 1
                    continue
                if not url:
                    tally.problem(where, "no_url")
                    continue
                body = record.content_stream().read(max_bytes + 1)
                yield where, url, body, content_type, _warc_date(record.rec_headers.get_header("WARC-Date"))
    except (ArchiveLoadFailed, OSError, EOFError, ValueError, zlib.error) as exc:
        tally.problem(f"{file.name} record {index + 1}", f"bad_warc:{type(exc).__name__}")
    except Exception as exc:  # warcio fails on some damaged records with AttributeError/TypeError
        tally.problem(f"{file.name} record {index + 1}", f"bad_warc:{type(exc).__name__}")


def _warc_date(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def write_pages(pages: Pages, path: str | Path) -> None:
    """Write a ``pages`` table as Parquet, atomically."""
    import pyarrow.parquet as pq

    from linksage.rundir import atomic_path

    with atomic_path(Path(path)) as tmp:
        pq.write_table(pages.table, tmp)
